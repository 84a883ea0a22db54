"""Build the local task suite once: JSONL data plus finished lm-eval YAMLs, cached and hash-checked.

Why YAMLs are rendered rather than shipped finished: lm-eval reads local data
through ``dataset_kwargs.data_files``, an absolute path that lives in each
user's cache, so the shipped templates (``mhc_bench/evaluation/templates``)
are completed here and written next to the data. The output directory is
named by a hash of everything that shapes the data (generator version,
templates, item cap, BIG-bench sdist), so every cell shares one copy.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mhc_bench.fetch import DataIntegrityError, sha256_file
from mhc_bench.paths import data_cache_dir
from mhc_bench.taskgen import GENERATOR_VERSION, bbh, bigbench_files, generators, mmlu

DEFAULT_MAX_ITEMS = 250
GROUPS = ("mhcb_bbh", "mhcb_gsm", "mhcb_mmlu")
TEMPLATES = ("bbh_gen", "bbh_mc", "gsm", "mmlu", "mmlu_cloze")


@dataclass
class PreparedTasks:
    """Where the rendered suite lives and what it contains (``manifest.json`` on disk)."""

    root: Path
    config_hash: str
    leaves: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def test_file(self, leaf: str) -> Path:
        return self.root / self.leaves[leaf]["test"]


def _template_text(name: str) -> str:
    return resources.files("mhc_bench.evaluation.templates").joinpath(f"{name}.yaml").read_text()


@functools.cache
def is_multiple_choice(form: str) -> bool:
    """Whether a template scores options by log-likelihood: only there does a chance level exist."""
    return yaml.safe_load(_template_text(form)).get("output_type") == "multiple_choice"


def _params_hash(max_items: int) -> str:
    parts = {"version": GENERATOR_VERSION, "max_items": max_items, "bigbench": bigbench_files.BIGBENCH_SHA256,
             "templates": {t: _template_text(t) for t in TEMPLATES}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(it, sort_keys=True, ensure_ascii=False) + "\n" for it in items)


def _leaf_specs() -> list[dict[str, Any]]:
    """Every leaf task: name, family, subtask, template, description, reported metrics."""
    specs: list[dict[str, Any]] = []
    for sub in bbh.SUBTASKS:
        desc = bbh.DESCRIPTIONS[sub] + "\n\n"
        specs.append({"name": f"mhcb_bbh_gen_{sub}", "family": "bbh", "subtask": sub, "template": "bbh_gen",
                      "group": "mhcb_bbh_gen", "description": desc, "metrics": ["exact_match,none"]})
        if sub != "multistep_arithmetic_two":  # free-form answer: no options to score
            specs.append({"name": f"mhcb_bbh_mc_{sub}", "family": "bbh", "subtask": sub, "template": "bbh_mc",
                          "group": "mhcb_bbh_mc", "description": desc, "metrics": ["acc,none"]})
    specs.append({"name": "mhcb_gsm_arith", "family": "gsm", "subtask": "gsm", "template": "gsm",
                  "group": "mhcb_gsm", "description": "",
                  "metrics": ["exact_match,strict-match", "exact_match,flexible-extract"]})
    for sub in mmlu.SUBTASKS:
        desc = mmlu.description(sub)
        specs.append({"name": f"mhcb_mmlu_{sub}", "family": "mmlu", "subtask": sub, "template": "mmlu",
                      "group": "mhcb_mmlu_letter", "description": desc, "metrics": ["acc,none"]})
        specs.append({"name": f"mhcb_mmlu_cloze_{sub}", "family": "mmlu", "subtask": sub,
                      "template": "mmlu_cloze", "group": "mhcb_mmlu_cloze", "description": desc,
                      "metrics": ["acc,none", "acc_norm,none"]})
    return specs


# group -> (parent group or None, metrics aggregated over its leaves)
GROUP_TREE: dict[str, tuple[str | None, list[str]]] = {
    "mhcb_bbh": (None, []),
    "mhcb_bbh_gen": ("mhcb_bbh", ["exact_match"]),
    "mhcb_bbh_mc": ("mhcb_bbh", ["acc"]),
    "mhcb_gsm": (None, ["exact_match"]),
    "mhcb_mmlu": (None, []),
    "mhcb_mmlu_letter": ("mhcb_mmlu", ["acc"]),
    "mhcb_mmlu_cloze": ("mhcb_mmlu", ["acc", "acc_norm"]),
}


def _group_yaml(name: str, children: list[str], metrics: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"group": name, "task": children}
    if metrics:
        doc["aggregate_metric_list"] = [{"metric": m, "aggregation": "mean", "weight_by_size": True}
                                        for m in metrics]
    doc["metadata"] = {"version": 1.0}
    return doc


def _load_manifest(root: Path) -> PreparedTasks | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    for rel, digest in m["files"].items():
        if not (root / rel).is_file() or sha256_file(root / rel) != digest:
            raise DataIntegrityError(f"{root / rel} does not match its recorded sha256; delete {root}")
    return PreparedTasks(root, m["config_hash"], m["leaves"], m["groups"])


def prepare_tasks(max_items: int = DEFAULT_MAX_ITEMS, cache_dir: Path | None = None) -> PreparedTasks:
    """Generate (once) the JSONL data and YAMLs of ``mhcb_bbh``, ``mhcb_gsm`` and ``mhcb_mmlu``.

    Idempotent: an existing build with matching file hashes is returned as is.
    ``config_hash`` covers the data and the task configs, not the cache path.
    """
    base = cache_dir or data_cache_dir() / "tasks"
    root = base / f"v{GENERATOR_VERSION}-{_params_hash(max_items)}"
    existing = _load_manifest(root)
    if existing is not None:
        return existing
    files: dict[str, str] = {}
    leaves: dict[str, dict[str, Any]] = {}
    splits: dict[tuple[str, str], dict[str, str]] = {}
    config_parts: dict[str, Any] = {}
    for spec in _leaf_specs():
        fam, sub = spec["family"], spec["subtask"]
        if (fam, sub) not in splits:
            dev, test = generators.eval_split(fam, sub, max_items)
            rels = {}
            for split, items in (("dev", dev), ("test", test)):
                rel = f"data/{fam}/{sub}/{split}.jsonl"
                _write(root / rel, _jsonl(items))
                files[rel] = sha256_file(root / rel)
                rels[split] = rel
            splits[fam, sub] = rels
        rels = splits[fam, sub]
        doc = yaml.safe_load(_template_text(spec["template"]))
        doc = {"task": spec["name"], "dataset_path": "json",
               "dataset_kwargs": {"data_files": {s: str(root / r) for s, r in rels.items()}},
               "description": spec["description"], **doc}
        portable = {**doc, "dataset_kwargs": {"data_files": {s: files[r] for s, r in rels.items()}}}
        config_parts[spec["name"]] = portable
        rel_yaml = f"yaml/{spec['name']}.yaml"
        _write(root / rel_yaml, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        leaves[spec["name"]] = {"family": fam, "subtask": sub, "group": spec["group"], "test": rels["test"],
                                "metrics": spec["metrics"], "form": spec["template"]}
    groups: dict[str, dict[str, Any]] = {}
    for name, (parent, metrics) in GROUP_TREE.items():
        children = [n for n, leaf in leaves.items() if leaf["group"] == name]
        children += [g for g, (p, _) in GROUP_TREE.items() if p == name]
        groups[name] = {"children": children, "metrics": metrics, "parent": parent}
        doc = _group_yaml(name, children, metrics)
        config_parts[name] = doc
        _write(root / f"yaml/_{name}.yaml", yaml.safe_dump(doc, sort_keys=False))
    config_hash = hashlib.sha256(json.dumps(config_parts, sort_keys=True).encode()).hexdigest()
    manifest = {"config_hash": config_hash, "max_items": max_items, "generator_version": GENERATOR_VERSION,
                "files": files, "leaves": leaves, "groups": groups}
    _write(root / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return PreparedTasks(root, config_hash, leaves, groups)


def leaves_under(prepared: PreparedTasks, name: str) -> list[str]:
    """The leaf tasks a task or group name expands to."""
    if name in prepared.leaves:
        return [name]
    if name not in prepared.groups:
        raise KeyError(name)
    return [leaf for child in prepared.groups[name]["children"] for leaf in leaves_under(prepared, child)]
