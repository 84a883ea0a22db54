"""Model adapter exactness, and a tiny cell evaluated end to end (eval.json + MLflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lm_eval.api.instance import Instance

from mhc_bench.cellfolder import EVAL as EVAL_FILE
from mhc_bench.data.tokenizer import ByteTokenizer
from mhc_bench.errors import UserError
from mhc_bench.evaluation.adapter import MhcLM
from mhc_bench.evaluation.runner import TaskUnavailableError, evaluate_cell
from mhc_bench.model import GPT, ModelConfig

TEXT = "Q: not ( True ) and ( True ) is\nA: False\n\nQ: True and not False is\nA: True"


def tiny_model(seq_len: int = 48, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig.of("mhc", vocab_size=ByteTokenizer.vocab_size, n_layer=1, d_model=32, n_head=2,
                         seq_len=seq_len, n_streams=2, kernels="torch")
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = torch.tensor([ByteTokenizer().encode(TEXT)[: seq_len + 1]])
    for _ in range(5):  # a few steps so the scores are not those of a uniform model
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def build_cell(path: Path, tracking_uri: str | None = None, **metrics: Any) -> Path:
    """A finished cell folder in the trainer's contract (its writers), built without the trainer."""
    from cell_records import cell_config, metrics_record

    from mhc_bench import cellfolder as cf

    model = tiny_model()
    cfg = cell_config("mhc", 2, d_model=32, n_layer=1, seq_len=48, kernels="torch")
    path.mkdir(parents=True, exist_ok=True)
    from mhc_bench.train.finalize import save_weights

    save_weights(model, path / cf.MODEL)
    (path / cf.CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    ByteTokenizer().save(path / cf.TOKENIZER)
    if tracking_uri:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.create_experiment("mhc-bench-test")
        metrics |= {"mlflow_run_id": client.create_run(exp).info.run_id, "mlflow_tracking_uri": tracking_uri}
    cf.write_metrics(path, metrics_record(cfg, **metrics))
    return path


def _ll(context: str, continuation: str) -> Instance:
    return Instance("loglikelihood", doc={}, arguments=(context, continuation), idx=0)


def _direct_logprob(model: GPT, ctx: list[int], cont: list[int]) -> float:
    ids = torch.tensor([ctx + cont])
    targets = ids[:, 1:].clone()
    targets[:, : len(ctx) - 1] = -1
    with torch.no_grad():
        _, loss = model(ids[:, :-1], targets)
    return -loss.item() * len(cont)


def test_loglikelihood_equals_model_cross_entropy() -> None:
    model, tok = tiny_model(), ByteTokenizer()
    pairs = [("Q: True and not False is\nA:", " True"), ("Q: 2 + 3 =", " 5"), ("A", "BCD efg"),
             ("Q: not ( True ) is\nA:", " False")]
    expected = [_direct_logprob(model, tok.encode(c), tok.encode(x)) for c, x in pairs]
    for batch_size in (1, 3, 8):  # right padding must not change any score
        lm = MhcLM(model, tok, batch_size=batch_size, device="cpu")
        got = [s for s, _ in lm.loglikelihood([_ll(c, x) for c, x in pairs])]
        assert got == pytest.approx(expected, abs=1e-4)
    # rolling log-likelihood of a text that fits: the model's own loss after the end-of-text token
    text = "Q: True and not False is"
    ids = [tok.eot_id, *tok.encode(text)]
    with torch.no_grad():
        _, loss = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert rolling[0] == pytest.approx(-loss.item() * (len(ids) - 1), abs=1e-4)


def test_long_inputs_are_left_truncated_to_the_context() -> None:
    model, tok = tiny_model(seq_len=48), ByteTokenizer()
    lm = MhcLM(model, tok, batch_size=4, device="cpu")
    ctx, cont = TEXT * 3, " True"
    (score, _), = lm.loglikelihood([_ll(ctx, cont)])
    whole = (tok.encode(ctx) + tok.encode(cont))[-49:]
    assert score == pytest.approx(_direct_logprob(model, whole[:-5], whole[-5:]), abs=1e-4)
    long_text = TEXT * 2  # > seq_len: scored over disjoint windows, every token exactly once
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (long_text,), 0)])
    assert total < 0 and torch.isfinite(torch.tensor(total))


def test_generate_until_is_greedy_and_respects_limits() -> None:
    model, tok = tiny_model(), ByteTokenizer()
    lm = MhcLM(model, tok, batch_size=4, device="cpu")
    contexts = ["Q: True is\nA:", "Q: a much longer question about False and True\nA:", TEXT]
    reqs = [Instance("generate_until", {}, (c, {"until": [], "max_gen_toks": 7}), 0) for c in contexts]
    outs = lm.generate_until(reqs)
    for ctx, out in zip(contexts, outs, strict=True):  # manual greedy loop, sliding window
        ids = tok.encode(ctx)
        gen: list[int] = []
        with torch.no_grad():
            for _ in range(7):
                logits, _ = model(torch.tensor([ids[-model.cfg.seq_len:]]))
                nxt = int(logits[0, -1].argmax())
                if nxt == tok.eot_id:
                    break
                ids.append(nxt)
                gen.append(nxt)
        assert out == tok.decode(gen)
        assert len(tok.encode(out)) <= 7
    stop = outs[0][2:3] if len(outs[0]) > 2 else outs[0][:1]
    (cut,) = lm.generate_until([Instance("generate_until", {}, (contexts[0], {"until": [stop]}), 0)])
    assert stop not in cut and outs[0].startswith(cut)


