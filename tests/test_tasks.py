"""Task building: determinism, split disjointness, every answer checked by a solver written apart
from its generator, the empty-cache build, oracle/constant scoring."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import io
import itertools
import math
import re
import socket
import subprocess
from decimal import Decimal

import pytest

from mhc_bench.evaluation.prepare import prepare_tasks
from mhc_bench.taskgen import bbh, contamination, generators, gsm, mmlu
from mhc_bench.taskgen import vocabulary as V


def _keys(items):
    return {it["key"] for it in items}


def _eval_items(family: str, sub: str, n: int = 200) -> list[dict]:
    dev, test = generators.eval_split(family, sub, n)
    return dev + test


def test_generated_tasks_are_deterministic_and_split() -> None:
    for family, sub in (("gsm", "gsm"), ("bbh", "boolean_expressions"), ("bbh", "navigate"),
                        ("mmlu", "python_code")):
        dev, test = generators.eval_split(family, sub, 40)
        dev2, test2 = generators.eval_split(family, sub, 40)
        assert (dev, test) == (dev2, test2)
        assert len(dev) == generators.FEWSHOT[family] and len(test) == 40
        assert not _keys(dev) & _keys(test), "few-shot exemplars overlap evaluated items"
        # a larger cap only appends items: nothing evaluated before changes
        _, longer = generators.eval_split(family, sub, 60)
        assert longer[:40] == test
        train = generators.train_items(family, sub, seed=3, n=50)
        assert train and not _keys(train) & (_keys(dev) | _keys(longer))


def test_gsm_items_are_consistent() -> None:
    items = bbh.first(gsm.problem_stream(7), 200)
    for it in items:
        *_, last = it["answer"].splitlines()
        assert last == f"#### {it['number']}" and int(it["number"]) >= 0
        steps = it["answer"].splitlines()[:-1]
        assert 2 <= len(steps) <= 4
    assert len({it["question"][:20] for it in items}) > 5  # several templates in use


def test_all_subtasks_split_disjoint_and_training_text_disjoint() -> None:
    for family in generators.FAMILIES:
        eval_keys: set[str] = set()
        eval_texts: set[str] = set()
        for sub in generators.subtasks(family):
            dev, test = generators.eval_split(family, sub, 250)
            assert len(test) >= 100, f"{family}/{sub}: only {len(test)} evaluation items"
            assert not _keys(dev) & _keys(test), f"{family}/{sub}: few-shot overlaps evaluated items"
            assert len(_keys(test)) == len(test), f"{family}/{sub}: duplicate evaluated items"
            eval_keys |= _keys(dev) | _keys(test)
            eval_texts |= {generators.format_item(family, it) for it in dev + test}
            train = generators.train_items(family, sub, seed=0, n=300)
            assert not _keys(train) & eval_keys, f"{family}/{sub}: training item is evaluated"
            groups = {it["group"] for it in dev + test if "group" in it}
            assert not groups & {it["group"] for it in train if "group" in it}, (
                f"{family}/{sub}: a fact is asked on both sides")
            assert not {it.get("group") for it in dev} & {it.get("group") for it in test} - {None}, (
                f"{family}/{sub}: an exemplar shows the fact an evaluated item asks")
        texts = generators.training_text(family, seed=5, n_items=64)
        assert len(texts) == 64 and texts == generators.training_text(family, seed=5, n_items=64)
        assert not set(texts) & eval_texts
        assert generators.training_text(family, seed=6, n_items=64) != texts


def test_the_contamination_check_catches_a_planted_item_of_every_family() -> None:
    forbidden = contamination.evaluation_prompt_hashes(generators.FAMILIES, 50)
    for family in generators.FAMILIES:
        clean = generators.training_text(family, seed=1, n_items=40)
        contamination.check_documents(clean, forbidden, family)
        _, test = generators.eval_split(family, generators.subtasks(family)[-1], 50)
        planted = [*clean, generators.format_item(family, test[7])]
        with pytest.raises(contamination.ContaminationError, match="1 document"):
            contamination.check_documents(planted, forbidden, family)


# ---------------------------------------------------------------- BBH: solvers apart from the generators
def _parse(tokens: list[str], binary: dict[str, tuple[int, object]], atom: object, unary: dict) -> object:
    """Precedence climbing over ``tokens``: an evaluator written apart from the generator's ``eval``."""
    pos = 0

    def primary() -> object:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = expression(0)
            assert tokens[pos] == ")"
            pos += 1
            return value
        if tok in unary:
            return unary[tok](primary() if tokens[pos] == "(" else expression(unary_level))
        return atom(tok)

    unary_level = 3

    def expression(min_level: int) -> object:
        nonlocal pos
        left = primary()
        while pos < len(tokens) and tokens[pos] in binary and binary[tokens[pos]][0] >= min_level:
            level, fn = binary[tokens[pos]]
            pos += 1
            left = fn(left, expression(level + 1))
        return left

    value = expression(0)
    assert pos == len(tokens)
    return value


