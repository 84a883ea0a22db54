"""MMLU-style four-option items whose facts come from installed packages or from computation.

Subjects (subtask: where the answer comes from):

- ``chemical_elements``: ``periodictable`` (element names, symbols, atomic numbers);
- ``world_currencies``: ``pycountry`` (ISO 4217 currencies; a country's national currency
  is the one whose ISO numeric code is the country's ISO 3166 numeric code);
- ``world_subdivisions``: ``pycountry`` (ISO 3166-2 top-level subdivisions of common types);
- ``elementary_arithmetic``: computed (sums, products, quotients, precedence, percentages);
- ``unit_conversion``: the exact factor table :data:`CONVERSIONS` in this module;
- ``python_code``: executing a generated snippet (:func:`run_snippet`).

The first three are fixed pools (one item per fact and question form, each item carrying
its fact as ``group`` so that all questions about one element, currency or subdivision land
on the same side of the train / evaluation split); the last three are endless seeded
streams. Distractors are plausible by construction (symbols sharing a letter, neighbouring
atomic numbers, currencies sharing a name, countries with subdivisions of the same type,
the usual slips of arithmetic and unit conversion, the outputs of mutated snippets) and
drawn with a seed derived from the item, so the options never change between runs.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from mhc_bench.taskgen import vocabulary as V
from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
SUBJECTS: dict[str, str] = {  # subtask -> subject named in the description line
    "chemical_elements": "chemistry (the chemical elements)",
    "world_currencies": "world currencies",
    "world_subdivisions": "world geography",
    "elementary_arithmetic": "elementary mathematics",
    "unit_conversion": "unit conversion",
    "python_code": "Python programming",
}
SUBTASKS: tuple[str, ...] = tuple(SUBJECTS)


def description(subtask: str) -> str:
    """MMLU's description line for a subject."""
    return f"The following are multiple choice questions (with answers) about {SUBJECTS[subtask]}.\n\n"


def _mc(
    question: str, gold: str, wrong: list[str], rng: random.Random, group: str | None = None
) -> Item | None:
    """A four-option item: ``gold`` and three of ``wrong`` (in preference order, deduplicated)
    in a seeded order; None when fewer than three distinct wrong answers exist."""
    distinct: list[str] = []
    for w in wrong:
        if w != gold and w not in distinct:
            distinct.append(w)
    if len(distinct) < 3:
        return None
    options = [gold, *distinct[:3]]
    rng.shuffle(options)
    item = {"key": question, "question": question, "choices": options, "answer": options.index(gold),
            "chance": 0.25}
    if group is not None:
        item["group"] = group
    return item


def _numeric_wrong(gold: str, candidates: list[str], rng: random.Random) -> list[str]:
    """Three of ``candidates`` such that the gold's place among the four sorted options is drawn
    uniformly where the candidates allow it: numeric slips cluster around the answer, and a
    model must not win by picking the middle option. Non-numeric options: a plain draw."""
    try:
        value = Decimal(gold)
        numbers = {c: Decimal(c) for c in dict.fromkeys(candidates) if c != gold}
    except ArithmeticError:  # decimal.InvalidOperation: some option is not a number
        distinct = [c for c in dict.fromkeys(candidates) if c != gold]
        return rng.sample(distinct, min(3, len(distinct)))
    below = [c for c, v in numbers.items() if v < value]
    above = [c for c, v in numbers.items() if v > value]
    ranks = [r for r in range(4) if r <= len(below) and 3 - r <= len(above)]
    if not ranks:
        return []
    r = rng.choice(ranks)
    return rng.sample(below, r) + rng.sample(above, 3 - r)


def _pick(rng: random.Random, preferred: list[str], fallback: list[str], k: int = 3) -> list[str]:
    """``k`` distinct draws, from ``preferred`` first, then from ``fallback``."""
    first = rng.sample(sorted(set(preferred)), min(k, len(set(preferred))))
    rest = sorted(set(fallback) - set(first))
    return first + rng.sample(rest, min(k - len(first), len(rest)))


# ---------------------------------------------------------------- chemical elements (periodictable)
@functools.cache
def _elements() -> list[tuple[int, str, str]]:
    import periodictable

    return [(z, periodictable.elements[z].name, periodictable.elements[z].symbol) for z in range(1, 119)]


