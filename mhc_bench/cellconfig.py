"""The cell config: one YAML file that fully describes one training run ("cell").

Every section forbids unknown keys and checks types and ranges, so a typo or an
impossible value fails before any data is prepared or any model is built, with
an error that names the key (``model.n_streams``, ``train.lr``, ...).

The ``model`` section mirrors :class:`mhc_bench.model.ModelConfig` field for
field (generated from the dataclass, so the two cannot drift); ``model.mixing``
validates against the knobs of the variant it names (:mod:`mhc_bench.variants`);
cross-field rules (``d_model % n_head``, ``n_streams == 1`` for the baseline) are
checked by building the real ``ModelConfig``. ``model.vocab_size`` left ``null`` is
taken from the prepared data.

A cell's identity (:func:`identity`, hashed into its id) holds only what changes the
experiment, and of that only what differs from its default, so adding a knob keeps
every existing id; execution settings (:data:`EXECUTION_MODEL`, :data:`EXECUTION_TRAIN`)
are outside it (every kernel path computes the same numbers; ``metrics.json`` records
which ran).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic_core import PydanticCustomError

from mhc_bench import variants
from mhc_bench.data import DataConfig
from mhc_bench.errors import UserError
from mhc_bench.model import ModelConfig

_STRICT = ConfigDict(extra="forbid")
# Range checks on ModelConfig fields that pydantic can report at the field's own key.
_MODEL_BOUNDS: dict[str, dict[str, Any]] = {
    "n_layer": {"ge": 1}, "d_model": {"ge": 1}, "n_head": {"ge": 1}, "seq_len": {"ge": 1},
    "n_streams": {"ge": 1}, "dropout": {"ge": 0.0, "lt": 1.0}, "recompute": {"ge": -1},
}
# Settings that decide how a cell runs, not what it computes: outside its identity (and id).
# ``train.devices`` stays inside: with DDP it multiplies the global batch.
EXECUTION_MODEL = ("kernels", "recompute")
EXECUTION_TRAIN = ("ckpt_every", "num_threads", "accelerator", "strategy")


class ConfigError(UserError, ValueError):
    """A cell config that cannot be used; the message names every offending key."""


def _model_section_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(ModelConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        annotation: Any = f.type
        if f.name == "vocab_size":
            annotation, default = int | None, None
        elif f.name == "mixing":
            annotation = variants.mixing_type()
            fields[f.name] = (annotation, Field(default_factory=lambda d=default: variants.parse_mixing(d)))
            continue
        fields[f.name] = (annotation, Field(default=default, **_MODEL_BOUNDS.get(f.name, {})))
    return fields


class _ModelBase(BaseModel):
    model_config = _STRICT

    @model_validator(mode="after")
    def _check_with_model_config(self) -> Any:
        try:
            self.to_model_config(vocab_size=self.vocab_size or 1)
        except ValueError as err:
            msg = str(err)
            field = next((name for name in type(self).model_fields if msg.startswith(name)), "")
            raise PydanticCustomError("model_config", "{field}: {msg}", {"field": field, "msg": msg}) from err
        return self

    @property
    def variant(self) -> str:
        """The variant's name (``mixing.kind``)."""
        return self.mixing.kind  # type: ignore[attr-defined]

    @property
    def maps(self) -> tuple[str, ...]:
        """The learned maps (empty for a variant without maps)."""
        return tuple(getattr(self.mixing, "maps", ()))  # type: ignore[attr-defined]

    def to_model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The validated ``ModelConfig``; ``vocab_size`` fills a ``null`` vocab size."""
        values = dict(self)
        values["vocab_size"] = values["vocab_size"] or vocab_size
        if values["vocab_size"] is None:
            raise ValueError("vocab_size is null: pass the prepared data's vocab size")
        return ModelConfig(**values)


ModelSection = create_model("ModelSection", __base__=_ModelBase, **_model_section_fields())
ModelSection.__doc__ = "The ``model`` section: the fields of ``ModelConfig`` (vocab_size may be null)."


class TrainSection(BaseModel):
    """Optimisation, schedule, probes, checkpoints, stability detectors and placement."""

    model_config = _STRICT

    steps: int = Field(default=500, ge=1)
    batch_size: int = Field(default=16, ge=1)  # sequences per device per step
    lr: float = Field(default=1e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)  # cosine floor, as a fraction of lr
    warmup_steps: int = Field(default=50, ge=0)
    schedule: Literal["cosine", "step"] = "cosine"
    # "step": the paper's schedule, lr x step_factor at each milestone (fractions of training).
    step_milestones: tuple[float, ...] = (0.8, 0.9)
    step_factor: float = Field(default=0.316, gt=0, le=1)
    weight_decay: float = Field(default=0.1, ge=0)
    # Decay the dynamic map projections (mHC phi, HC w) like every other matrix: they are
    # ordinary projections, and decay pulls the maps towards their static (identity-like)
    # values. Static map biases (b_*, s_*) and gates (alpha, scale) are never decayed.
    decay_map_projections: bool = True
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, ge=0)  # 0 disables clipping
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "32-true"
    seed: int = Field(default=0, ge=0)
    # A numerical replicate of the same cell: 1 trains it on the reference kernels (torch ops: other
    # summation orders than the fast path), so that verdicts count the noise a different machine,
    # thread count or kernel path would add (a seed of the *numerics*; grouped with its seed's cell).
    rerun: int = Field(default=0, ge=0, le=1)
    probe_every: int = Field(default=50, ge=1)
    val_every: int = Field(default=100, ge=1)
    val_batches: int = Field(default=8, ge=1)
    ckpt_every: int = Field(default=100, ge=1)
    spike_factor: float = Field(default=2.0, gt=1)  # loss > k x running median = spike
    spike_window: int = Field(default=50, ge=2)  # losses in the running median
    # Divergence is a training failure: a non-finite loss or grad norm, or a loss above this factor x
    # ln(vocab size), the loss of a uniform guess (a model that far past guessing has blown up).
    divergence_loss_factor: float = Field(default=2.0, gt=1)
    # Optional compute saver: stop a cell whose composite Amax gain exceeds this. A gain is a probe,
    # not a training failure: such a cell is "stopped" (its own status), never "diverged". Off by default.
    gain_ceiling: float | None = Field(default=None, gt=0)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(default=1, ge=1)
    # "ddp" re-executes the command line for the other ranks (Lightning's script launcher):
    # use it through ``mhc-bench train``; spawn-based strategies would lose the monitor's state.
    strategy: Literal["auto", "ddp"] = "auto"
    num_threads: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> TrainSection:
        if any(not 0 < m < 1 for m in self.step_milestones) or list(self.step_milestones) != sorted(
            self.step_milestones
        ):
            raise PydanticCustomError("train_config", "{field}: must be increasing fractions in (0, 1)",
                                      {"field": "step_milestones"})
        if not all(0 <= b < 1 for b in self.betas):
            raise PydanticCustomError("train_config", "{field}: must be in [0, 1)", {"field": "betas"})
        return self


class TrackingSection(BaseModel):
    """Where MLflow writes; not part of the config hash (moving the store changes no result)."""

    model_config = _STRICT

    # None: $MLFLOW_TRACKING_URI, else sqlite:///<results folder>/mlflow.db next to the cells
    # (the one rule is mhc_bench.tracking.resolve_uri).
    tracking_uri: str | None = None
    experiment: str = "mhc-bench"


class ResolvedSection(BaseModel):
    """Filled in by training (in the written ``config.yaml``): what ``null``/defaults became."""

    model_config = _STRICT

    cell_id: str
    config_hash: str
    vocab_from_data: bool
    data_fingerprint: str  # names the prepared data in the user cache (<cache>/prepared/<fingerprint>)


class CellConfig(BaseModel):
    """One cell: model x data x training recipe (+ where to track it)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str | None = None
    profile: str | None = None
    experiments: list[str] = []  # the profile's experiments this cell serves (labels, not hashed)
    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[valid-type]
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    resolved: ResolvedSection | None = None


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, each starting with the dotted key (``model.n_streams: ...``)."""
    lines = []
    for item in err.errors():
        loc = [str(part) for part in item["loc"]]
        # A variant's knobs are checked in a union tagged by its name: the tag is not a key.
        loc = [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "mixing" and p in variants.names())]
        field = (item.get("ctx") or {}).get("field")
        if field:
            loc.append(field)
            msg = (item.get("ctx") or {}).get("msg") or item["msg"].split(": ", 1)[-1]
        else:
            msg = item["msg"]
            given = item.get("input")
            if item["type"] != "missing" and isinstance(given, str | int | float | bool):
                msg += f" (got {given!r})"
        lines.append(f"{'.'.join(loc) or '<root>'}: {msg}")
    return "\n".join(lines)


def parse_cell_config(data: dict[str, Any]) -> CellConfig:
    """Validate a dict; raises :class:`ConfigError` naming the keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"<root>: a cell config must be a mapping, got {type(data).__name__}")
    try:
        return CellConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_cell_config(path: str | Path) -> CellConfig:
    """Read and validate a YAML cell config (an empty file is an error, not "all defaults")."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read cell config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        raise ConfigError(f"{path} is empty: a cell config needs at least a 'model:' section "
                          "(see workflows/README.md, 'Cell config')")
    try:
        return parse_cell_config(data)
    except ConfigError as err:
        raise ConfigError(f"invalid cell config {path}: {err}") from None


def _non_default(section: BaseModel, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    values = section.model_dump(mode="json", exclude={"mixing", *exclude})
    defaults = type(section)().model_dump(mode="json", exclude={"mixing", *exclude})
    return {k: v for k, v in values.items() if v != defaults[k]}


def identity(cfg: CellConfig) -> dict[str, Any]:
    """What the cell computes: settings that differ from their defaults, minus execution settings.

    Labels (name, profile, experiments), tracking and resolved values are not part of it; the
    data enters by its fingerprint, not its spelling (a corpus path written two ways is one
    dataset). A vocabulary taken from the data counts as the input said it: "from data".
    """
    model = _non_default(cfg.model, EXECUTION_MODEL)
    if cfg.resolved is not None and cfg.resolved.vocab_from_data:
        model.pop("vocab_size", None)
    mixing = cfg.model.mixing
    model["mixing"] = {"kind": mixing.kind, **mixing.non_default()}
    return {"model": model, "train": _non_default(cfg.train, EXECUTION_TRAIN), "data": cfg.data.fingerprint()}


def setting(cfg: CellConfig) -> dict[str, Any]:
    """The cell's identity without its seed and rerun: what the cells of one group (seeds, numerical
    replicates) share."""
    ident = identity(cfg)
    ident["train"].pop("seed", None)
    ident["train"].pop("rerun", None)
    return ident


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_hash(cfg: CellConfig) -> str:
    """sha256 of :func:`identity`, 16 hex digits. Computable without preparing data, so a
    workflow can list cell ids cheaply."""
    return _digest(identity(cfg))


def setting_hash(cfg: CellConfig) -> str:
    """sha256 of :func:`setting`, 16 hex digits: equal for the seeds of one setting."""
    return _digest(setting(cfg))


def cell_id(cfg: CellConfig) -> str:
    """Readable id plus a short hash, e.g. ``mhc-n4-d128-b6-lr3e-03-s0-1a2b3c``.

    ``b`` counts transformer blocks (the paper's L counts residual layers, two per block).
    The variant adds its knobs that differ from their defaults (:meth:`Variant.id_parts`):
    an ablation names its map set (``mhc-n4-d128-b6-res+pre-...``, ``nomaps`` when none is
    learned), a Sinkhorn sweep its iterations (``it5``); cells trained without gradient
    clipping say ``noclip``, on mixed-in task text ``mix0.2``.
    """
    m, t = cfg.model, cfg.train
    parts = [m.mixing.kind, f"n{m.n_streams}", f"d{m.d_model}", f"b{m.n_layer}"]
    parts += variants.get(m.mixing.kind).id_parts(m.mixing)
    parts.append(f"lr{t.lr:.0e}")
    if t.grad_clip == 0:
        parts.append("noclip")
    if cfg.data.mix_weight > 0:
        parts.append(f"mix{cfg.data.mix_weight:g}")
    parts.append(f"s{t.seed}")
    if t.rerun:
        parts.append(f"r{t.rerun}")
    parts.append(config_hash(cfg)[:6])
    return "-".join(parts)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists kept as values), for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
