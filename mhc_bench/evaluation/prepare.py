"""Build the local task suite once: JSONL data plus finished lm-eval YAMLs, cached and hash-checked.

Why YAMLs are rendered rather than shipped finished: lm-eval reads local data
through ``dataset_kwargs.data_files``, an absolute path that lives in each
user's cache, so the shipped templates (``mhc_bench/evaluation/templates``)
are completed here and written next to the data. The output directory is
named by a hash of everything that shapes the data (generator version,
templates, item cap, the optional BIG-bench source), so every cell shares one
copy. The default suite (``mhcb_bbh``, ``mhcb_gsm``, ``mhcb_mmlu``) needs no
download; ``mhcb_bigbench`` is added only when a BIG-bench source is named.
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
from mhc_bench.taskgen import GENERATOR_VERSION, bbh, bigbench, generators, mmlu

DEFAULT_MAX_ITEMS = 250
GROUPS = ("mhcb_bbh", "mhcb_gsm", "mhcb_mmlu")
BIGBENCH_GROUP = "mhcb_bigbench"  # built only with a BIG-bench source (eval.source: bigbench:<path>)
TEMPLATES = ("bbh_gen", "bbh_mc", "gsm", "mmlu", "mmlu_cloze")
# A BBH-style answer is one short line. Generation stops after its longest answer's length in
# bytes (an upper bound on its tokens under any byte-level or character tokenizer) plus this
# margin (a leading newline or space): no correct answer is cut, and a model that rambles on
# past the stop strings pays for a few tokens, not a fixed 64, so a task with short answers
# costs little whatever the model does. Exact match trims whitespace, so scores are unchanged.
GEN_MARGIN_TOKENS = 4


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


def _params_hash(max_items: int, source: bigbench.BigBenchSource | None) -> str:
    parts = {"version": GENERATOR_VERSION, "max_items": max_items,
             "templates": {t: _template_text(t) for t in TEMPLATES}}
    if source is not None:
        parts["bigbench"] = source.identity()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(it, sort_keys=True, ensure_ascii=False) + "\n" for it in items)


def _bbh_specs(family: str, prefix: str, subtasks: dict[str, str], mc: set[str]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for sub, text in subtasks.items():
        desc = text + "\n\n"
        specs.append({"name": f"{prefix}_gen_{sub}", "family": family, "subtask": sub, "template": "bbh_gen",
                      "group": f"{prefix}_gen", "description": desc, "metrics": ["exact_match,none"]})
        if sub in mc:  # free-form answers have no options to score
            specs.append({"name": f"{prefix}_mc_{sub}", "family": family, "subtask": sub,
                          "template": "bbh_mc", "group": f"{prefix}_mc", "description": desc,
                          "metrics": ["acc,none"]})
    return specs


def _mmlu_specs(family: str, prefix: str, descriptions: dict[str, str]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for sub, desc in descriptions.items():
        specs.append({"name": f"{prefix}_{sub}", "family": family, "subtask": sub, "template": "mmlu",
                      "group": f"{prefix}_letter", "description": desc, "metrics": ["acc,none"]})
        specs.append({"name": f"{prefix}_cloze_{sub}", "family": family, "subtask": sub,
                      "template": "mmlu_cloze", "group": f"{prefix}_cloze", "description": desc,
                      "metrics": ["acc,none", "acc_norm,none"]})
    return specs


def _leaf_specs(tasks: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Every leaf task: name, family, subtask, template, description, reported metrics.

    ``tasks`` (BIG-bench's parsed task files, when a source is named) adds the ``mhcb_bigbench`` leaves.
    """
    specs = _bbh_specs("bbh", "mhcb_bbh", bbh.DESCRIPTIONS, {s for s in bbh.SUBTASKS if bbh.has_choices(s)})
    specs.append({"name": "mhcb_gsm_arith", "family": "gsm", "subtask": "gsm", "template": "gsm",
                  "group": "mhcb_gsm", "description": "",
                  "metrics": ["exact_match,strict-match", "exact_match,flexible-extract"]})
    specs += _mmlu_specs("mmlu", "mhcb_mmlu", {sub: mmlu.description(sub) for sub in mmlu.SUBTASKS})
    if tasks is not None:
        specs += _bbh_specs("bigbench_bbh", "mhcb_bigbench_bbh", bigbench.BBH_DESCRIPTIONS,
                            set(bigbench.BBH_TASKS))
        specs += _mmlu_specs("bigbench_mmlu", "mhcb_bigbench_mmlu",
                             {sub: bigbench.mmlu_description(tasks, sub) for sub in bigbench.MMLU_TASKS})
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
BIGBENCH_TREE: dict[str, tuple[str | None, list[str]]] = {
    BIGBENCH_GROUP: (None, []),
    "mhcb_bigbench_bbh_gen": (BIGBENCH_GROUP, ["exact_match"]),
    "mhcb_bigbench_bbh_mc": (BIGBENCH_GROUP, ["acc"]),
    "mhcb_bigbench_mmlu_letter": (BIGBENCH_GROUP, ["acc"]),
    "mhcb_bigbench_mmlu_cloze": (BIGBENCH_GROUP, ["acc", "acc_norm"]),
}