def eval_bool(text: str) -> bool:
    return _parse(text.split(), {"or": (1, lambda a, b: a or b), "and": (2, lambda a, b: a and b)},
                  {"True": True, "False": False}.__getitem__, {"not": lambda v: not v})


def eval_arith(text: str) -> int:
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    ops = {"+": (1, lambda a, b: a + b), "-": (1, lambda a, b: a - b), "*": (2, lambda a, b: a * b)}
    return _parse(tokens, ops, int, {})


def test_the_independent_evaluators_agree_with_hand_worked_examples() -> None:
    assert eval_bool("not ( True ) and ( True )") is False
    assert eval_bool("True or False and False") is True  # and binds tighter than or
    assert eval_bool("not True or True") is True  # not binds tightest
    assert eval_arith("((-1 + 2 * 3 - -4) * (5 - 6 * 7 + 8))") == (-1 + 6 + 4) * (5 - 42 + 8)


def solve_web_of_lies(text: str) -> str:
    first = re.match(r"Question: (\w+) (tells the truth|lies)\.", text)
    honest = {first[1]: first[2] == "tells the truth"}
    for speaker, subject, claim in re.findall(r"(\w+) says (\w+) (tells the truth|lies)", text):
        honest[speaker] = honest[subject] == (claim == "tells the truth")
    return "Yes" if honest[re.search(r"Does (\w+) tell the truth\?$", text)[1]] else "No"


def solve_dyck(text: str) -> str:
    closing = {")": "(", "]": "[", "}": "{", ">": "<"}
    stack: list[str] = []
    for symbol in text.split("Input: ")[1].split():
        if symbol in closing:
            assert stack.pop() == closing[symbol], "the shown prefix is not a valid Dyck prefix"
        else:
            stack.append(symbol)
    opening = {v: k for k, v in closing.items()}
    return " ".join(opening[s] for s in reversed(stack))


def solve_counting(text: str) -> str:
    listed, category = re.match(r"I have (.*)\. How many (.*) do I have\?$", text).groups()
    words = {"a": 1, "an": 1, "two": 2, "three": 3, "four": 4}
    kinds = {name: cat for cat, objects in V.COUNTING.items() for pair in objects for name in pair}
    total = 0
    singular = {s for objects in V.COUNTING.values() for s, _ in objects}
    plural = {p for objects in V.COUNTING.values() for _, p in objects}
    for part in re.split(r", and |, | and ", listed):
        count, noun = part.split(" ", 1)
        if count in ("a", "an"):
            assert noun in singular and count == ("an" if noun[0] in "aeiou" else "a"), part
        else:
            assert noun in plural, part
        total += words[count] if kinds[noun] == category else 0
    return str(total)


HOLIDAYS = {"Christmas Eve": (12, 24), "Christmas Day": (12, 25), "New Year's Eve": (12, 31),
            "New Year's Day": (1, 1), "Halloween": (10, 31), "Valentine's Day": (2, 14),
            "the first day of spring, March 20,": (3, 20), "the last day of April": (4, 30)}


