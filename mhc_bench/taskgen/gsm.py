"""GSM8K-style grade-school word problems generated from templates.

Each template draws its numbers from a ``random.Random`` and chains 2-4
integer operations; the answer field follows GSM8K
(``<one line per step>\\n#### N``) without the ``<<a*b=c>>`` calculator
annotations, which a small model would only have to learn to copy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena",
         "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara")
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "cards", "shells", "stamps")


def _shopping(r: random.Random) -> tuple[str, list[str], int]:
    n, item = r.choice(NAMES), r.choice(ITEMS)
    packs, per, away, more = r.randint(2, 9), r.randint(3, 12), r.randint(1, 10), r.randint(2, 15)
    total = packs * per
    steps = [f"{n} buys {packs} * {per} = {total} {item}."]
    away = min(away, total - 1)
    steps.append(f"After giving away {away}, {n} has {total} - {away} = {total - away} {item}.")
    q = (f"{n} buys {packs} packs of {item} with {per} {item} in each pack. {n} gives {away} {item} "
         f"to a friend")
    answer = total - away
    if r.random() < 0.5:
        q += f" and then buys {more} more {item}"
        steps.append(f"Buying {more} more gives {answer} + {more} = {answer + more} {item}.")
        answer += more
    return q + f". How many {item} does {n} have now?", steps, answer


def _wages(r: random.Random) -> tuple[str, list[str], int]:
    n = r.choice(NAMES)
    rate, hours, days = r.randint(8, 25), r.randint(2, 8), r.randint(2, 6)
    daily, total = rate * hours, rate * hours * days
    spent = r.randint(1, total - 1)
    q = (f"{n} earns ${rate} an hour and works {hours} hours a day for {days} days. "
         f"Then {n} spends ${spent} on a bike. How much money does {n} have left?")
    steps = [f"Each day {n} earns {rate} * {hours} = ${daily}.",
             f"In {days} days {n} earns {daily} * {days} = ${total}.",
             f"After the bike {n} has {total} - {spent} = ${total - spent}."]
    return q, steps, total - spent


def _sharing(r: random.Random) -> tuple[str, list[str], int]:
    n, item = r.choice(NAMES), r.choice(ITEMS)
    friends, each = r.randint(2, 8), r.randint(2, 9)
    boxes = r.randint(2, 6)
    per_box = friends * each * r.randint(1, 3)
    total = boxes * per_box
    eaten = r.randint(1, 5)
    q = (f"{n} has {boxes} boxes with {per_box} {item} in each box. {n} shares all of them equally "
         f"among {friends} friends. One friend loses {eaten} of them. How many {item} does that friend "
         f"have left?")
    share = total // friends
    steps = [f"{n} has {boxes} * {per_box} = {total} {item}.",
             f"Each friend gets {total} / {friends} = {share} {item}.",
             f"The friend has {share} - {eaten} = {share - eaten} {item} left."]
    return q, steps, share - eaten


def _ages(r: random.Random) -> tuple[str, list[str], int]:
    n = r.choice(NAMES)
    age, older, times, years = r.randint(3, 12), r.randint(2, 6), r.randint(2, 4), r.randint(2, 10)
    brother = age + older
    mother = brother * times
    q = (f"{n} is {age} years old. {n}'s brother is {older} years older than {n}. Their mother is "
         f"{times} times as old as the brother. How old will their mother be in {years} years?")
    steps = [f"The brother is {age} + {older} = {brother} years old.",
             f"The mother is {brother} * {times} = {mother} years old.",
             f"In {years} years she will be {mother} + {years} = {mother + years}."]
    return q, steps, mother + years


def _trip(r: random.Random) -> tuple[str, list[str], int]:
    s1, h1, s2, h2 = r.randint(30, 90), r.randint(2, 5), r.randint(20, 80), r.randint(2, 4)
    d1, d2 = s1 * h1, s2 * h2
    q = (f"A train travels at {s1} km per hour for {h1} hours and then at {s2} km per hour for "
         f"{h2} hours. How many kilometers does it travel in total?")
    steps = [f"First it travels {s1} * {h1} = {d1} km.", f"Then it travels {s2} * {h2} = {d2} km.",
             f"In total it travels {d1} + {d2} = {d1 + d2} km."]
    answer = d1 + d2
    if r.random() < 0.5:
        back = r.randint(1, answer - 1)
        q = q.replace("How many kilometers does it travel in total?",
                      f"It then goes back {back} km. How far from the start is it?")
        steps[-1] = f"Together that is {d1} + {d2} = {answer} km."
        steps.append(f"After going back it is {answer} - {back} = {answer - back} km from the start.")
        answer -= back
    return q, steps, answer


def _garden(r: random.Random) -> tuple[str, list[str], int]:
    n = r.choice(NAMES)
    rows, plants, bag = r.randint(2, 8), r.randint(3, 10), r.randint(2, 6)
    per_plant = bag * r.randint(1, 4)
    total = rows * plants * per_plant
    q = (f"{n} plants {rows} rows of tomato plants with {plants} plants in each row. Each plant grows "
         f"{per_plant} tomatoes. {n} packs the tomatoes into bags of {bag}. How many bags does {n} fill?")
    steps = [f"There are {rows} * {plants} = {rows * plants} plants.",
             f"They grow {rows * plants} * {per_plant} = {total} tomatoes.",
             f"That fills {total} / {bag} = {total // bag} bags."]
    return q, steps, total // bag


TEMPLATES: tuple[Callable[[random.Random], tuple[str, list[str], int]], ...] = (
    _shopping, _wages, _sharing, _ages, _trip, _garden,
)


def problem_stream(seed: int) -> Iterator[Item]:
    """Endless problems of one seed: ``{key, question, answer, number, chance}``."""
    r = seeded_rng("gsm", seed)
    while True:
        question, steps, number = r.choice(TEMPLATES)(r)
        answer = "\n".join(steps) + f"\n#### {number}"
        yield {"key": question, "question": question, "answer": answer, "number": str(number),
               "chance": 0.0}
