"""Word lists the BBH-style generators draw from, written for this project.

BIG-bench's generators each carry their own lists; these replace them so that
no task depends on a downloaded file. Every list is a tuple of distinct
entries in a fixed order (the generators' seeded draws index into them), so
editing a list changes the items: bump ``GENERATOR_VERSION`` when you do.
"""

from __future__ import annotations

# web_of_lies speakers and logical_deduction golfers.
NAMES: tuple[str, ...] = (
    "Abel", "Alma", "Anouk", "Bruno", "Bettina", "Cyrus", "Celia", "Dario", "Delphine", "Edgar",
    "Edith", "Fabian", "Fiona", "Gideon", "Greta", "Hector", "Hilde", "Ignacio", "Ines", "Jasper",
    "Juno", "Kasimir", "Kira", "Leopold", "Linnea", "Magnus", "Mira", "Nestor", "Nadia", "Osric",
    "Olga", "Piet", "Paloma", "Quentin", "Rhea", "Rufus", "Sabine", "Tobias", "Thea", "Ulla",
    "Viggo", "Vera", "Wendell", "Wilma", "Xavier", "Yara", "Yusuf", "Zelda", "Zoltan", "Marisol",
)

# word_sorting: common English words, all lower case and distinct.
WORDS: tuple[str, ...] = (
    "anchor", "apple", "arrow", "autumn", "badge", "bakery", "banner", "basket", "beacon", "bicycle",
    "blanket", "bottle", "bridge", "bucket", "butter", "cabin", "candle", "canyon", "carpet", "castle",
    "cellar", "chalk", "cherry", "chimney", "circle", "cliff", "clover", "cobweb", "copper", "cotton",
    "crater", "crayon", "crystal", "curtain", "cushion", "dagger", "daisy", "desert", "diamond", "dinner",
    "dolphin", "donkey", "dragon", "drawer", "eagle", "echo", "elbow", "engine", "fabric", "falcon",
    "feather", "fence", "fiddle", "flannel", "forest", "fossil", "fountain", "garden", "garlic", "glacier",
    "goblet", "granite", "gravel", "guitar", "hammer", "harbor", "harvest", "helmet", "hermit", "honey",
    "horizon", "island", "ivory", "jacket", "jasmine", "jelly", "jungle", "kettle", "kitten", "ladder",
    "lagoon", "lantern", "lemon", "lettuce", "library", "lizard", "locket", "magnet", "maple", "marble",
    "meadow", "mirror", "mitten", "monkey", "mosaic", "muffin", "napkin", "needle", "noodle", "nutmeg",
    "oasis", "object", "ocean", "olive", "orchard", "oyster", "paddle", "palace", "pebble", "pepper",
    "pillow", "pirate", "planet", "pocket", "pollen", "puzzle", "quarry", "quill", "quilt", "rabbit",
    "radish", "raisin", "ribbon", "riddle", "rocket", "saddle", "salmon", "sandal", "scarf", "shadow",
    "shovel", "silver", "spider", "spoon", "statue", "summit", "sunset", "switch", "tablet", "teapot",
    "thimble", "thunder", "timber", "tomato", "tunnel", "turnip", "umbrella", "valley", "velvet", "violet",
    "wagon", "walnut", "whistle", "willow", "window", "winter", "wizard", "yarn", "yogurt", "zebra",
)

# object_counting: (singular, plural) per category; the article is "an" before a vowel.
FRUITS: tuple[tuple[str, str], ...] = (
    ("apple", "apples"), ("apricot", "apricots"), ("banana", "bananas"), ("cherry", "cherries"),
    ("fig", "figs"), ("grape", "grapes"), ("kiwi", "kiwis"), ("lemon", "lemons"), ("lime", "limes"),
    ("mango", "mangoes"), ("melon", "melons"), ("orange", "oranges"), ("peach", "peaches"),
    ("pear", "pears"), ("plum", "plums"), ("strawberry", "strawberries"),
)
VEGETABLES: tuple[tuple[str, str], ...] = (
    ("carrot", "carrots"), ("onion", "onions"), ("potato", "potatoes"), ("cabbage", "cabbages"),
    ("head of broccoli", "heads of broccoli"), ("stalk of celery", "stalks of celery"),
    ("cauliflower", "cauliflowers"), ("yam", "yams"), ("turnip", "turnips"), ("leek", "leeks"),
    ("beet", "beets"), ("cucumber", "cucumbers"), ("eggplant", "eggplants"), ("radish", "radishes"),
)
INSTRUMENTS: tuple[tuple[str, str], ...] = (
    ("flute", "flutes"), ("piano", "pianos"), ("violin", "violins"), ("trumpet", "trumpets"),
    ("drum", "drums"), ("clarinet", "clarinets"), ("cello", "cellos"), ("guitar", "guitars"),
    ("harp", "harps"), ("accordion", "accordions"), ("trombone", "trombones"), ("oboe", "oboes"),
)
ANIMALS: tuple[tuple[str, str], ...] = (
    ("cat", "cats"), ("dog", "dogs"), ("rabbit", "rabbits"), ("goat", "goats"), ("cow", "cows"),
    ("pig", "pigs"), ("duck", "ducks"), ("chicken", "chickens"), ("snake", "snakes"), ("frog", "frogs"),
    ("mouse", "mice"), ("donkey", "donkeys"), ("snail", "snails"), ("fish", "fish"),
)
HOUSEHOLD: tuple[tuple[str, str], ...] = (
    ("chair", "chairs"), ("table", "tables"), ("bed", "beds"), ("lamp", "lamps"), ("stove", "stoves"),
    ("oven", "ovens"), ("microwave", "microwaves"), ("couch", "couches"), ("toaster", "toasters"),
    ("fridge", "fridges"), ("car", "cars"),
)
# category word in the question -> its objects
COUNTING: dict[str, tuple[tuple[str, str], ...]] = {
    "fruits": FRUITS, "vegetables": VEGETABLES, "musical instruments": INSTRUMENTS,
    "animals": ANIMALS, "objects": HOUSEHOLD,
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")

# tracking_shuffled_objects and logical_deduction scenarios.
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black",
                           "brown", "gray", "gold")
BOOKS: tuple[str, ...] = ("The Silent Harbor", "A Map of Clouds", "The Glass Orchard", "Winter Letters",
                          "The Last Lighthouse", "Seven Small Rivers", "The Copper Key",
                          "Songs of the Valley", "The Paper Garden", "An Ocean Apart", "The Night Ferry",
                          "Stone and Salt")
PARTNERS: tuple[str, ...] = ("Anselm", "Bianca", "Corin", "Dagny", "Elio", "Frida", "Gunnar", "Helga",
                             "Imre", "Jorunn", "Lasse", "Malin")
POSITIONS: tuple[str, ...] = ("goalkeeper", "left winger", "right winger", "striker", "center midfielder",
                              "fullback", "sweeper", "left midfielder", "right midfielder", "benchwarmer")
BIRDS: tuple[str, ...] = ("robin", "crow", "owl", "hawk", "sparrow", "finch", "heron", "wren", "cardinal",
                          "blue jay", "magpie", "starling")
STAND_FRUITS: tuple[str, ...] = ("apples", "pears", "plums", "peaches", "mangoes", "kiwis", "oranges",
                                 "loquats", "cherries", "figs", "watermelons", "apricots")
VEHICLES: tuple[str, ...] = ("bus", "truck", "sedan", "convertible", "limousine", "motorcycle", "tractor",
                             "station wagon", "minivan", "hatchback", "pickup", "roadster")