def _date(text: str) -> dt.date:
    for fmt in ("%B %d, %Y", "%b %d, %Y", "%m/%d/%Y"):
        with contextlib.suppress(ValueError):
            return dt.datetime.strptime(text, fmt).date()
    raise ValueError(text)


def _add_months(d: dt.date, months: int) -> dt.date:
    year, month = divmod(d.year * 12 + d.month - 1 + months, 12)
    return dt.date(year, month + 1, d.day)


def solve_date(text: str) -> dt.date:
    """Today's date from the context sentence, then the asked offset."""
    stem = text.split("\nOptions:")[0]
    context, phrase = re.match(r"(.*) What is the date (.*) in MM/DD/YYYY\?$", stem).groups()
    if m := re.fullmatch(r"Today is (.*) of (\d{4})\.", context):
        today = dt.date(int(m[2]), *HOLIDAYS[m[1]])
    elif m := re.fullmatch(r"Today is (.*)\.", context):
        today = _date(m[1])
    elif m := re.fullmatch(r"Yesterday was (.*)\.", context):
        today = _date(m[1]) + dt.timedelta(days=1)
    elif m := re.fullmatch(r"Tomorrow is (.*)\.", context):
        today = _date(m[1]) - dt.timedelta(days=1)
    elif m := re.fullmatch(r"The concert was scheduled for (.*), but was delayed by one day to today\.",
                           context):
        today = _date(m[1]) + dt.timedelta(days=1)
    elif m := re.fullmatch(r"\w+ was born on (.*)\. Today is \w+'s (\d+)(?:st|nd|rd|th) birthday\.", context):
        born = _date(m[1])
        today = born.replace(year=born.year + int(m[2]))
    else:
        m = re.fullmatch(r"\w+ and \w+ married on (.*)\. It is their (\d+)-year anniversary today\.", context)
        married = _date(m[1])
        today = married.replace(year=married.year + int(m[2]))
    days = {"today": 0, "yesterday": -1, "tomorrow": 1, "24 hours later": 1, "one week ago": -7,
            "one week from today": 7}
    if phrase in days:
        return today + dt.timedelta(days=days[phrase])
    if m := re.fullmatch(r"(\d+) days (ago|from today)", phrase):
        return today + dt.timedelta(days=int(m[1]) * (-1 if m[2] == "ago" else 1))
    if phrase == "one year ago from today":
        return today.replace(year=today.year - 1)
    assert phrase == "a month ago", phrase
    return _add_months(today, -1)


def _options(text: str) -> list[str]:
    return re.findall(r"^\(([A-Z])\) (.*)$", text, flags=re.M)


def solve_tracking(text: str) -> str:
    """Who holds what: the options list the things in the players' starting order."""
    opening, rest = text.split("\n", 1)
    options = _options(text)
    players = ["Alice", "Bob", "Claire"]
    assert opening.startswith("Alice, Bob, and Claire ")
    positions = [opening.index(f" {o}") for _, o in options]
    assert positions == sorted(positions), "options are not in the starting order"
    holds = dict(zip(players, range(3), strict=True))
    for a, b in re.findall(r"(?:First|Then|Finally), (\w+) and (\w+) ", rest):
        holds[a], holds[b] = holds[b], holds[a]
    who = re.search(r"At the end of the \w+, (\w+) (?:has|is)", rest)[1]
    return f"({options[holds[who]][0]})"


RELATIONS = {"is to the left of": -1, "is to the right of": 1, "finished above": -1, "finished below": 1,
             "are less expensive than": -1, "are more expensive than": 1, "is older than": -1,
             "is newer than": 1}
RANKS = {"the leftmost": 0, "the second from the left": 1, "the rightmost": 2, "first": 0, "second": 1,
         "last": 2, "the cheapest": 0, "the second-cheapest": 1, "the most expensive": 2, "the oldest": 0,
         "the second-newest": 1, "the newest": 2}


