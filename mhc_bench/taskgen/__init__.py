"""BBH-, GSM8K- and MMLU-style task items, built from nothing that can vanish.

Every default item is generated here from a seed or read from a package the venv
installs (``periodictable``, ``pycountry``); no download is involved. BIG-bench's own
task files are an optional extra (:mod:`mhc_bench.taskgen.bigbench`) that a profile
names explicitly.

Shared by :mod:`mhc_bench.evaluation` (which renders the evaluated suite) and
:mod:`mhc_bench.data` (which can mix training-side items into pretraining text),
so neither of those packages imports the other. Nothing here imports torch,
lm-eval or the data pipeline.

``GENERATOR_VERSION`` names the generators' output: the evaluation suite's cache
folder and the fingerprint of mixed training data both carry it, so bump it
whenever any generator's items change (``tests/test_taskgen.py`` records a digest
of sample items per version and fails until the new digest is recorded).
"""

from __future__ import annotations

GENERATOR_VERSION = 2
