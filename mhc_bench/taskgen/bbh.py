"""BBH-style items, every one generated here from a seed (no task file is read).

BBH's 23 tasks are BIG-bench tasks, and ten of them are programmatic: their
items follow from a rule, so they are regenerated the way the task definitions
describe, in BBH's no-CoT format (``Q: <input>`` / ``A: <target>``), with the
project's own vocabulary (:mod:`mhc_bench.taskgen.vocabulary`):

- free-form answers: ``multistep_arithmetic_two`` (two bracketed groups of four
  numbers in -9..9, numpy ``RandomState`` like the original), ``dyck_languages``
  (close a prefix over four bracket pairs), ``word_sorting`` (3-6 words),
  ``object_counting`` (a category's count among listed objects);
- a closed answer set: ``boolean_expressions`` (every 7-token expression, as in
  BBH), ``web_of_lies`` (five sentences), ``navigate`` (both BBH forms: "Always
  face forward" moves and turns), and the lettered ``(A) ...`` tasks
  ``date_understanding`` (six dates), ``tracking_shuffled_objects_three_objects``
  (three swaps, five scenarios) and ``logical_deduction_three_objects`` (two
  clues that fix the order, five scenarios).

BBH's ``sports_understanding`` is left out: its answers are facts about
athletes, not a rule. Every item carries ``choices`` (the valid answers in
generative format, empty for free-form answers), ``label`` and ``chance`` =
1 / #choices (0 for free-form).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mhc_bench.taskgen import vocabulary as V
from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DESCRIPTIONS: dict[str, str] = {
    "boolean_expressions": "Evaluate the result of a random Boolean expression.",
    "multistep_arithmetic_two": "Solve multi-step arithmetic problems.",
    "web_of_lies": "Evaluate a random boolean function expressed as a word problem.",
    "dyck_languages": "Correctly close a Dyck-n word.",
    "word_sorting": "Sort a list of words.",
    "object_counting": "Questions that involve enumerating objects and asking the model to count them.",
    "date_understanding": "Infer the date from context.",
    "tracking_shuffled_objects_three_objects": "A task requiring determining the final positions of a set "
    "of objects given their initial positions and a description of a sequence of swaps.",
    "logical_deduction_three_objects": "A logical deduction task which requires deducing the order of a "
    "sequence of objects.",
    "navigate": "Given a series of navigation instructions, determine whether one would end up back at "
    "the starting point.",
}
SUBTASKS: tuple[str, ...] = tuple(DESCRIPTIONS)
FREE_FORM = frozenset({"multistep_arithmetic_two", "dyck_languages", "word_sorting", "object_counting"})


def has_choices(subtask: str) -> bool:
    """Whether a subtask's answers form a closed set (and so can be scored as options)."""
    return subtask not in FREE_FORM


def item(question: str, target: str, choices: list[str], key: str | None = None) -> Item:
    """One BBH-format item (generated here or converted from BIG-bench's files, ``bigbench.py``);
    ``key`` (default: the question) decides its train / evaluation side."""
    label = choices.index(target) if choices else -1
    chance = 1.0 / len(choices) if choices else 0.0
    return {"key": question if key is None else key, "input": question, "target": target,
            "choices": choices, "label": label, "chance": chance}


def lettered(stem: str, options: list[str], gold: int, key: str | None = None) -> Item:
    """BBH's lettered format: the stem, ``Options:``, one ``(A) ...`` line per option; target ``(X)``."""
    lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    choices = [f"({LETTERS[i]})" for i in range(len(options))]
    return item(f"{stem}\nOptions:\n{lines}", choices[gold], choices, key)


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _listing(parts: list[str]) -> str:
    """``a, b, and c`` (BBH's lists keep the serial comma)."""
    if len(parts) == 2:
        return f"{parts[0]} and {parts[1]}"
    return ", ".join(parts[:-1]) + f", and {parts[-1]}"


