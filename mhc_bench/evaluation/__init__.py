"""Downstream evaluation: BBH-, GSM8K- and MMLU-style tasks through lm-evaluation-harness.

- ``prepare.prepare_tasks``: build the cached local suite (generated JSONL, rendered
  lm-eval YAMLs; BIG-bench's task files only from a named local source), shared by every cell.
- ``sources``: checks that every external source a run names (BIG-bench files, the hub)
  exists, before anything is built; unnamed sources are never touched.
- ``adapter.MhcLM``: lm-eval model (registered as ``mhc-bench``) for a trained cell.
- ``runner.evaluate_cell``: run the suite on a cell, write ``eval.json``, log to MLflow.

The task items themselves come from :mod:`mhc_bench.taskgen` (shared with the data pipeline).

Heavy imports (torch, lm-eval, mlflow) stay in the submodules.
"""