def element_items() -> list[Item]:
    """Four questions per element: its symbol, the element of a symbol, its atomic number, the element
    of an atomic number."""
    elements = _elements()
    out: list[Item] = []
    for z, name, symbol in elements:
        rng = seeded_rng("mmlu/chemical_elements", z)
        group = f"element:{symbol}"
        like_symbol = [s for _, n, s in elements if s != symbol and s[0] in (symbol[0], name[0].upper())]
        near = [e for e in elements if e[0] != z and abs(e[0] - z) <= 3]
        like_name = [n for _, n, s in elements if n != name and s[0] == symbol[0]]
        numbers = [str(z + d) for d in (-3, -2, -1, 1, 2, 3) if 1 <= z + d <= 118]
        asked = [
            (f"What is the chemical symbol of {name}?", symbol,
             _pick(rng, like_symbol, [e[2] for e in near])),
            (f"Which element has the chemical symbol {symbol}?", name,
             _pick(rng, like_name, [e[1] for e in near])),
            (f"What is the atomic number of {name}?", str(z), _numeric_wrong(str(z), numbers, rng)),
            (f"Which element has atomic number {z}?", name, _pick(rng, [e[1] for e in near], like_name)),
        ]
        out += [it for q, gold, wrong in asked if (it := _mc(q, gold, wrong, rng, group)) is not None]
    return out


# ---------------------------------------------------------------- countries (pycountry)
def _country_name(country: Any) -> str | None:
    """The common short name, or None for names only an ISO list would use ("X, Republic of")."""
    name = getattr(country, "common_name", None) or country.name
    return None if "," in name or "(" in name else name


@functools.cache
def _national_currencies() -> list[tuple[str, Any]]:
    """(country name, currency) where the currency's ISO numeric code is the country's own."""
    import pycountry

    by_numeric = {c.numeric: c for c in pycountry.countries}
    out = []
    for cur in pycountry.currencies:
        country = by_numeric.get(cur.numeric)
        if country is not None and cur.alpha_3[:2] == country.alpha_2 and (name := _country_name(country)):
            out.append((name, cur))
    return sorted(out, key=lambda pair: pair[1].alpha_3)


def currency_items() -> list[Item]:
    """A country's national currency, and a currency's ISO 4217 code.

    The US dollar is never a distractor: several countries use it beside their own currency.
    """
    pairs = _national_currencies()
    names = [cur.name for _, cur in pairs if cur.alpha_3 != "USD"]
    codes = [cur.alpha_3 for _, cur in pairs]
    out: list[Item] = []
    for country, cur in pairs:
        rng = seeded_rng("mmlu/world_currencies", cur.alpha_3)
        group = f"currency:{cur.alpha_3}"
        last = cur.name.split()[-1]
        same_word = [n for n in names if n != cur.name and n.split()[-1] == last]
        same_letter = [c for c in codes if c != cur.alpha_3 and c[0] == cur.alpha_3[0]]
        asked = [
            (f"What is the national currency of {country}?", cur.name, _pick(rng, same_word[:6], names, 3)),
            (f"What is the ISO 4217 code of the {cur.name}?", cur.alpha_3, _pick(rng, same_letter, codes)),
        ]
        out += [it for q, gold, wrong in asked if (it := _mc(q, gold, wrong, rng, group)) is not None]
    return out


MAX_SUBDIVISIONS_PER_COUNTRY = 25  # keeps countries with hundreds of municipalities from dominating
# The ISO 3166-2 subdivision types asked about: common administrative units (the list also has
# "islands, groups of islands", "outlying area" and other types no question reads well with).
SUBDIVISION_TYPES = frozenset({
    "Province", "Region", "District", "State", "Department", "County", "Municipality", "Governorate",
    "Parish", "Prefecture", "Canton", "Administrative region", "Land", "Voivodship", "Autonomous region",
    "Autonomous community", "Oblast", "Emirate", "Republic", "Union territory", "Regional state",
    "Commune", "Division", "Rayon",
})