# ---------------------------------------------------------------- boolean_expressions
def _bool_expressions(length: int) -> list[tuple[str, ...]]:
    """All valid token sequences of ``length``, enumerated like boolean_expressions/task.py."""
    start, cont, end = {"True", "False", "not", "("}, {"or", "and", ")"}, {"True", "False", ")"}
    nxt = {"start": start, "or": start, "and": start, "not": start, "(": start,
           "True": cont, "False": cont, ")": cont}
    out: list[tuple[str, ...]] = []

    def walk(prefix: tuple[str, ...], remaining: int, depth: int) -> None:
        if remaining == 0:
            if depth == 0 and prefix[-1] in end:
                out.append(prefix)
            return
        for tok in sorted(nxt[prefix[-1] if prefix else "start"]):
            d = depth + (tok == "(") - (tok == ")")
            if d < 0:
                continue
            walk((*prefix, tok), remaining - 1, d)

    walk((), length, 0)
    return sorted(out)


def boolean_expressions_stream(seed: int) -> Iterator[Item]:
    exprs = _bool_expressions(7)
    rng = seeded_rng("boolean_expressions", seed)
    rng.shuffle(exprs)
    for tokens in exprs:
        text = " ".join(tokens)
        value = str(eval(text, {"__builtins__": {}}))  # only True/False/and/or/not/parentheses
        yield item(f"{text} is", value, ["True", "False"], text)


# ---------------------------------------------------------------- multistep_arithmetic_two
def multistep_arithmetic_stream(seed: int) -> Iterator[Item]:
    """BBH's ``multistep_arithmetic_two``: depth levels [2], four numbers per innermost group."""
    rng = np.random.RandomState(seed)
    numbers = [str(x) for x in range(-9, 10)]
    ops = ["+", "-", "*"]

    def group() -> str:
        parts = []
        for _ in range(3):
            parts += [str(rng.choice(numbers)), str(rng.choice(ops))]
        return "(" + " ".join(parts) + " " + str(rng.choice(numbers)) + ")"

    while True:
        expr = f"({group()} {rng.choice(ops)} {group()})"
        value = str(eval(expr, {"__builtins__": {}}))  # integers and + - * only
        yield item(f"{expr} =", value, [], expr)


# ---------------------------------------------------------------- web_of_lies
def web_of_lies_stream(seed: int, sentences: int = 5) -> Iterator[Item]:
    """The first speaker's honesty is given; each next one calls the previous truthful or a liar."""
    names = list(V.NAMES)
    rng = seeded_rng("web_of_lies", seed)
    while True:
        answer = True
        parts: list[str] = []
        rng.shuffle(names)
        for i in range(sentences):
            truth = rng.choice((True, False))
            answer = answer if truth else not answer
            statement = "tells the truth" if truth else "lies"
            subject = names[i] if i == 0 else f"{names[i]} says {names[i - 1]}"
            parts.append(f"{subject} {statement}.")
        question = " ".join(parts) + f" Does {names[sentences - 1]} tell the truth?"
        yield item(f"Question: {question}", "Yes" if answer else "No", ["Yes", "No"], question)


# ---------------------------------------------------------------- dyck_languages
BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}
DYCK_PROMPT = ("Complete the rest of the sequence, making sure that the parentheses are closed properly. "
               "Input:")


def dyck_languages_stream(seed: int) -> Iterator[Item]:
    """A random walk over four bracket pairs (4-20 symbols) left open at 1-5 levels; the target closes it."""
    rng = seeded_rng("dyck_languages", seed)
    opens = sorted(BRACKETS)
    while True:
        shown: list[str] = []
        stack: list[str] = []
        for _ in range(rng.randint(4, 20)):
            if stack and rng.random() < 0.45:
                shown.append(BRACKETS[stack.pop()])
            else:
                stack.append(rng.choice(opens))
                shown.append(stack[-1])
        if not 1 <= len(stack) <= 5:
            continue
        target = " ".join(BRACKETS[b] for b in reversed(stack))
        yield item(f"{DYCK_PROMPT} {' '.join(shown)}", target, [])


# ---------------------------------------------------------------- word_sorting
def word_sorting_stream(seed: int) -> Iterator[Item]:
    rng = seeded_rng("word_sorting", seed)
    while True:
        words = rng.sample(V.WORDS, rng.randint(3, 6))
        question = f"Sort the following words alphabetically: List: {' '.join(words)}"
        yield item(question, " ".join(sorted(words)), [])


