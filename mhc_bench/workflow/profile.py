"""A reproduction profile as one typed model: the grid of cells and the settings they share.

``Profile`` is the single definition of a profile file (``workflows/config/<name>.yaml``):
``mhc-bench cells``, ``mhc-bench cell`` and the Snakemake DAG all validate through it, so
they expand a profile identically. Its JSON Schema is exported to
``workflows/schemas/profile.schema.json`` for Snakemake's ``validate`` (a test keeps the
two in step). The ``model`` and ``train`` sections are the cell config's sections minus
what the grid decides; ``data`` is the cell config's ``DataConfig``. Errors name the key,
formatted like a cell config's.

A grid block is the product of its lists; the union of blocks (minus ``exclude``) is the
grid. Each block names the ``experiment`` it serves (``main``, ``depth``, ``frontier``,
``n_sweep``, ``ablation``, ``downstream``...); a cell that several blocks produce belongs
to all of their experiments, and the report judges each claim on its experiment's cells.
Map sets are written by content (``res+pre+post``, ``res+pre``, ``res``, ``none``).

Variants come from the registry (:mod:`mhc_bench.variants`), plug-ins included. A
profile's top-level ``mixing`` sets knobs per variant for every cell
(``mixing: {mhc: {init: near_identity}}``); a grid block's ``mixing`` makes knobs axes
(``mixing: {sinkhorn_iters: [1, 5, 20]}``), applied to the block's variants that have
the knob (the others fold onto one cell, as the baseline folds onto n = 1).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from mhc_bench import variants
from mhc_bench.cellconfig import ModelSection, TrainSection, format_validation_error
from mhc_bench.data import DataConfig
from mhc_bench.paths import PROJECT_ROOT

SCHEMA_FILE = PROJECT_ROOT / "workflows" / "schemas" / "profile.schema.json"
MAP_NAMES = ("res", "pre", "post")
ALL_MAPS = "res+pre+post"
# Decided per cell by the grid, so a profile's shared sections must not set them.
GRID_MODEL_FIELDS = ("mixing", "n_streams", "d_model", "n_layer", "n_head")
GRID_TRAIN_FIELDS = ("lr", "seed", "rerun")

_STRICT = ConfigDict(extra="forbid")


def _section(base: type[BaseModel], name: str, exclude: tuple[str, ...]) -> type[BaseModel]:
    """``base`` without the grid's fields (same types, bounds and defaults)."""
    fields = {k: (f.annotation, f) for k, f in base.model_fields.items() if k not in exclude}
    return create_model(name, __config__=_STRICT, **fields)  # type: ignore[call-overload]


ProfileModel = _section(ModelSection, "ProfileModel", GRID_MODEL_FIELDS)
ProfileTrain = _section(TrainSection, "ProfileTrain", GRID_TRAIN_FIELDS)


def maps_of(label: str) -> list[str]:
    """``"res+pre"`` -> ``["res", "pre"]``; ``"none"`` -> ``[]``."""
    return [] if label == "none" else label.split("+")


def has_knob(variant: str, knob: str) -> bool:
    return knob in variants.knobs_model(variant).model_fields and knob != "kind"


def check_knobs(variant: str, knobs: dict[str, Any], where: str) -> None:
    """``knobs`` are valid settings of ``variant`` (``ValueError`` naming ``where.<knob>`` otherwise)."""
    try:
        variants.parse_mixing({**knobs, "kind": variant})
    except ValueError as err:
        raise ValueError(f"{where}.{str(err).removeprefix('mixing.')}") from None


def _registered(names: list[str]) -> list[str]:
    unknown = [v for v in names if v not in variants.names()]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; registered: {list(variants.names())}")
    return names