@functools.cache
def _subdivisions() -> list[tuple[Any, str]]:
    """Top-level subdivisions (at most 25 per country, by code) with their country's name."""
    import pycountry

    out: list[tuple[Any, str]] = []
    per_country: dict[str, int] = {}
    for sub in sorted(pycountry.subdivisions, key=lambda s: s.code):
        country = pycountry.countries.get(alpha_2=sub.country_code)
        name = _country_name(country) if country is not None else None
        if sub.parent_code is not None or name is None or "," in sub.name:
            continue
        if sub.type not in SUBDIVISION_TYPES:
            continue
        if per_country.get(sub.country_code, 0) >= MAX_SUBDIVISIONS_PER_COUNTRY:
            continue
        per_country[sub.country_code] = per_country.get(sub.country_code, 0) + 1
        out.append((sub, name))
    return out


def subdivision_items() -> list[Item]:
    """Which country a subdivision belongs to; distractors are countries with subdivisions of the same
    type, never one that has a subdivision of the same name."""
    import pycountry

    subs = _subdivisions()
    by_type: dict[str, set[str]] = {}
    for sub, country in subs:
        by_type.setdefault(sub.type, set()).add(country)
    holders: dict[str, set[str]] = {}
    for sub in pycountry.subdivisions:
        country = pycountry.countries.get(alpha_2=sub.country_code)
        holders.setdefault(sub.name, set()).add((_country_name(country) if country else None) or "")
    everyone = sorted({country for _, country in subs})
    out: list[Item] = []
    for sub, country in subs:
        rng = seeded_rng("mmlu/world_subdivisions", sub.code)
        taken = holders[sub.name] | {country}
        same_type = [c for c in by_type[sub.type] if c not in taken]
        wrong = _pick(rng, same_type, [c for c in everyone if c not in taken])
        kind = sub.type.lower()
        question = f"{sub.name} is {'an' if kind[0] in 'aeio' else 'a'} {kind} of which country?"
        if (it := _mc(question, country, wrong, rng, f"subdivision:{sub.code}")) is not None:
            out.append(it)
    return out