# ---------------------------------------------------------------- object_counting
def object_counting_stream(seed: int) -> Iterator[Item]:
    """3-9 kinds of objects, some two to four at a time; the question counts one category.

    For ``objects`` every listed thing is household furniture and all count; for
    the other categories things of other categories are mixed in and do not.
    """
    rng = seeded_rng("object_counting", seed)
    categories = list(V.COUNTING)
    while True:
        category = rng.choice(categories)
        n_kinds = rng.randint(3, 9)
        if category == "objects":
            kinds = rng.sample(V.COUNTING["objects"], min(n_kinds, len(V.COUNTING["objects"])))
            counted = set(kinds)
        else:
            own = rng.randint(2, min(n_kinds, 7))
            kinds = rng.sample(V.COUNTING[category], own)
            counted = set(kinds)
            others = [k for c in categories if c not in (category, "objects") for k in V.COUNTING[c]]
            kinds += rng.sample(others, n_kinds - own)
            rng.shuffle(kinds)
        parts, total = [], 0
        for kind in kinds:
            count = rng.choice((1, 1, 1, 2, 3, 4))
            parts.append(_article(kind[0]) if count == 1 else f"{V.NUMBER_WORDS[count]} {kind[1]}")
            total += count if kind in counted else 0
        question = f"I have {_listing(parts)}. How many {category} do I have?"
        yield item(question, str(total), [])


# ---------------------------------------------------------------- date_understanding
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
HOLIDAYS = (("Christmas Eve", 12, 24), ("Christmas Day", 12, 25), ("New Year's Eve", 12, 31),
            ("New Year's Day", 1, 1), ("Halloween", 10, 31), ("Valentine's Day", 2, 14),
            ("the first day of spring, March 20,", 3, 20), ("the last day of April", 4, 30))


def _mdy(d: dt.date) -> str:
    return f"{d.month:02d}/{d.day:02d}/{d.year}"


def _long(d: dt.date, short: bool = False) -> str:
    month = MONTHS[d.month - 1][:3] if short else MONTHS[d.month - 1]
    return f"{month} {d.day}, {d.year}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _shift_years(d: dt.date, years: int) -> dt.date | None:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # February 29 in a year without one
        return None


def _shift_months(d: dt.date, months: int) -> dt.date | None:
    index = d.year * 12 + d.month - 1 + months
    try:
        return d.replace(year=index // 12, month=index % 12 + 1)
    except ValueError:
        return None


def _date_context(rng: random.Random) -> tuple[str, dt.date]:
    """One sentence that fixes today's date, and that date."""
    day = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange(73_000))  # 1900 ... 2099
    name, other = rng.sample(V.NAMES, 2)
    kind = rng.randrange(8)
    if kind == 0:
        return f"Today is {_long(day)}.", day
    if kind == 1:
        return f"Today is {_mdy(day)}.", day
    if kind == 2:
        return f"Yesterday was {_long(day)}.", day + dt.timedelta(days=1)
    if kind == 3:
        return f"Tomorrow is {_mdy(day)}.", day - dt.timedelta(days=1)
    if kind == 4:
        label, month, dom = rng.choice(HOLIDAYS)
        return f"Today is {label} of {day.year}.", dt.date(day.year, month, dom)
    if kind == 5:
        return (f"The concert was scheduled for {_mdy(day)}, but was delayed by one day to today.",
                day + dt.timedelta(days=1))
    years = rng.randint(2, 40)
    today = _shift_years(day, years) or day + dt.timedelta(days=1)
    if today.year > 2099 or today == day + dt.timedelta(days=1):
        return f"Today is {_long(day)}.", day
    if kind == 6:
        return f"{name} was born on {_long(day)}. Today is {name}'s {_ordinal(years)} birthday.", today
    return (f"{name} and {other} married on {_long(day, short=True)}. It is their {years}-year "
            "anniversary today.", today)


def _date_offset(rng: random.Random, today: dt.date) -> tuple[str, dt.date] | None:
    """A question phrase and the date it asks for (None when the month/year shift does not exist)."""
    n = rng.randint(2, 30)
    choices: list[tuple[str, dt.date | None]] = [
        ("today", today), ("yesterday", today - dt.timedelta(days=1)),
        ("tomorrow", today + dt.timedelta(days=1)), ("24 hours later", today + dt.timedelta(days=1)),
        (f"{n} days ago", today - dt.timedelta(days=n)),
        (f"{n} days from today", today + dt.timedelta(days=n)),
        ("one week ago", today - dt.timedelta(days=7)), ("one week from today", today + dt.timedelta(days=7)),
        ("one year ago from today", _shift_years(today, -1)), ("a month ago", _shift_months(today, -1)),
    ]
    phrase, answer = rng.choice(choices)
    return None if answer is None else (phrase, answer)