class GridBlock(BaseModel):
    model_config = _STRICT

    experiment: str = Field(default="main", pattern=r"^[a-z][a-z0-9_]*$")
    variant: list[str] = Field(min_length=1)
    n: list[int] = Field(min_length=1)
    scale: list[str] = Field(min_length=1)
    seed: list[int] = Field(min_length=1)
    maps: list[str] = Field(default=[ALL_MAPS], min_length=1)
    lr: list[str] = Field(default=["base"], min_length=1)
    data: list[str] = Field(default=["base"], min_length=1)
    # Numerical replicates: 1 = each cell again on the reference kernels (train.rerun), which the
    # report pools with seed noise so that loss verdicts count the machine's numerical noise too.
    rerun: list[int] = Field(default=[0], min_length=1)
    # Knob axes: knob -> values, applied to the block's variants that have the knob.
    mixing: dict[str, list[Any]] = {}
    # False: the block's cells are trained and probed but not run through lm-eval (saves the
    # evaluation time of experiments whose claims rest on losses and gains only).
    evaluate: bool = True

    @field_validator("variant")
    @classmethod
    def _variants(cls, values: list[str]) -> list[str]:
        return _registered(values)

    @model_validator(mode="after")
    def _knob_axes(self) -> GridBlock:
        for knob, values in self.mixing.items():
            if knob in ("kind", "maps"):
                raise ValueError(f"mixing.{knob}: not a knob axis (use the block's `variant` / `maps`)")
            owners = [v for v in self.variant if has_knob(v, knob)]
            if not owners:
                raise ValueError(f"mixing.{knob}: no variant of this block ({self.variant}) has that knob")
            if not values:
                raise ValueError(f"mixing.{knob}: needs at least one value")
            for v in owners:
                for value in values:
                    check_knobs(v, {knob: value}, "mixing")
        return self

    @field_validator("n")
    @classmethod
    def _n_range(cls, values: list[int]) -> list[int]:
        if any(not 1 <= v <= 16 for v in values):
            raise ValueError(f"every n must be in [1, 16], got {values}")
        return values

    @field_validator("seed")
    @classmethod
    def _seeds(cls, values: list[int]) -> list[int]:
        if any(v < 0 for v in values):
            raise ValueError(f"seeds must be >= 0, got {values}")
        return values

    @field_validator("rerun")
    @classmethod
    def _reruns(cls, values: list[int]) -> list[int]:
        if any(v not in (0, 1) for v in values):
            raise ValueError(f"rerun values are 0 (the cell) or 1 (its numerical replicate), got {values}")
        return values

    @field_validator("maps")
    @classmethod
    def _map_labels(cls, values: list[str]) -> list[str]:
        for label in values:
            parts = maps_of(label)
            if any(p not in MAP_NAMES for p in parts) or parts != [m for m in MAP_NAMES if m in parts]:
                raise ValueError(f"{label!r} is not a map set: write the learned maps in the order "
                                 f"res+pre+post, e.g. 'res+pre', 'res', or 'none'")
        return values


class Exclude(BaseModel):
    model_config = _STRICT

    experiment: str | None = None
    variant: str | None = None
    n: int | None = None
    scale: str | None = None
    seed: int | None = None
    maps: str | None = None
    lr: str | None = None
    data: str | None = None
    rerun: int | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        given = self.model_dump(exclude_none=True)
        return bool(given) and all(row.get(k) == v for k, v in given.items())


class Scale(BaseModel):
    """A model size: width, blocks (2 residual layers each), heads; optional batch and steps."""

    model_config = _STRICT

    d_model: int = Field(ge=1)
    n_layer: int = Field(ge=1)
    n_head: int = Field(ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=1)


class LrEntry(BaseModel):
    """A learning rate with other train overrides (e.g. ``grad_clip: 0`` for a stress column)."""

    model_config = ConfigDict(extra="allow")

    lr: float = Field(gt=0)


class EvalSection(BaseModel):
    model_config = _STRICT

    enabled: bool = True
    tasks: list[str] = ["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"]
    limit: int | None = Field(default=200, ge=1)
    batch_size: int = Field(default=16, ge=1)
    max_items: int = Field(default=250, ge=10)  # items kept per task when the suite is built
    # External task files, never required and never downloaded: `bigbench:<path>` (a BIG-bench
    # checkout, its benchmark_tasks folder or the bigbench sdist on this machine) adds the
    # mhcb_bigbench group; a named path that is missing fails the prepare_tasks rule at once.
    source: str | None = Field(default=None, pattern=r"^bigbench:\S.*$")

    @model_validator(mode="after")
    def _bigbench_needs_a_source(self) -> EvalSection:
        wanting = [t for t in self.tasks if t.startswith("mhcb_bigbench")]
        if wanting and self.source is None:
            raise ValueError(f"tasks {wanting} are built from BIG-bench's task files: name them with "
                             "source: bigbench:<path to a checkout or the bigbench sdist>")
        return self


class BenchSection(BaseModel):
    model_config = _STRICT

    enabled: bool = True
    args: list[str] = ["--quick"]


class Resources(BaseModel):
    """What each rule's jobs ask an executor for (threads are also the CPUs a cluster job gets);
    runtimes are wall-time limits in minutes, used by cluster executors only."""

    model_config = _STRICT

    train_threads: int = Field(default=1, ge=1)
    train_mem_mb: int = Field(default=4000, ge=1)
    train_runtime_min: int = Field(default=240, ge=1)
    eval_threads: int = Field(default=1, ge=1)
    eval_mem_mb: int = Field(default=4000, ge=1)
    eval_runtime_min: int = Field(default=60, ge=1)
    bench_threads: int = Field(default=128, ge=1)  # capped at --cores locally: the bench runs alone
    bench_runtime_min: int = Field(default=60, ge=1)
    prepare_runtime_min: int = Field(default=60, ge=1)  # data, tokenizer and task preparation
    gpu: int = Field(default=0, ge=0)
    # e.g. a100 (SLURM: --gpus=a100:1); the pattern is the SLURM executor's
    gpu_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.]+$")