def solve_deduction(text: str) -> str:
    """Every order of the three objects against the clues: exactly one fits; which option holds in it."""
    options = _options(text)
    named = [re.match(r"(.*?) (?:is|are|finished) (.+)$", o).groups() for _, o in options]
    objects = [name.lower() for name, _ in named]
    paragraph = text.split("\nOptions:")[0].split("each paragraph. ")[1]
    clues = []
    for sentence in paragraph.split(". ")[1:]:
        sentence = sentence.rstrip(".").lower()
        subject = next(i for i, o in enumerate(objects) if sentence.startswith(o + " "))
        rest = sentence[len(objects[subject]) + 1:]
        relation = next((r for r in RELATIONS if rest.startswith(r + " ")), None)
        if relation is not None:
            other = objects.index(rest[len(relation) + 1:])
            sign = RELATIONS[relation]
            clues.append(lambda order, a=subject, b=other, s=sign: (order[a] - order[b]) * s > 0)
        else:
            rank = RANKS[rest.split(" ", 1)[1]]
            clues.append(lambda order, a=subject, r=rank: order[a] == r)
    fitting = [o for o in itertools.permutations(range(3)) if all(c(o) for c in clues)]
    assert len(fitting) == 1, f"{len(fitting)} orders fit: {text}"
    true = [letter for (letter, _), (i, (_, rank)) in zip(options, enumerate(named), strict=True)
            if fitting[0][i] == RANKS[rank]]
    assert len(true) == 1
    return f"({true[0]})"


def solve_navigate(text: str) -> str:
    x = y = 0
    heading = (0, 1)
    for step in re.findall(r"(Turn left|Turn right|Turn around|Take \d+ steps?(?: \w+)?)\.", text):
        if step == "Turn left":
            heading = (-heading[1], heading[0])
        elif step == "Turn right":
            heading = (heading[1], -heading[0])
        elif step == "Turn around":
            heading = (-heading[0], -heading[1])
        else:
            n, *direction = step.split()[1:]
            direction = direction[1] if len(direction) > 1 else None
            dx, dy = {None: heading, "forward": (0, 1), "backward": (0, -1), "left": (-1, 0),
                      "right": (1, 0)}[direction]
            x, y = x + dx * int(n), y + dy * int(n)
    return "Yes" if (x, y) == (0, 0) else "No"


SOLVERS = {
    "boolean_expressions": lambda t: str(eval_bool(t.removesuffix(" is"))),
    "multistep_arithmetic_two": lambda t: str(eval_arith(t.removesuffix(" ="))),
    "web_of_lies": solve_web_of_lies,
    "dyck_languages": solve_dyck,
    "word_sorting": lambda t: " ".join(sorted(t.split("List: ")[1].split())),
    "object_counting": solve_counting,
    "date_understanding": lambda t: next(f"({k})" for k, v in _options(t)
                                         if v == solve_date(t).strftime("%m/%d/%Y")),
    "tracking_shuffled_objects_three_objects": solve_tracking,
    "logical_deduction_three_objects": solve_deduction,
    "navigate": solve_navigate,
}


@pytest.mark.parametrize("subtask", bbh.SUBTASKS)
def test_every_bbh_answer_agrees_with_an_independent_solver(subtask: str) -> None:
    items = _eval_items("bbh", subtask, 250) + generators.train_items("bbh", subtask, 0, 100)
    for it in items:
        assert it["target"] == SOLVERS[subtask](it["input"]), it["input"]
        if bbh.has_choices(subtask):
            assert it["choices"][it["label"]] == it["target"] and it["chance"] == 1 / len(it["choices"])
        else:
            assert it["choices"] == [] and it["label"] == -1
    answers = collections.Counter(it["target"] for it in items)
    if bbh.has_choices(subtask):  # no answer the model could learn to prefer blindly
        assert len(answers) == len(items[0]["choices"]), answers
        assert max(answers.values()) / len(items) < 1.6 / len(answers), answers
    else:
        assert max(answers.values()) / len(items) < 0.15, answers  # no free-form answer dominates


