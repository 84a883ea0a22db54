"""Task building: determinism, split disjointness, BIG-bench extraction, oracle/constant scoring."""

from __future__ import annotations

import json
import math

import pytest

from mhc_bench.evaluation.prepare import prepare_tasks
from mhc_bench.taskgen import bbh, bigbench_files, generators, gsm

network = pytest.mark.network  # BIG-bench task files come from the bigbench sdist (downloaded once)


def _keys(items):
    return {it["key"] for it in items}


def test_generated_tasks_are_deterministic_and_split() -> None:
    for family, sub in (("gsm", "gsm"), ("bbh", "boolean_expressions"), ("bbh", "multistep_arithmetic_two")):
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


def test_programmatic_answers_follow_bigbench_semantics() -> None:
    for it in bbh.first(bbh.all_stream("boolean_expressions", 0), 50):
        assert it["target"] == str(eval_bool(it["input"].removesuffix(" is")))
        assert len(it["input"].split()) == 8  # 7 tokens + "is", as in BBH
    for it in bbh.first(bbh.all_stream("multistep_arithmetic_two", 0), 50):
        assert it["target"] == str(eval_arith(it["input"].removesuffix(" =")))


@network
def test_all_subtasks_split_disjoint_and_training_text_disjoint() -> None:
    for family in generators.FAMILIES:
        eval_keys: set[str] = set()
        eval_texts: set[str] = set()
        for sub in generators.subtasks(family):
            dev, test = generators.eval_split(family, sub, 250)
            assert not _keys(dev) & _keys(test), f"{family}/{sub}: few-shot overlaps evaluated items"
            assert len(_keys(test)) == len(test), f"{family}/{sub}: duplicate evaluated items"
            eval_keys |= _keys(dev) | _keys(test)
            eval_texts |= {generators.format_item(family, it) for it in dev + test}
            train = generators.train_items(family, sub, seed=0, n=300)
            assert not _keys(train) & eval_keys, f"{family}/{sub}: training item is evaluated"
        texts = generators.training_text(family, seed=5, n_items=64)
        assert len(texts) == 64 and texts == generators.training_text(family, seed=5, n_items=64)
        assert not set(texts) & eval_texts
        assert generators.training_text(family, seed=6, n_items=64) != texts


@network
def test_mmlu_items_have_four_options_and_valid_answers() -> None:
    for sub in generators.subtasks("mmlu"):
        dev, test = generators.eval_split("mmlu", sub, 250)
        for it in dev + test:
            assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
            assert 0 <= it["answer"] < 4 and it["chance"] == 0.25


@network
def test_bigbench_extraction_is_selective_cached_and_hash_checked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bigbench_files, "bigbench_dir", lambda: tmp_path)
    files = ("navigate/task.json", "web_of_lies/task.py")
    root = bigbench_files.extract_task_files(files)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("task.*")) == sorted(files)
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest) == set(files)
    mtime = (root / files[0]).stat().st_mtime_ns
    bigbench_files.extract_task_files(files)  # idempotent: nothing rewritten
    assert (root / files[0]).stat().st_mtime_ns == mtime
    (root / files[0]).write_text("{}")
    with pytest.raises(bigbench_files.DataIntegrityError):
        bigbench_files.extract_task_files(files)


@network
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


@pytest.fixture(scope="module")
def suite():
    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    prepared = prepare_tasks()
    manager = TaskManager(include_path=str(prepared.root / "yaml"), include_defaults=False)

    def run(lm, limit):
        from mhc_bench.evaluation.results import summarize

        res = lm_eval.simple_evaluate(model=lm, tasks=["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"],
                                      task_manager=manager, limit=limit, log_samples=False,
                                      bootstrap_iters=0)
        return summarize(res, prepared)

    return run


@network
def test_oracle_scores_one(suite) -> None:
    rows = suite(_stub_lm(oracle=True), limit=6)
    leaves = {k: r for k, r in rows.items() if r["kind"] == "task"}
    assert len(leaves) == 28
    for name, row in leaves.items():
        for metric, vals in row["metrics"].items():
            assert vals["value"] == 1.0, (name, metric, vals)
    gsm_metrics = {"exact_match/strict-match", "exact_match/flexible-extract"}
    assert rows["mhcb_gsm_arith"]["metrics"].keys() == gsm_metrics


@network
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
    assert rows["mhcb_gsm_arith"]["chance"] is None
    assert rows["mhcb_bbh_gen"]["chance"] is None and rows["mhcb_bbh_mc"]["chance"] is not None
