"""``mhc-bench lm-eval``: lm-eval's own CLI on a trained cell, as lm-eval's users call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval import build_cell, tiny_model

from mhc_bench.data.tokenizer import ByteTokenizer
from mhc_bench.evaluation.adapter import MhcLM
from mhc_bench.evaluation.lm_eval_cli import lm_eval_argv
from mhc_bench.paths import PROJECT_ROOT

ITEMS = [
    {"question": "True and not False is", "label": 0},
    {"question": "not ( True ) and ( True ) is", "label": 1},
    {"question": "False or True is", "label": 0},
    {"question": "not True is", "label": 1},
    {"question": "True and False is", "label": 1},
]


def _task(folder: Path) -> Path:
    """A tiny local multiple-choice task, in lm-eval's own YAML format."""
    folder.mkdir(parents=True)
    data = folder / "tiny.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    (folder / "tiny_bool.yaml").write_text(
        "task: tiny_bool\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Q: {{question}}\\nA:"\n'
        'doc_to_choice: ["True", "False"]\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    return folder


def test_defaults_added_to_lm_eval_arguments() -> None:
    run = ["--model", "mhc-bench", "--tasks", "t"]
    assert lm_eval_argv(run) == [*run, "--device", "cpu"]
    assert lm_eval_argv(["run", *run]) == ["run", *run, "--device", "cpu"]
    assert lm_eval_argv([*run, "--device", "cuda:0"]) == [*run, "--device", "cuda:0"]
    assert lm_eval_argv([*run, "--config", "c.yaml"]) == [*run, "--config", "c.yaml"]
    assert lm_eval_argv(["ls", "tasks"]) == ["ls", "tasks"] and lm_eval_argv(["--help"]) == ["--help"]


def test_batch_size_auto_picks_a_size_instead_of_crashing() -> None:
    model, tok = tiny_model(), ByteTokenizer()
    assert MhcLM(model, tok, batch_size="auto", device="cpu").batch_size == 64
    assert MhcLM(model, tok, batch_size="auto:4", max_batch_size="12", device="cpu").batch_size == 8
    lm = MhcLM(model, tok, batch_size="auto", max_batch_size=5, device="cpu")
    assert lm.batch_size == 4 and lm.batch_sizes == {0: 4}
    assert MhcLM(model, tok, batch_size="3", device="cpu").batch_size == 3


@pytest.mark.slow
def test_lm_eval_cli_evaluates_a_cell_on_a_local_task(tmp_path: Path) -> None:
    cell = build_cell(tmp_path / "cell")
    tasks = _task(tmp_path / "tasks")
    out = tmp_path / "out"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mhc_bench.cli", "lm-eval", "--model", "mhc-bench", "--model_args",
         f"cell={cell}", "--tasks", "tiny_bool", "--include_path", str(tasks), "--batch_size", "auto",
         "--output_path", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "tiny_bool" in done.stdout and "batch_size: auto (64)" in done.stdout, done.stdout[-3000:]
    [written] = list(out.rglob("results_*.json"))
    results = json.loads(written.read_text())
    assert results["config"]["device"] == "cpu"
    acc = results["results"]["tiny_bool"]["acc,none"]

    # The same model scored in this process, one item at a time: the CLI evaluated this cell.
    import lm_eval
    from lm_eval.tasks import TaskManager

    direct = lm_eval.simple_evaluate(model=MhcLM.from_cell(cell, batch_size=1, device="cpu"),
                                     tasks=["tiny_bool"], task_manager=TaskManager(include_path=str(tasks)))
    assert acc == pytest.approx(direct["results"]["tiny_bool"]["acc,none"])
    assert results["n-samples"]["tiny_bool"]["effective"] == len(ITEMS)


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tasks = _task(tmp_path / "tasks")
    local = ["--tasks", "tiny_bool", "--include_path", str(tasks)]
    missing = tmp_path / "missing"
    cases = {"no-such-model": ["--model", "no-such-model", *local],
             "Tasks not found": ["--model", "mhc-bench", "--model_args", f"cell={tmp_path}", "--tasks", "x"],
             str(missing): ["--model", "mhc-bench", "--model_args", f"cell={missing}", *local]}
    for needle, args in cases.items():
        done = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "lm-eval", *args], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=300)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and last.startswith("mhc-bench lm-eval: error:"), done.stderr
        assert needle in last, last
        assert "Traceback" not in done.stderr