def test_bbh_formats_match_bbh() -> None:
    """BBH's no-CoT prompt shapes (lm-eval's bbh/fewshot exemplars show the same)."""
    first = {s: _eval_items("bbh", s, 5)[0]["input"] for s in bbh.SUBTASKS}
    assert first["boolean_expressions"].endswith(" is")
    arithmetic = first["multistep_arithmetic_two"]
    assert arithmetic.startswith("((") and arithmetic.endswith(" =")
    assert first["web_of_lies"].startswith("Question: ") and first["web_of_lies"].endswith("tell the truth?")
    assert first["dyck_languages"].startswith("Complete the rest of the sequence, making sure that the "
                                              "parentheses are closed properly. Input: ")
    assert first["word_sorting"].startswith("Sort the following words alphabetically: List: ")
    assert re.fullmatch(r"I have .*\. How many [a-z ]+ do I have\?", first["object_counting"])
    assert first["navigate"].startswith("If you follow these instructions, do you return to the starting "
                                        "point? ") and first["navigate"].endswith("\nOptions:\n- Yes\n- No")
    assert first["logical_deduction_three_objects"].startswith("The following paragraphs each describe a set "
                                                               "of three objects arranged in a fixed order.")
    for lettered, n in (("date_understanding", 6), ("tracking_shuffled_objects_three_objects", 3),
                        ("logical_deduction_three_objects", 3)):
        assert "\nOptions:\n(A) " in first[lettered] and len(_options(first[lettered])) == n
    assert "sports_understanding" not in bbh.SUBTASKS  # needs facts about athletes, not a rule
    for sub in bbh.SUBTASKS:  # the articles of generated lists: "an orange ball", "a harp"
        for it in _eval_items("bbh", sub, 250):
            assert not re.search(r"\ba [aeiou]|\ban [^aeiou\W]", it["input"], flags=re.I), it["input"]


# ---------------------------------------------------------------- MMLU-style subjects
def _asked(item: dict) -> tuple[str, str, list[str]]:
    gold = item["choices"][item["answer"]]
    return item["question"], gold, [c for c in item["choices"] if c != gold]


def check_element(question: str, gold: str, wrong: list[str]) -> None:
    import periodictable

    by_name = {periodictable.elements[z].name: periodictable.elements[z] for z in range(1, 119)}
    by_symbol = {e.symbol: e for e in by_name.values()}
    if m := re.fullmatch(r"What is the chemical symbol of (\w+)\?", question):
        truth, pool = by_name[m[1]].symbol, by_symbol
    elif m := re.fullmatch(r"Which element has the chemical symbol (\w+)\?", question):
        truth, pool = by_symbol[m[1]].name, by_name
    elif m := re.fullmatch(r"What is the atomic number of (\w+)\?", question):
        truth, pool = str(by_name[m[1]].number), {str(z) for z in range(1, 119)}
    else:
        m = re.fullmatch(r"Which element has atomic number (\d+)\?", question)
        truth, pool = periodictable.elements[int(m[1])].name, by_name
    assert gold == truth and all(w in pool for w in wrong), question


def check_currency(question: str, gold: str, wrong: list[str]) -> None:
    import pycountry

    if m := re.fullmatch(r"What is the ISO 4217 code of the (.*)\?", question):
        assert pycountry.currencies.get(alpha_3=gold).name == m[1]
        assert all(pycountry.currencies.get(alpha_3=w) is not None for w in wrong)
        return
    country_name = re.fullmatch(r"What is the national currency of (.*)\?", question)[1]
    country = pycountry.countries.lookup(country_name)
    currency = next(c for c in pycountry.currencies if c.name == gold)
    assert currency.numeric == country.numeric, question  # ISO: a national currency shares the number
    assert "US Dollar" not in wrong


