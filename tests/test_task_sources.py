"""External task sources are possible, never required: BIG-bench's files from a named local path,
lm-eval's hub tasks when asked for; a named source that is missing is one line, exit 2, at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mhc_bench import cli
from mhc_bench.errors import UserError
from mhc_bench.evaluation import prepare, sources
from mhc_bench.taskgen import bigbench
from mhc_bench.workflow.grid import ProfileError, load_profile, validate_profile


def _example(task: str, i: int) -> dict:
    """A synthetic example in BIG-bench's task.json shape (the conversions read nothing else)."""
    if task.startswith("navigate"):
        return {"input": f"Take {i} steps. Turn around. Take {i} steps.",
                "target_scores": {"True": i % 2, "False": 1 - i % 2}}
    if task.startswith("sports"):
        return {"input": f"Player {i} scored a goal.",
                "target_scores": {"plausible": i % 2, "implausible": 1 - i % 2}}
    options = [f"option {k} of question {i}." for k in range(5 if "date" in task else 4)]
    return {"input": f"Synthetic question {i} about {task}?",
            "target_scores": {o: int(k == i % len(options)) for k, o in enumerate(options)}}


def fake_bigbench(root: Path) -> Path:
    """A folder laid out like a BIG-bench checkout with every task file the suite reads."""
    for rel in bigbench.TASK_FILES:
        path = root / bigbench.TASKS_DIR / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        task = {"name": rel.split("/")[0], "examples": [_example(rel, i) for i in range(40)]}
        if rel.startswith(("navigate", "logical_deduction", "physics")):
            task["task_prefix"] = f"Prefix of {rel.split('/')[0]}."
        path.write_text(json.dumps(task))
    return root


def test_a_checkout_and_its_sdist_give_the_same_bigbench_group(tmp_path: Path) -> None:
    checkout = fake_bigbench(tmp_path / "BIG-bench")
    folder = prepare.prepare_tasks(max_items=20, cache_dir=tmp_path / "cache", source=f"bigbench:{checkout}")
    sdist = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(checkout / "bigbench", arcname="bigbench-1.0.0/bigbench")
    archive = prepare.prepare_tasks(max_items=20, cache_dir=tmp_path / "cache", source=f"bigbench:{sdist}")
    assert archive.root != folder.root and archive.config_hash == folder.config_hash  # same content
    default = prepare.prepare_tasks(max_items=20, cache_dir=tmp_path / "cache")
    assert set(folder.leaves) - set(default.leaves) == {
        *(f"mhcb_bigbench_bbh_{form}_{s}" for s in bigbench.BBH_TASKS for form in ("gen", "mc")),
        *(f"mhcb_bigbench_mmlu_{s}" for s in bigbench.MMLU_TASKS),
        *(f"mhcb_bigbench_mmlu_cloze_{s}" for s in bigbench.MMLU_TASKS)}
    assert prepare.leaves_under(folder, "mhcb_bigbench")
    assert "mhcb_bigbench" not in default.groups
    for leaf in ("mhcb_bigbench_bbh_mc_navigate", "mhcb_bigbench_mmlu_cloze_physics"):
        items = [json.loads(line) for line in folder.test_file(leaf).read_text().splitlines()]
        assert len(items) == 20 and all(it["chance"] > 0 for it in items)
    nav = json.loads(folder.test_file("mhcb_bigbench_bbh_gen_navigate").read_text().splitlines()[0])
    assert nav["input"].startswith("Prefix of navigate. Take ") and nav["target"] in ("Yes", "No")


def test_the_bigbench_group_scores_through_lm_eval(tmp_path: Path) -> None:
    from test_tasks import _stub_lm, run_suite

    checkout = fake_bigbench(tmp_path / "BIG-bench")
    prepared = prepare.prepare_tasks(max_items=20, cache_dir=tmp_path / "cache",
                                     source=f"bigbench:{checkout}")
    rows = run_suite(prepared, _stub_lm(oracle=True), limit=4, tasks=("mhcb_bigbench",))
    leaves = {k: r for k, r in rows.items() if r["kind"] == "task"}
    assert len(leaves) == 22
    assert all(v["value"] == 1.0 for r in leaves.values() for v in r["metrics"].values())


@pytest.mark.parametrize("problem", ["missing", "incomplete", "not an archive", "no path"])
def test_a_named_bigbench_source_that_is_missing_fails_at_once_naming_it(tmp_path: Path,
                                                                          problem: str) -> None:
    spec = {"missing": f"bigbench:{tmp_path / 'nowhere'}", "no path": "bigbench:",
            "incomplete": f"bigbench:{fake_bigbench(tmp_path / 'bb')}",
            "not an archive": f"bigbench:{tmp_path / 'notes.txt'}"}[problem]
    if problem == "incomplete":
        (tmp_path / "bb" / bigbench.TASKS_DIR / "physics" / "task.json").unlink()
    (tmp_path / "notes.txt").write_text("not BIG-bench")
    with pytest.raises(UserError, match=r"eval\.source") as err:
        prepare.prepare_tasks(max_items=20, cache_dir=tmp_path / "cache", source=spec)
    assert {"missing": "does not exist", "incomplete": "physics/task.json", "not an archive": "neither",
            "no path": "expected bigbench:<path"}[problem] in str(err.value)
    assert not (tmp_path / "cache").exists(), "something was built before the check"