def _date_distractors(rng: random.Random, gold: dt.date, today: dt.date, k: int) -> list[dt.date]:
    """``k`` wrong dates a careless reader could give: off by a day, a week, a month or years,
    day and month swapped, the offset applied the wrong way."""
    candidates = [gold - dt.timedelta(days=1), gold + dt.timedelta(days=1), gold + dt.timedelta(days=7),
                  gold - dt.timedelta(days=7), _shift_months(gold, 1), _shift_months(gold, -1),
                  _shift_years(gold, 1), _shift_years(gold, -1), today - (gold - today),
                  _shift_years(gold, rng.choice((-1, 1)) * rng.randint(10, 60))]
    if gold.day <= 12 and gold.day != gold.month:
        candidates.append(dt.date(gold.year, gold.day, min(gold.month, 28)))
    seen = {gold}
    unique = []
    for c in candidates:
        if c is not None and c not in seen and 1900 <= c.year <= 2099:
            seen.add(c)
            unique.append(c)
    return rng.sample(unique, min(k, len(unique)))


def date_understanding_stream(seed: int, n_options: int = 6) -> Iterator[Item]:
    rng = seeded_rng("date_understanding", seed)
    while True:
        context, today = _date_context(rng)
        asked = _date_offset(rng, today)
        if asked is None:
            continue
        phrase, gold = asked
        wrong = _date_distractors(rng, gold, today, n_options - 1)
        if len(wrong) < n_options - 1:
            continue
        options = [gold, *wrong]
        rng.shuffle(options)
        stem = f"{context} What is the date {phrase} in MM/DD/YYYY?"
        yield lettered(stem, [_mdy(o) for o in options], options.index(gold))


# ---------------------------------------------------------------- tracking_shuffled_objects
PLAYERS = ("Alice", "Bob", "Claire")  # BBH's three players, in every scenario
# scenario: (opening, how each holds, the trading sentence, swap phrase, closing, items, option format)
TRACKING: tuple[tuple[str, str, str, str, str, tuple[str, ...], str], ...] = (
    ("are playing a game. At the start of the game, they are each holding a ball:", "{p} has {a} {x} ball",
     "As the game progresses, pairs of players trade balls.", "swap balls",
     "At the end of the game, {p} has the",
     V.COLORS, "{x} ball"),
    ("are holding a white elephant gift exchange. At the start of the event, they are each holding a present "
     "of a different color:", "{p} has {a} {x} present",
     "As the event progresses, pairs of people swap gifts.", "swap their gifts",
     "At the end of the event, {p} has the", V.COLORS, "{x} present"),
    ("are friends and avid readers who occasionally trade books. At the start of the semester, they each buy "
     "one new book:", "{p} gets {x}", "As the semester proceeds, they start trading around the new books.",
     "swap books", "At the end of the semester, {p} has", V.BOOKS, "{x}"),
    ("are dancers at a square dance. At the start of a song, they each have a partner:",
     "{p} is dancing with {x}", "Throughout the song, the dancers often trade partners.", "switch partners",
     "At the end of the dance, {p} is dancing with", V.PARTNERS, "{x}"),
    ("are on the same team in a soccer match. At the start of the match, they are each assigned to a "
     "position:", "{p} is playing {x}",
     "As the game progresses, pairs of players occasionally swap positions.",
     "trade positions", "At the end of the match, {p} is playing", V.POSITIONS, "{x}"),
)


def tracking_shuffled_objects_stream(seed: int, swaps: int = 3) -> Iterator[Item]:
    """Three players, three things, three pairwise swaps; which thing does one player end with?

    The options list the things in the players' starting order, as BBH does.
    """
    rng = seeded_rng("tracking_shuffled_objects_three_objects", seed)
    while True:
        opening, holds, trading, swap, closing, pool, fmt = rng.choice(TRACKING)
        things = rng.sample(pool, len(PLAYERS))
        held = dict(zip(PLAYERS, things, strict=True))
        steps = []
        for i in range(swaps):
            a, b = rng.sample(PLAYERS, 2)
            held[a], held[b] = held[b], held[a]
            lead = "First" if i == 0 else "Finally" if i == swaps - 1 else "Then"
            steps.append(f"{lead}, {a} and {b} {swap}.")
        who = rng.choice(PLAYERS)
        start = _listing([holds.format(p=p, x=x, a=_article(x).split()[0])
                          for p, x in zip(PLAYERS, things, strict=True)])
        stem = (f"{_listing(list(PLAYERS))} {opening} {start}.\n{trading} {' '.join(steps)} "
                f"{closing.format(p=who)}")
        yield lettered(stem, [fmt.format(x=x) for x in things], things.index(held[who]))