def check_subdivision(question: str, gold: str, wrong: list[str]) -> None:
    import pycountry

    name = re.fullmatch(r"(.*) is an? [a-z -]+ of which country\?", question)[1]
    holders = set()
    for sub in pycountry.subdivisions:
        if sub.name == name:
            country = pycountry.countries.get(alpha_2=sub.country_code)
            holders |= {country.name, getattr(country, "common_name", country.name)}
    assert gold in holders and not holders & set(wrong), question


def check_arithmetic(question: str, gold: str, wrong: list[str]) -> None:
    if m := re.fullmatch(r"What is (\d+)% of (\d+)\?", question):
        truth = Decimal(m[1]) * Decimal(m[2]) / 100
    elif m := re.fullmatch(r"What is the remainder when (\d+) is divided by (\d+)\?", question):
        truth = Decimal(int(m[1]) % int(m[2]))
    else:
        expr = re.fullmatch(r"What is (.*)\?", question)[1]
        expr = expr.replace(" times ", " * ").replace(" divided by ", " / ")
        assert re.fullmatch(r"[\d +*/-]+", expr)
        tokens = expr.split()
        truth = Decimal(tokens[0]) / Decimal(tokens[2]) if "/" in tokens else Decimal(eval_arith(expr))
    assert Decimal(gold) == truth and truth not in [Decimal(w) for w in wrong], question


# Each unit in a base unit of its dimension, written apart from the generator's pairwise table.
UNITS = {"kilometers": "1000", "meters": "1", "centimeters": "0.01", "millimeters": "0.001",
         "inches": "0.0254", "feet": "0.3048", "yards": "0.9144", "miles": "1609.344",
         "metric tons": "1000000", "kilograms": "1000", "grams": "1", "milligrams": "0.001",
         "pounds": "453.59237", "ounces": "28.349523125", "liters": "1000", "milliliters": "1",
         "gallons": "3785.411784", "quarts": "946.352946", "pints": "473.176473", "weeks": "604800",
         "days": "86400", "hours": "3600", "minutes": "60", "seconds": "1", "bytes": "8", "bits": "1"}


def check_units(question: str, gold: str, wrong: list[str]) -> None:
    small, amount, large = re.fullmatch(r"How many ([a-z ]+) are in ([\d.]+) ([a-z ]+)\?", question).groups()
    truth = Decimal(amount) * Decimal(UNITS[large]) / Decimal(UNITS[small])
    assert Decimal(gold) == truth and truth not in [Decimal(w) for w in wrong], question


def check_code(question: str, gold: str, wrong: list[str]) -> None:
    code = question.split("\n\n", 1)[1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})  # the full interpreter, not the generator's sandbox
    assert out.getvalue().rstrip("\n") == gold and gold not in wrong, question


MMLU_CHECKS = {"chemical_elements": check_element, "world_currencies": check_currency,
               "world_subdivisions": check_subdivision, "elementary_arithmetic": check_arithmetic,
               "unit_conversion": check_units, "python_code": check_code}


@pytest.mark.parametrize("subtask", mmlu.SUBTASKS)
def test_every_mmlu_answer_agrees_with_its_source(subtask: str) -> None:
    items = _eval_items("mmlu", subtask, 250) + generators.train_items("mmlu", subtask, 0, 100)
    for it in items:
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4, it
        assert 0 <= it["answer"] < 4 and it["chance"] == 0.25
        MMLU_CHECKS[subtask](*_asked(it))
    letters = collections.Counter(it["answer"] for it in items)
    assert max(letters.values()) / len(items) < 0.35, letters  # the gold letter is not guessable
    ranks = collections.Counter()  # nor is the gold number the middle one of the options
    for it in items:
        with contextlib.suppress(ArithmeticError):
            values = [Decimal(c) for c in it["choices"]]
            ranks[sum(v < values[it["answer"]] for v in values)] += 1
    if ranks.total() > 50:
        assert (ranks[0] + ranks[3]) / ranks.total() > 0.2, ranks