class PowerPlan(BaseModel):
    """A power profile's plan: the loss gap it exists to settle, printed (seeds, MDE) before it runs."""

    model_config = _STRICT

    variant: str = "mhc"
    scale: str
    paper_effect: float
    prior_results: str | None = None  # a results folder whose pooled noise at `scale` is the prior
    prior_sd: float = Field(gt=0)  # the prior when that folder has no paired gaps at `scale`


class Profile(BaseModel):
    """One profile file. Every key is documented in workflows/README.md."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    profile: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    description: str = ""
    results_dir: str = "results"
    report_dir: str = "report"
    report_only: bool = False  # set by `make report`: tables from existing results, nothing trained
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else <results>/<profile>/mlflow.db
    grid: list[GridBlock] = Field(min_length=1)
    exclude: list[Exclude] = []
    scales: dict[str, Scale] = Field(min_length=1)
    lrs: dict[str, float | LrEntry] = {"base": 0.003}
    data_variants: dict[str, dict[str, Any]] = {"base": {}}  # overrides of `data` per grid value
    model: ProfileModel = Field(default_factory=ProfileModel)  # type: ignore[valid-type]
    # Knobs per variant for every cell of that variant: {variant: {knob: value}}.
    mixing: dict[str, dict[str, Any]] = {}
    data: DataConfig = Field(default_factory=DataConfig)
    train: ProfileTrain = Field(default_factory=ProfileTrain)  # type: ignore[valid-type]
    eval: EvalSection = Field(default_factory=EvalSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    resources: Resources = Field(default_factory=Resources)
    power: PowerPlan | None = None

    @field_validator("mixing")
    @classmethod
    def _profile_knobs(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        _registered(list(value))
        for variant, knobs in value.items():
            if "kind" in knobs:
                raise ValueError(f"{variant}.kind: the key above names the variant")
            check_knobs(variant, knobs, variant)
        return value

    def check_names(self) -> None:
        """Every scale, lr and data variant a grid block names is defined."""
        tables = {"scale": self.scales, "lr": self.lrs, "data": self.data_variants}
        for number, block in enumerate(self.grid):
            for column, table in tables.items():
                for value in getattr(block, column):
                    if value not in table:
                        raise ValueError(f"grid[{number}].{column}: {value!r} is not defined "
                                         f"(known: {sorted(table)})")
        for name, overrides in self.data_variants.items():
            try:
                DataConfig.model_validate({**self.data.model_dump(), **overrides})
            except ValidationError as err:
                raise ValueError(f"data_variants.{name}: {format_validation_error(err)}") from None


def parse_profile(raw: Any, where: str = "profile") -> Profile:
    """Validate a loaded profile document; raises ``ValueError`` whose message names the keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a profile must be a mapping, got {type(raw).__name__}")
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"{where} is invalid:\n{format_validation_error(err)}") from None
    try:
        profile.check_names()
    except ValueError as err:
        raise ValueError(f"{where} is invalid:\n{err}") from None
    return profile


def json_schema() -> dict[str, Any]:
    """The JSON Schema Snakemake's ``validate`` checks a profile against, generated from the model and
    the variant registry: grid variants are registered names and ``mixing.<variant>`` follows that
    variant's knobs. The committed copy (built-in variants) documents it; the workflow validates
    against a copy generated at parse time, so plug-in variants validate too."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Profile.model_json_schema()}
    per_variant: dict[str, Any] = {}
    for name in variants.names():
        knobs = variants.knobs_model(name).model_json_schema()
        knobs["properties"].pop("kind", None)
        knobs.pop("required", None)
        schema["$defs"].update(knobs.pop("$defs", {}))
        per_variant[name] = knobs
    schema["properties"]["mixing"].update(properties=per_variant, additionalProperties=False)
    schema["$defs"]["GridBlock"]["properties"]["variant"]["items"] = {"enum": list(variants.names())}
    # Snakemake's validate() fills defaults by calling setdefault on every instance a "properties"
    # schema meets, a null one included: a nullable section must carry no defaults of its own (the
    # Profile model fills them).
    for prop in schema["$defs"]["PowerPlan"]["properties"].values():
        prop.pop("default", None)
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m mhc_bench.workflow.profile: regenerate the committed schema
    SCHEMA_FILE.write_text(schema_text())
    print(f"wrote {SCHEMA_FILE.relative_to(PROJECT_ROOT)}")