def test_from_cell_loads_the_saved_model(tmp_path) -> None:
    cell = build_cell(tmp_path / "cell")
    lm = MhcLM.from_cell(cell, batch_size=2, device="cpu")
    ref = tiny_model()
    for a, b in zip(lm.model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert lm.eot_token_id == ByteTokenizer.eot_id


def test_builtin_tasks_fail_fast_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cell = build_cell(tmp_path / "cell")
    with pytest.raises(TaskUnavailableError, match="gsm8k"):
        evaluate_cell(cell, ["mhcb_gsm", "gsm8k"], limit=1)
    assert not (cell / EVAL_FILE).exists()


def test_a_missing_task_source_fails_before_the_model_loads(tmp_path, monkeypatch) -> None:
    cell = build_cell(tmp_path / "cell")
    monkeypatch.setattr(MhcLM, "from_cell", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(TaskUnavailableError, match=r"eval\.source: bigbench"):
        evaluate_cell(cell, ["mhcb_gsm", "mhcb_bigbench"], limit=1)
    with pytest.raises(UserError, match="does not exist"):
        evaluate_cell(cell, ["mhcb_gsm"], limit=1, source=f"bigbench:{tmp_path / 'BIG-bench'}")
    assert not (cell / EVAL_FILE).exists()


@pytest.mark.slow
def test_tiny_cell_end_to_end(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cell = build_cell(tmp_path / "cell", tracking_uri=uri)
    record = evaluate_cell(cell, ["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"], limit=2, batch_size=8)
    saved = json.loads((cell / EVAL_FILE).read_text())
    assert saved == record.model_dump() and saved["complete"]
    assert saved["batch_size"] == 8 and saved["limit"] == 2
    assert len(saved["task_config_hash"]) == 64 and saved["lm_eval_version"]
    for name, row in saved["results"].items():
        if "exact_match" in "".join(row["metrics"]):  # generated answers have no chance level
            assert row["chance"] is None, name
        else:
            assert row["chance"] is not None and 0.0 <= row["chance"] <= 1.0, name
        for vals in row["metrics"].values():
            assert 0.0 <= vals["value"] <= 1.0, name
    groups = {"mhcb_bbh_gen", "mhcb_bbh_mc", "mhcb_gsm", "mhcb_mmlu_letter", "mhcb_mmlu_cloze"}
    assert groups <= set(saved["results"])

    from mlflow import MlflowClient

    run_id = json.loads((cell / "metrics.json").read_text())["mlflow_run_id"]
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    letter = saved["results"]["mhcb_mmlu_letter"]["metrics"]["acc"]["value"]
    assert run.data.metrics["eval/mhcb_mmlu_letter/acc"] == pytest.approx(letter)
    assert run.data.metrics["eval/mhcb_mmlu_letter/chance"] == pytest.approx(0.25)
    assert run.data.tags["eval_task_config_hash"] == saved["task_config_hash"]

    mtime = (cell / EVAL_FILE).stat().st_mtime_ns
    again = evaluate_cell(cell, ["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"], limit=2, batch_size=8)
    assert again.model_dump() == saved and (cell / EVAL_FILE).stat().st_mtime_ns == mtime  # not recomputed


def test_diverged_cell_is_recorded_not_scored(tmp_path) -> None:
    """A diverged cell can have finite weights (a gain-ceiling or spike stop): never score it."""
    cell = build_cell(tmp_path / "cell", status="diverged", stopped_step=40, stop_reason="non-finite loss")
    record = evaluate_cell(cell, ["mhcb_gsm"], limit=2, batch_size=4, log_mlflow=False)
    assert record.status == "skipped" and "diverged at step 40 (non-finite loss)" in record.reason
    assert record.results == {}
    assert json.loads((cell / EVAL_FILE).read_text()) == record.model_dump()


@pytest.mark.parametrize("state", ["missing", "empty", "unfinished"])
def test_eval_on_a_cell_that_is_not_finished_is_one_clear_line(tmp_path, capsys, state: str) -> None:
    from mhc_bench import cli

    cell = tmp_path / "cell"
    if state != "missing":
        cell.mkdir()
    if state == "unfinished":
        (cell / "checkpoints").mkdir()
        (cell / "checkpoints" / "last.ckpt").write_bytes(b"partial")
    assert cli.main(["eval", "--cell", str(cell), "--tasks", "mhcb_gsm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mhc-bench eval: error: ") and err.count("\n") == 1 and "Traceback" not in err
    expected = {"missing": "no cell folder", "empty": "was never trained",
                "unfinished": "is training or was interrupted"}[state]
    assert expected in err