def test_mmlu_distractors_are_drawn_deterministically_and_plausibly() -> None:
    assert mmlu.element_items() == mmlu.element_items()
    items = {it["question"]: it for it in mmlu.element_items()}
    symbol = items["What is the chemical symbol of iron?"]
    assert symbol["choices"][symbol["answer"]] == "Fe"
    assert all(c[0] in "FI" for c in symbol["choices"]), symbol  # symbols sharing a letter
    number = items["What is the atomic number of iron?"]
    assert all(abs(int(c) - 26) <= 18 for c in number["choices"])
    peso = next(it for it in mmlu.currency_items() if it["question"].endswith(" of Mexico?"))
    assert sum(c.endswith("Peso") for c in peso["choices"]) >= 3, peso  # currencies sharing a name


# ---------------------------------------------------------------- the empty-cache build
def test_every_default_family_builds_from_an_empty_cache_without_network(tmp_path, monkeypatch) -> None:
    """What a fresh machine does: nothing cached, no socket, no pip; the whole suite still builds."""
    from mhc_bench.taskgen import splits  # noqa: F401  (imported before the guards: nothing lazy left)

    cache = tmp_path / "cache"
    monkeypatch.setenv("MHC_BENCH_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"the default task suite tried to reach out: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    for cached in (generators._pool, mmlu._elements, mmlu._national_currencies, mmlu._subdivisions,
                   contamination.evaluation_prompt_hashes):
        cached.cache_clear()

    prepared = prepare_tasks(max_items=30)
    assert prepared.root.is_relative_to(cache) and [p.name for p in cache.iterdir()] == ["tasks"]
    for family in generators.FAMILIES:
        for sub in generators.subtasks(family):
            leaves = [n for n, leaf in prepared.leaves.items()
                      if (leaf["family"], leaf["subtask"]) == (family, sub)]
            assert leaves, f"{family}/{sub} has no task"
            assert len(prepared.test_file(leaves[0]).read_text().splitlines()) == 30
        assert len(generators.training_text(family, seed=0, n_items=20)) == 20
    assert contamination.evaluation_prompt_hashes(generators.FAMILIES, 30)
    assert not (tmp_path / "xdg").exists()


def test_prepare_is_idempotent_and_hash_checked(tmp_path) -> None:
    a = prepare_tasks(max_items=20, cache_dir=tmp_path)
    b = prepare_tasks(max_items=20, cache_dir=tmp_path)
    assert a.root == b.root and a.config_hash == b.config_hash
    c = prepare_tasks(max_items=20, cache_dir=tmp_path / "elsewhere")
    assert c.config_hash == a.config_hash, "config hash must not depend on the cache location"
    victim = a.test_file("mhcb_gsm_arith")
    victim.write_text(victim.read_text().replace("#### ", "#### 1"))
    with pytest.raises(Exception, match="sha256"):
        prepare_tasks(max_items=20, cache_dir=tmp_path)


def test_the_suite_keeps_its_shape_and_budget() -> None:
    """29 leaves (10 BBH-style subtasks generative, 6 of them also scored as options, GSM, 6 MMLU-style
    subjects x letter/cloze), as many as the suite it replaced plus one: the quick profile's eval
    time per cell depends on it."""
    prepared = prepare_tasks(max_items=20)
    forms = collections.Counter(leaf["form"] for leaf in prepared.leaves.values())
    assert forms == {"bbh_gen": 10, "bbh_mc": 6, "gsm": 1, "mmlu": 6, "mmlu_cloze": 6}
    assert set(prepared.groups) == {"mhcb_bbh", "mhcb_bbh_gen", "mhcb_bbh_mc", "mhcb_gsm", "mhcb_mmlu",
                                    "mhcb_mmlu_letter", "mhcb_mmlu_cloze"}


def test_bbh_generation_stops_soon_after_the_longest_answer_but_never_cuts_one() -> None:
    """A model that rambles past the stop strings pays a few tokens on short-answer tasks, and even
    a byte-level tokenizer (one token per byte) fits every answer with a leading newline."""
    import yaml

    from mhc_bench.data.tokenizer import ByteTokenizer

    prepared = prepare_tasks()
    budgets = {}
    for name, leaf in prepared.leaves.items():
        if leaf["form"] != "bbh_gen":
            continue
        budget = yaml.safe_load((prepared.root / "yaml" / f"{name}.yaml").read_text())["generation_kwargs"]
        items = _eval_items("bbh", leaf["subtask"], 250)
        longest = max(len(ByteTokenizer().encode("\n" + it["target"])) for it in items)
        assert longest < budget["max_gen_toks"] <= longest + 4, name
        budgets[leaf["subtask"]] = budget["max_gen_toks"]
    assert budgets["boolean_expressions"] == 10 and max(budgets.values()) <= 64, budgets


# ---------------------------------------------------------------- oracle and constant models
def _stub_lm(oracle: bool):
    from lm_eval.api.model import LM

    class StubLM(LM):
        """Test-only: answers from the gold fields of each request's doc, or a constant."""

        def loglikelihood(self, requests, disable_tqdm=False):
            out = []
            for req in requests:
                gold = req.doc["label"] if "label" in req.doc else req.doc["answer"]
                out.append((0.0 if not oracle or req.idx == gold else -10.0, True))
            return out

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            return [0.0 for _ in requests]

        def generate_until(self, requests, disable_tqdm=False):
            if not oracle:
                return ["" for _ in requests]
            return [" " + (r.doc["target"] if "target" in r.doc else r.doc["answer"]) for r in requests]

    return StubLM()


def run_suite(prepared, lm, limit, tasks=("mhcb_bbh", "mhcb_gsm", "mhcb_mmlu")):
    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from mhc_bench.evaluation.results import summarize

    manager = TaskManager(include_path=str(prepared.root / "yaml"), include_defaults=False)
    res = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  log_samples=False, bootstrap_iters=0)
    return summarize(res, prepared)