# ---------------------------------------------------------------- logical_deduction
DEDUCTION_PREFIX = ("The following paragraphs each describe a set of three objects arranged in a fixed "
                    "order. The statements are logically consistent within each paragraph.")
# scenario: intro, how an object is introduced and named, its pool, the two relations (the
# first object earlier / later in the order), the rank names first..last, and the verb of a rank.
DEDUCTION: tuple[dict[str, Any], ...] = (
    {"intro": "On a shelf, there are three books: {objects}.", "noun": "{x} book", "the": "the {x} book",
     "pool": V.COLORS, "before": "is to the left of", "after": "is to the right of",
     "ranks": ("the leftmost", "the second from the left", "the rightmost"), "is": "is", "article": True},
    {"intro": "On a branch, there are three birds: {objects}.", "noun": "{x}", "the": "the {x}",
     "pool": V.BIRDS, "before": "is to the left of", "after": "is to the right of",
     "ranks": ("the leftmost", "the second from the left", "the rightmost"), "is": "is", "article": True},
    {"intro": "In a golf tournament, there were three golfers: {objects}.", "noun": "{x}", "the": "{x}",
     "pool": V.NAMES, "before": "finished above", "after": "finished below",
     "ranks": ("first", "second", "last"), "is": "finished"},
    {"intro": "A fruit stand sells three fruits: {objects}.", "noun": "{x}", "the": "the {x}",
     "pool": V.STAND_FRUITS, "before": "are less expensive than", "after": "are more expensive than",
     "ranks": ("the cheapest", "the second-cheapest", "the most expensive"), "is": "are"},
    {"intro": "In an antique car show, there are three vehicles: {objects}.", "noun": "{x}", "the": "the {x}",
     "pool": V.VEHICLES, "before": "is older than", "after": "is newer than",
     "ranks": ("the oldest", "the second-newest", "the newest"), "is": "is", "article": True},
)


def _clue_holds(clue: tuple[str, int, int], order: tuple[int, ...]) -> bool:
    """``order[i]`` is object i's rank; a clue is ("before", a, b), ("after", a, b) or ("rank", a, r)."""
    kind, a, b = clue
    if kind == "rank":
        return order[a] == b
    return order[a] < order[b] if kind == "before" else order[a] > order[b]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def logical_deduction_stream(seed: int) -> Iterator[Item]:
    """Three objects in a hidden order; two true clues that fix it; which object holds a rank?

    Clues are drawn until exactly one of the six orders satisfies them; the asked
    rank is never one a clue states outright.
    """
    rng = seeded_rng("logical_deduction_three_objects", seed)
    orders = list(itertools.permutations(range(3)))
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]
    while True:
        sc = rng.choice(DEDUCTION)
        objects = rng.sample(sc["pool"], 3)
        order = rng.choice(orders)  # order[i] = rank of object i
        candidates = ([("before", a, b) for a, b in pairs] + [("after", a, b) for a, b in pairs]
                      + [("rank", a, order[a]) for a in range(3)])
        clues = rng.sample([c for c in candidates if _clue_holds(c, order)], 2)
        if sum(all(_clue_holds(c, o) for c in clues) for o in orders) != 1:
            continue
        stated = {c[2] for c in clues if c[0] == "rank"}
        asked = rng.choice([r for r in range(3) if r not in stated])
        names = [sc["the"].format(x=o) for o in objects]
        said = []
        for kind, a, b in clues:
            tail = sc["ranks"][b] if kind == "rank" else names[b]
            verb = sc["is"] if kind == "rank" else sc[kind]
            said.append(_sentence(f"{names[a]} {verb} {tail}."))
        nouns = [sc["noun"].format(x=o) for o in objects]
        if sc.get("article"):
            nouns = [_article(n) for n in nouns]
        paragraph = " ".join([sc["intro"].format(objects=_listing(nouns)), *said])
        options = [_sentence(f"{names[i]} {sc['is']} {sc['ranks'][asked]}") for i in range(3)]
        yield lettered(f"{DEDUCTION_PREFIX} {paragraph}", options, order.index(asked))


