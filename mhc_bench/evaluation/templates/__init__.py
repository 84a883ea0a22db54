"""lm-eval task templates, completed per subtask by ``mhc_bench.evaluation.prepare``.

They hold everything but the data location: lm-eval reads local data through
``dataset_kwargs.data_files``, which must be an absolute path into the user
cache, so ``prepare`` writes the finished YAMLs next to the JSONL it generates.
"""