@pytest.fixture(scope="module")
def suite():
    prepared = prepare_tasks()
    return lambda lm, limit: run_suite(prepared, lm, limit)


def test_oracle_scores_one(suite) -> None:
    rows = suite(_stub_lm(oracle=True), limit=6)
    leaves = {k: r for k, r in rows.items() if r["kind"] == "task"}
    assert len(leaves) == 29
    for name, row in leaves.items():
        for metric, vals in row["metrics"].items():
            assert vals["value"] == 1.0, (name, metric, vals)
    gsm_metrics = {"exact_match/strict-match", "exact_match/flexible-extract"}
    assert rows["mhcb_gsm_arith"]["metrics"].keys() == gsm_metrics


def test_constant_model_scores_at_chance(suite) -> None:
    rows = suite(_stub_lm(oracle=False), limit=120)
    for name, row in rows.items():
        for metric, vals in row["metrics"].items():
            if metric.startswith("exact_match"):  # generated answers: no chance level is claimed
                assert vals["value"] == 0.0 and row["chance"] is None
                continue
            chance, n = row["chance"], row["n"]
            tol = 4 * math.sqrt(chance * (1 - chance) / n)
            assert abs(vals["value"] - chance) <= tol, (name, metric, vals["value"], chance, n)
    assert rows["mhcb_mmlu_letter"]["chance"] == pytest.approx(0.25)
    assert rows["mhcb_bbh_mc_navigate"]["chance"] == pytest.approx(0.5)
    assert rows["mhcb_bbh_mc_date_understanding"]["chance"] == pytest.approx(1 / 6)
    assert rows["mhcb_gsm_arith"]["chance"] is None
    assert rows["mhcb_bbh_gen"]["chance"] is None and rows["mhcb_bbh_mc"]["chance"] is not None