# ---------------------------------------------------------------- navigate
NAVIGATE_PROMPT = "If you follow these instructions, do you return to the starting point?"
HEADINGS = ((0, 1), (1, 0), (0, -1), (-1, 0))  # north, east, south, west: a right turn is +1
SIDEWAYS = {(0, 1): "forward", (0, -1): "backward", (1, 0): "right", (-1, 0): "left"}


def _steps(n: int, direction: str = "") -> str:
    return f"Take {n} step{'s' if n != 1 else ''}{' ' + direction if direction else ''}."


def _navigate_forward(rng: random.Random, back: bool) -> list[str] | None:
    """"Always face forward." moves; with ``back`` the moves are completed to return home."""
    moves = [(rng.choice(list(SIDEWAYS)), rng.randint(1, 10)) for _ in range(rng.randint(2, 6))]
    x = sum(d[0] * n for d, n in moves)
    y = sum(d[1] * n for d, n in moves)
    if back:
        if x:
            moves.append(((-1 if x > 0 else 1, 0), abs(x)))
        if y:
            moves.append(((0, -1 if y > 0 else 1), abs(y)))
        if any(n > 10 for _, n in moves) or len(moves) < 3:
            return None
        rng.shuffle(moves)
    elif x == 0 and y == 0:
        return None
    return ["Always face forward.", *(_steps(n, SIDEWAYS[d]) for d, n in moves)]


def _navigate_turns(rng: random.Random, back: bool) -> list[str] | None:
    """Turns and forward steps; with ``back`` the walk ends by turning and walking home."""
    heading, x, y, out = 0, 0, 0, []
    turns = {"Turn right.": 1, "Turn around.": 2, "Turn left.": 3}
    for _ in range(rng.randint(3, 7)):
        if rng.random() < 0.4:
            turn = rng.choice(list(turns))
            heading = (heading + turns[turn]) % 4
            out.append(turn)
        else:
            n = rng.randint(1, 10)
            x, y = x + HEADINGS[heading][0] * n, y + HEADINGS[heading][1] * n
            out.append(_steps(n))
    if not back:
        return out if (x, y) != (0, 0) and any(s.startswith("Take") for s in out) else None
    for target, n in ((((-1 if x > 0 else 1), 0), abs(x)), ((0, (-1 if y > 0 else 1)), abs(y))):
        if n == 0:
            continue
        if n > 10:
            return None
        turn = (HEADINGS.index(target) - heading) % 4
        if turn:
            out.append({1: "Turn right.", 2: "Turn around.", 3: "Turn left."}[turn])
        heading = HEADINGS.index(target)
        out.append(_steps(n))
    return out if any(s.startswith("Take") for s in out) else None


def navigate_stream(seed: int) -> Iterator[Item]:
    """Half the walks are built to return (the answer is drawn first), in either BBH form."""
    rng = seeded_rng("navigate", seed)
    while True:
        back = rng.random() < 0.5
        instructions = None
        while instructions is None:  # redraw the walk, never the answer: Yes and No stay balanced
            build = _navigate_forward if rng.random() < 0.5 else _navigate_turns
            instructions = build(rng, back)
        stem = f"{NAVIGATE_PROMPT} {' '.join(instructions)}\nOptions:\n- Yes\n- No"
        yield item(stem, "Yes" if back else "No", ["Yes", "No"])


STREAMS: dict[str, Callable[[int], Iterator[Item]]] = {
    "boolean_expressions": boolean_expressions_stream,
    "multistep_arithmetic_two": multistep_arithmetic_stream,
    "web_of_lies": web_of_lies_stream,
    "dyck_languages": dyck_languages_stream,
    "word_sorting": word_sorting_stream,
    "object_counting": object_counting_stream,
    "date_understanding": date_understanding_stream,
    "tracking_shuffled_objects_three_objects": tracking_shuffled_objects_stream,
    "logical_deduction_three_objects": logical_deduction_stream,
    "navigate": navigate_stream,
}


def all_stream(subtask: str, seed: int) -> Iterator[Item]:
    """The endless item stream of a subtask; ``seed`` picks the stream."""
    return STREAMS[subtask](seed)


def first(stream: Iterator[Item], n: int) -> list[Item]:
    return list(itertools.islice(stream, n))
