"""Downstream evaluation: BBH-, GSM8K- and MMLU-style tasks through lm-evaluation-harness.

- ``prepare.prepare_tasks``: build the cached local suite (BIG-bench extraction,
  generated JSONL, rendered lm-eval YAMLs), shared by every cell.
- ``adapter.MhcLM``: lm-eval model (registered as ``mhc-bench``) for a trained cell.
- ``runner.evaluate_cell``: run the suite on a cell, write ``eval.json``, log to MLflow.

The task items themselves come from :mod:`mhc_bench.taskgen` (shared with the data pipeline).

Heavy imports (torch, lm-eval, mlflow) stay in the submodules.
"""