def _split(family: str, subtask: str, max_items: int,
           tasks: dict[str, dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(dev, test) of one subtask; BIG-bench pools are split as generator version 1 split them."""
    if family == "bigbench_bbh":
        assert tasks is not None
        return generators.pool_eval_split(bigbench.bbh_items(tasks, subtask), f"bbh/{subtask}/eval",
                                          generators.FEWSHOT["bbh"], max_items)
    if family == "bigbench_mmlu":
        assert tasks is not None
        return generators.pool_eval_split(bigbench.mmlu_items(tasks, subtask), f"mmlu/{subtask}/eval",
                                          generators.FEWSHOT["mmlu"], max_items)
    return generators.eval_split(family, subtask, max_items)


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


def parse_source(source: str | None) -> bigbench.BigBenchSource | None:
    """The named external task source, checked to exist (``UserError`` naming it otherwise)."""
    return None if source is None else bigbench.parse_source(source)


def prepare_tasks(
    max_items: int = DEFAULT_MAX_ITEMS, cache_dir: Path | None = None, source: str | None = None
) -> PreparedTasks:
    """Generate (once) the JSONL data and YAMLs of ``mhcb_bbh``, ``mhcb_gsm`` and ``mhcb_mmlu``.

    ``source`` (``bigbench:<path>``) adds ``mhcb_bigbench`` from BIG-bench's task files on this
    machine; a named source that is missing fails at once. Without one nothing is read but
    the installed packages. Idempotent: an existing build with matching file hashes is
    returned as is. ``config_hash`` covers the data and the task configs, not the cache path.
    """
    external = parse_source(source)
    base = cache_dir or data_cache_dir() / "tasks"
    root = base / f"v{GENERATOR_VERSION}-{_params_hash(max_items, external)}"
    existing = _load_manifest(root)
    if existing is not None:
        return existing
    tasks = bigbench.read_tasks(external) if external is not None else None
    files: dict[str, str] = {}
    leaves: dict[str, dict[str, Any]] = {}
    splits: dict[tuple[str, str], dict[str, str]] = {}
    answer_bytes: dict[tuple[str, str], int] = {}
    config_parts: dict[str, Any] = {}
    for spec in _leaf_specs(tasks):
        fam, sub = spec["family"], spec["subtask"]
        if (fam, sub) not in splits:
            dev, test = _split(fam, sub, max_items, tasks)
            rels = {}
            for split, items in (("dev", dev), ("test", test)):
                rel = f"data/{fam}/{sub}/{split}.jsonl"
                _write(root / rel, _jsonl(items))
                files[rel] = sha256_file(root / rel)
                rels[split] = rel
            splits[fam, sub] = rels
            answer_bytes[fam, sub] = max(len(f" {it.get('target', '')}".encode()) for it in dev + test)
        rels = splits[fam, sub]
        doc = yaml.safe_load(_template_text(spec["template"]))
        if spec["template"] == "bbh_gen":
            doc["generation_kwargs"]["max_gen_toks"] = answer_bytes[fam, sub] + GEN_MARGIN_TOKENS
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
    tree = {**GROUP_TREE, **(BIGBENCH_TREE if tasks is not None else {})}
    for name, (parent, metrics) in tree.items():
        children = [n for n, leaf in leaves.items() if leaf["group"] == name]
        children += [g for g, (p, _) in tree.items() if p == name]
        groups[name] = {"children": children, "metrics": metrics, "parent": parent}
        doc = _group_yaml(name, children, metrics)
        config_parts[name] = doc
        _write(root / f"yaml/_{name}.yaml", yaml.safe_dump(doc, sort_keys=False))
    config_hash = hashlib.sha256(json.dumps(config_parts, sort_keys=True).encode()).hexdigest()
    manifest = {"config_hash": config_hash, "max_items": max_items, "generator_version": GENERATOR_VERSION,
                "source": source, "files": files, "leaves": leaves, "groups": groups}
    _write(root / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return PreparedTasks(root, config_hash, leaves, groups)


def leaves_under(prepared: PreparedTasks, name: str) -> list[str]:
    """The leaf tasks a task or group name expands to."""
    if name in prepared.leaves:
        return [name]
    if name not in prepared.groups:
        raise KeyError(name)
    return [leaf for child in prepared.groups[name]["children"] for leaf in leaves_under(prepared, child)]