# ---------------------------------------------------------------- elementary arithmetic (computed)
def _arithmetic(r: random.Random) -> tuple[str, int, list[int]]:
    """A question, its answer, and the answers of the usual slips (preferred first)."""
    kind = r.randrange(7)
    if kind == 0:
        a, b = r.randint(100, 999), r.randint(10, 999)
        s = a + b
        return f"What is {a} + {b}?", s, [s - 10, s + 10, s + 1, s - 1, s + 100, s - 100]
    if kind == 1:
        a, b = r.randint(100, 999), r.randint(10, 99)
        d = a - b
        return f"What is {a} - {b}?", d, [d + 10, d - 10, a + b, d + 1, d - 1, d - 100]
    if kind == 2:
        a, b = r.randint(12, 99), r.randint(3, 12)
        p = a * b
        return f"What is {a} times {b}?", p, [a * (b + 1), a * (b - 1), p + 10, p - 10, a + b, p + a * 10]
    if kind == 3:
        b, q = r.randint(2, 12), r.randint(3, 60)
        return f"What is {b * q} divided by {b}?", q, [q + 1, q - 1, q + 2, q - 2, q * 2, b * q - b]
    if kind == 4:
        a, b, c = r.randint(2, 20), r.randint(2, 12), r.randint(2, 12)
        g = a + b * c
        return f"What is {a} + {b} * {c}?", g, [(a + b) * c, a * b + c, a + b + c, g + 1, g - 1, g - a]
    if kind == 5:
        p = r.choice((10, 20, 25, 50, 75))
        n = r.randint(2, 40) * 20
        g = p * n // 100
        return f"What is {p}% of {n}?", g, [n - g, g * 2, g // 2, p * n // 10, g + 10, g - 10]
    a, b = r.randint(20, 200), r.randint(3, 12)
    m = a % b
    return (f"What is the remainder when {a} is divided by {b}?", m,
            [a // b, m + 1, b - m, m - 1, m + 2, m - 2, b])


def arithmetic_stream(seed: int) -> Iterator[Item]:
    r = seeded_rng("mmlu/elementary_arithmetic", seed)
    while True:
        question, gold, wrong = _arithmetic(r)
        picked = [str(w) for w in wrong if w >= 0]
        item = _mc(question, str(gold), _numeric_wrong(str(gold), picked, r), r)
        if item is not None:
            yield item


# ---------------------------------------------------------------- unit conversion (factor table)
# (larger unit, smaller unit, exact number of smaller units in one larger unit)
CONVERSIONS: tuple[tuple[str, str, str], ...] = (
    ("kilometers", "meters", "1000"), ("meters", "centimeters", "100"), ("centimeters", "millimeters", "10"),
    ("meters", "millimeters", "1000"), ("kilograms", "grams", "1000"), ("grams", "milligrams", "1000"),
    ("metric tons", "kilograms", "1000"), ("liters", "milliliters", "1000"), ("hours", "minutes", "60"),
    ("minutes", "seconds", "60"), ("hours", "seconds", "3600"), ("days", "hours", "24"),
    ("weeks", "days", "7"), ("feet", "inches", "12"), ("yards", "feet", "3"), ("miles", "yards", "1760"),
    ("miles", "feet", "5280"), ("inches", "centimeters", "2.54"), ("pounds", "ounces", "16"),
    ("gallons", "quarts", "4"), ("quarts", "pints", "2"), ("bytes", "bits", "8"),
)


def _number(d: Decimal) -> str | None:
    """A plain decimal with at most three decimals and no trailing zeros; None otherwise."""
    text = format(d.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return None if ("." in text and len(text.split(".")[1]) > 3) or d <= 0 else text


def unit_conversion_stream(seed: int) -> Iterator[Item]:
    """``How many <small> are in q <large>?`` or the reverse, with the slips of conversion as
    distractors: the factor applied the wrong way, a power of ten off, another table's factor."""
    r = seeded_rng("mmlu/unit_conversion", seed)
    while True:
        large, small, factor_text = r.choice(CONVERSIONS)
        factor = Decimal(factor_text)
        q = Decimal(r.choice((r.randint(2, 20), r.randint(2, 20), r.choice(("0.5", "1.5", "2.5", "0.25")))))
        other = Decimal(r.choice([f for _, _, f in CONVERSIONS if Decimal(f) != factor]))
        if r.random() < 0.5:
            question, gold = f"How many {small} are in {_number(q)} {large}?", q * factor
            wrong = [q / factor, gold * 10, gold / 10, gold * 100, gold / 100, q * other, gold + factor]
        else:
            amount = _number(q * factor)
            if amount is None:
                continue
            question, gold = f"How many {large} are in {amount} {small}?", q
            wrong = [q * factor * factor, q * 10, q / 10, q * 100, q / 100, q * factor / other, q + 1]
        texts = [t for w in wrong if (t := _number(w)) is not None]
        gold_text = _number(gold)
        if gold_text is None:
            continue
        item = _mc(question, gold_text, _numeric_wrong(gold_text, texts, r), r)
        if item is not None:
            yield item


# ---------------------------------------------------------------- python code (executed)
SNIPPET_BUILTINS = {"print": print, "range": range, "len": len, "sum": sum, "max": max, "min": min,
                    "sorted": sorted, "str": str}


def run_snippet(code: str) -> str:
    """What ``code`` prints, run with a handful of builtins (the code is generated here, never input)."""
    lines: list[str] = []

    def capture(*args: Any) -> None:
        lines.append(" ".join(str(a) for a in args))

    exec(code, {"__builtins__": {**SNIPPET_BUILTINS, "print": capture}})  # generated code only
    return "\n".join(lines)


def _snippets(r: random.Random) -> list[str]:
    """A snippet and its mutations (off-by-one bounds, the other branch, a neighbouring index...)."""
    kind = r.randrange(7)
    if kind == 0:
        s, a = r.randint(0, 5), r.randint(0, 3)
        b = a + r.randint(3, 6)
        body = "total = {s}\nfor i in range({a}, {b}):\n    total {op} i\nprint(total)"
        return [body.format(s=s, a=a, b=b, op="+="), body.format(s=s, a=a, b=b + 1, op="+="),
                body.format(s=s, a=a + 1, b=b, op="+="), body.format(s=0, a=a, b=b, op="+="),
                body.format(s=s, a=a, b=b, op="="), body.format(s=s, a=a, b=b - 1, op="+="),
                body.format(s=s + 1, a=a, b=b, op="+="), body.format(s=s, a=a, b=b + 2, op="+=")]
    if kind == 1:
        xs = r.sample(range(1, 30), 6)
        i = r.randint(1, 3)
        j = i + r.randint(1, 2)
        body = "xs = " + str(xs) + "\nprint(xs[{i}:{j}])"
        return [body.format(i=i, j=j), body.format(i=i, j=j + 1), body.format(i=i - 1, j=j),
                body.format(i=i + 1, j=j + 1), body.format(i=i - 1, j=j - 1)]
    if kind == 2:
        word = r.choice([w for w in V.WORDS if len(w) >= 6])
        i = r.randint(0, 2)
        j = i + r.randint(2, 3)
        body = f'word = "{word}"\n' + "print(word[{i}:{j}])"
        return [body.format(i=i, j=j), body.format(i=i, j=j + 1), body.format(i=i + 1, j=j + 1),
                body.format(i=i + 1, j=j), body.format(i=max(i - 1, 0), j=j - 1)]
    if kind == 3:
        b = r.randint(3, 9)
        a = b * r.randint(2, 9) + r.randint(1, b - 1)
        body = f"a = {a}\nb = {b}\n" + "print({expr})"
        return [body.format(expr=e) for e in ("a // b, a % b", "a % b, a // b", "a // b + 1, a % b",
                                              "a // b, b - a % b", "a // b - 1, a % b + b")]
    if kind == 4:
        m, k = r.choice((2, 3)), r.randint(2, 4)
        x = r.randint(5, 40)
        body = ("x = {x}\nif x % {m} {cmp} 0:\n    x = x // {m}\nelse:\n    x = x * {k} + 1\nprint(x)")
        return [body.format(x=x, m=m, k=k, cmp="=="), body.format(x=x, m=m, k=k, cmp="!="),
                body.format(x=x + 1, m=m, k=k, cmp="=="), body.format(x=x, m=m, k=k + 1, cmp="==")]
    if kind == 5:
        n = r.randint(10, 200)
        d = r.choice((2, 3))
        body = "n = {n}\ncount = {c}\nwhile n {cmp} 1:\n    n = n // {d}\n    count += 1\nprint(count)"
        return [body.format(n=n, c=0, cmp=">", d=d), body.format(n=n, c=1, cmp=">", d=d),
                body.format(n=n, c=0, cmp=">=", d=d), body.format(n=n, c=0, cmp=">", d=5 - d),
                body.format(n=n * 2, c=0, cmp=">", d=d), body.format(n=n // d, c=0, cmp=">", d=d),
                body.format(n=n, c=-1, cmp=">", d=d), body.format(n=n * d * d, c=0, cmp=">", d=d)]
    k, n, rem = r.randint(2, 5), r.randint(5, 9), r.randint(0, 1)
    body = "result = [x * {k} for x in range({lo}, {n}) if x % 2 == {rem}]\nprint(result)"
    return [body.format(k=k, lo=0, n=n, rem=rem), body.format(k=k, lo=1, n=n + 1, rem=rem),
            body.format(k=k, lo=0, n=n, rem=1 - rem), body.format(k=k + 1, lo=0, n=n, rem=rem),
            body.format(k=k, lo=0, n=n + 1, rem=rem)]


def python_code_stream(seed: int) -> Iterator[Item]:
    r = seeded_rng("mmlu/python_code", seed)
    while True:
        real, *mutants = _snippets(r)
        gold = run_snippet(real)
        wrong = [run_snippet(m) for m in mutants]
        question = f"What does the following Python code print?\n\n{real}"
        item = _mc(question, gold, _numeric_wrong(gold, wrong, r), r)
        if item is not None:
            yield item


POOLS: dict[str, Callable[[], list[Item]]] = {
    "chemical_elements": element_items,
    "world_currencies": currency_items,
    "world_subdivisions": subdivision_items,
}
STREAMS: dict[str, Callable[[int], Iterator[Item]]] = {
    "elementary_arithmetic": arithmetic_stream,
    "unit_conversion": unit_conversion_stream,
    "python_code": python_code_stream,
}


def is_generated(subtask: str) -> bool:
    return subtask in STREAMS


def items(subtask: str) -> list[Item]:
    """Every item of a fixed-pool subject, in a stable order."""
    return POOLS[subtask]()


def stream(subtask: str, seed: int) -> Iterator[Item]:
    """The endless item stream of a generated subject; ``seed`` picks the stream."""
    return STREAMS[subtask](seed)