def test_an_unnamed_source_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("BIG-bench files read without a source")

    monkeypatch.setattr(bigbench, "parse_source", refuse)
    monkeypatch.setattr(bigbench, "read_tasks", refuse)
    assert "mhcb_bigbench" not in prepare.prepare_tasks(max_items=20, cache_dir=tmp_path).groups


def _one_line(text: str, prefix: str) -> str:
    assert text.startswith(prefix) and text.count("\n") == 1 and "Traceback" not in text, text
    return text


def test_eval_prepare_only_with_a_missing_source_is_one_line(tmp_path: Path, capsys) -> None:
    source = f"bigbench:{tmp_path / 'bb'}"
    code = cli.main(["eval", "--prepare-only", "--max-items", "20", "--source", source])
    assert code == 2
    err = _one_line(capsys.readouterr().err, "mhc-bench eval: error: eval.source")
    assert str(tmp_path / "bb") in err


def test_bigbench_tasks_without_a_source_are_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["eval", "--prepare-only", "--tasks", "mhcb_bigbench"]) == 2
    assert "eval.source: bigbench:<path>" in _one_line(capsys.readouterr().err, "mhc-bench eval: error: ")
    assert cli.main(["eval", "--prepare-only", "--max-items", "20", "--tasks", "mhcb_bhh"]) == 2  # a typo
    assert "unknown task(s) ['mhcb_bhh']" in _one_line(capsys.readouterr().err, "mhc-bench eval: error: ")


def test_the_prepare_tasks_rule_step_fails_with_one_line_and_exit_2(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "mhc_bench.workflow.rule_steps", "prepare-tasks", "--max-items", "20",
            "--out", str(tmp_path / "tasks.json")]
    missing = subprocess.run([*base, "--source", f"bigbench:{tmp_path / 'bb'}"], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and not (tmp_path / "tasks.json").exists()
    assert "bb" in _one_line(missing.stderr, "prepare-tasks: error: eval.source")
    hub = subprocess.run([*base, "--tasks", "mhcb_gsm", "bbh"], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert hub.returncode == 2 and "['bbh']" in _one_line(hub.stderr, "prepare-tasks: error: ")


def test_hub_tasks_fail_fast_when_the_hub_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(sources.TaskUnavailableError, match=r"\['bbh', 'mmlu'\] need the Hugging Face hub"):
        sources.preflight(["mhcb_gsm", "bbh", "mmlu"], None)
    sources.preflight(["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"], None)  # the default names nothing external


def test_the_profile_names_its_source_and_checks_it(tmp_path: Path) -> None:
    raw = load_profile("smoke")
    raw["eval"]["tasks"] = ["mhcb_bbh", "mhcb_bigbench"]
    with pytest.raises(ProfileError, match="bigbench:<path"):
        validate_profile({**raw, "eval": {**raw["eval"], "source": None}})
    with pytest.raises(ProfileError, match="source"):
        validate_profile({**raw, "eval": {**raw["eval"], "source": "/data/BIG-bench"}})  # no scheme
    checked = validate_profile({**raw, "eval": {**raw["eval"], "source": f"bigbench:{tmp_path}"}})
    assert checked["eval"]["source"] == f"bigbench:{tmp_path}"
    assert load_profile("smoke")["eval"]["source"] is None and load_profile("quick")["eval"]["source"] is None


def test_ci_runs_the_readme_test_command_from_new_empty_caches(tmp_path: Path) -> None:
    """``.ci/run`` with ``make`` stubbed: it must call ``make test`` with both caches new and empty."""
    from mhc_bench.paths import PROJECT_ROOT

    stub = tmp_path / "bin" / "make"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\necho "$*|$MHC_BENCH_CACHE|$XDG_CACHE_HOME|'
                    '$(find "$MHC_BENCH_CACHE" "$XDG_CACHE_HOME" -mindepth 1 | wc -l)"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}",
           "MHC_BENCH_CACHE": str(tmp_path / "warm"), "XDG_CACHE_HOME": str(tmp_path / "warm")}
    out = subprocess.run([str(PROJECT_ROOT / ".ci" / "run")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    args, data, xdg, entries = out.stdout.strip().split("|")
    assert args == "test" and data != xdg and str(tmp_path / "warm") not in (data, xdg)
    assert entries.strip() == "0", "the caches were not empty"
    assert not Path(data).exists() and not Path(xdg).exists(), "the temporary caches were left behind"


def test_reproduce_refuses_a_profile_whose_source_is_missing_before_snakemake(tmp_path: Path, capsys) -> None:
    import yaml

    from mhc_bench.paths import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "workflows" / "config" / "smoke.yaml").read_text())
    raw["eval"] = {**raw["eval"], "source": "bigbench:no/such/BIG-bench",
                   "tasks": [*raw["eval"]["tasks"], "mhcb_bigbench"]}
    profile = tmp_path / "smoke-bigbench.yaml"
    profile.write_text(yaml.safe_dump(raw))
    assert cli.main(["reproduce", "--profile", str(profile), "--directory", str(tmp_path), "-n"]) == 2
    err = _one_line(capsys.readouterr().err, "mhc-bench reproduce: error: eval.source")
    assert str(tmp_path / "no" / "such" / "BIG-bench") in err  # resolved from the working directory
    assert not (tmp_path / ".snakemake").exists()
