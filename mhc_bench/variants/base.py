"""The interface every residual-mixing variant implements (one module per method).

A variant is what fills ``x_next = H_res x + H_post^T F(H_pre x)`` of one residual layer
(:class:`mhc_bench.model.ResidualLayer`): it builds the module that computes the maps
``(H_pre [..., n], H_post [..., n], H_res [..., n, n])`` from the stream ``x [..., n, C]``
in fp32, and says everything the rest of the suite needs to know about it without naming
it anywhere else:

- its config section, ``model.mixing: {kind: <name>, <knob>: value, ...}``: a pydantic
  model (:class:`Knobs`) whose defaults are the variant's defaults; every knob can be a
  grid axis of a profile;
- the readable part of a cell id it contributes (:meth:`Variant.id_parts`: only knobs that
  differ from their defaults, so adding a knob keeps every existing id);
- which of its parameters must never be weight-decayed (static maps and gates: decaying
  ``b_res`` would pull H_res towards 0, not towards its start) and which are its dynamic
  projections (decayed or not by ``train.decay_map_projections``);
- its extra FLOPs per token for the benchmark's roofline (:meth:`Variant.extra_flops`);
- its report label, marker and colour;
- which implementations of its maps exist (``torch`` reference, ``fast`` CPU path,
  ``triton``); :func:`mhc_bench.dispatch.pick` is the one place that chooses among them.

The stream ops themselves (``H_pre x`` and ``H_res x + H_post^T y``) are shared by every
n-stream variant (:mod:`mhc_bench.dispatch`). Variants from other packages register the
same way as the built-in ones (:mod:`mhc_bench.variants`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import torch.nn as nn

    from mhc_bench.model import ModelConfig

MAP_ORDER = ("res", "pre", "post")  # how map sets are written (labels, configs)
MapName = Literal["res", "pre", "post"]


class Knobs(BaseModel):
    """A variant's config section (``model.mixing``); subclasses add fields with defaults.

    ``kind`` names the variant; it is added to each variant's model by the registry so
    that a section validates against exactly one variant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What a cell's identity measures a knob against where that is not its current default: when a
    # default changes, the old value goes here, so cells trained under it keep their ids and cells
    # under the new default get new ones (a default change changes the experiment of every config
    # that does not name the knob).
    identity_base: ClassVar[dict[str, Any]] = {}

    kind: str

    def non_default(self) -> dict[str, Any]:
        """Knobs that differ from their identity base (the default, or ``identity_base``), as JSON
        values: what a cell's identity hashes and its id names."""
        return self._differing({**self._defaults(), **self.identity_base})

    def changed(self) -> dict[str, Any]:
        """Knobs that differ from their current defaults (what a report label shows)."""
        return self._differing(self._defaults())

    def _defaults(self) -> dict[str, Any]:
        return type(self).model_construct().model_dump(mode="json")

    def _differing(self, base: dict[str, Any]) -> dict[str, Any]:
        values = self.model_dump(mode="json")
        return {k: v for k, v in values.items() if k != "kind" and v != base.get(k)}


class MapKnobs(Knobs):
    """Knobs of every variant with learned dynamic + static maps (HC and the constrained ones)."""

    # Which maps are learned; the others take the fixed values of the caption of the mHC paper's
    # Table 1 (H_pre = 1/n, H_post = 1, H_res = I): the ablation of Table 1.
    maps: tuple[MapName, ...] = MAP_ORDER
    # Initial value of the scalar gates of the dynamic maps (mHC alpha, HC s).
    alpha_init: float = 0.01
    # Epsilon of the RMSNorm over the stream that feeds the maps; the paper's Table 5 value
    # 1e-20 is numerically inert next to the squared activations (a pure rescaling).
    map_norm_eps: float = Field(default=1e-20, gt=0)

    @field_validator("maps", mode="before")
    @classmethod
    def _map_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of map names, got the string {value!r}")
        return value

    @field_validator("maps")
    @classmethod
    def _canonical_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeats a map: {list(value)}")
        return tuple(m for m in MAP_ORDER if m in value)


def maps_label(maps: Any) -> str:
    """``[]`` -> ``none``, ``["post", "res"]`` -> ``res+post``: a map set named by its content."""
    items = [str(m) for m in maps]
    known = [m for m in MAP_ORDER if m in items]
    return "+".join(known + sorted(set(items) - set(MAP_ORDER))) or "none"


class Variant:
    """One residual-mixing method. Subclass it, set the class attributes, implement the methods."""

    name: ClassVar[str]  # the ``kind`` in configs and the ``variant`` column of the report
    label: ClassVar[str]  # how plots and tables name it
    summary: ClassVar[str]  # one line for ``mhc-bench variants``
    marker: ClassVar[str] = "o"
    color: ClassVar[str | None] = None  # None: the report picks a stable colour from the name
    knobs: ClassVar[type[Knobs]] = Knobs
    # The reference every loss gap is measured against (the plain residual network); one variant.
    is_reference: ClassVar[bool] = False
    single_stream: ClassVar[bool] = False  # needs n_streams == 1
    # Parameter names (last component) that are never weight-decayed: static maps, gates.
    no_decay: ClassVar[tuple[str, ...]] = ()
    # Dynamic projections: decayed when train.decay_map_projections (default), like any matrix.
    projections: ClassVar[tuple[str, ...]] = ()
    # Implementations of the maps: path -> one line of what runs (see mhc_bench.dispatch).
    implementations: ClassVar[Mapping[str, str]] = {"torch": "reference torch ops"}
    # Short prefixes of knobs in cell ids (``{"sinkhorn_iters": "it"}`` -> ``it5``).
    id_names: ClassVar[Mapping[str, str]] = {}

    def check(self, knobs: Knobs, n_streams: int) -> None:
        """Raise ``ValueError`` (starting with the field's name) for an impossible combination."""
        if self.single_stream and n_streams != 1:
            raise ValueError(f"n_streams must be 1 for the {self.name} variant, got {n_streams}")

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module | None:
        """The maps module of residual layer ``layer_index``, or None (a plain ``x + F(x)``)."""
        raise NotImplementedError

    def id_parts(self, knobs: Knobs) -> list[str]:
        """Readable parts of a cell id for knobs that differ from their defaults: the map set
        first (``res+pre``, ``nomaps``), then ``<id_names prefix or knob name><value>``."""
        changed = knobs.non_default()
        parts = []
        if "maps" in changed:
            parts.append(maps_label(changed.pop("maps")).replace("none", "nomaps"))
        return parts + [f"{self.id_names.get(k, k)}{_short(v)}" for k, v in sorted(changed.items())]

    def maps_label(self, knobs: Knobs) -> str:
        """The learned map set, or ``-`` for a variant without maps."""
        maps = getattr(knobs, "maps", None)
        return "-" if maps is None else maps_label(maps)

    def extra_flops(self, knobs: Knobs, n: int, d_model: int) -> int:
        """FLOPs of the maps and stream mixes per token and residual layer, forward + backward."""
        return 0

    def describe_knobs(self) -> list[tuple[str, str, str]]:
        """``(knob, type, default)`` rows for ``mhc-bench variants``."""
        return [(name, _type_text(field.annotation), repr(field.default))
                for name, field in self.knobs.model_fields.items() if name != "kind"]


def _type_text(annotation: Any) -> str:
    """``Literal['a', 'b']`` -> ``one of a|b``; ``tuple[Literal[...], ...]`` -> ``list of a|b``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + "|".join(map(str, args))
    if origin in (tuple, list) and args:
        return "list of " + _type_text(args[0]).removeprefix("one of ")
    return getattr(annotation, "__name__", str(annotation))


def stream_mix_flops(n: int, d_model: int) -> int:
    """``H_pre x`` and ``H_res x + H_post^T y``: ``2 C (n^2 + 2n)`` forward, twice that backward."""
    return 6 * d_model * (n * n + 2 * n) if n > 1 else 0


def projection_flops(rows: int, inputs: int, outputs: int) -> int:
    """A ``[rows x inputs] @ [inputs x outputs]`` projection per token, forward + dx + dW."""
    return 6 * rows * inputs * outputs


def projected_maps_flops(maps: tuple[str, ...], n: int, d_model: int, res_width: int) -> int:
    """One projection of the flattened ``nC`` onto the enabled maps' logits (pre n, post n, res
    ``res_width``), plus the stream mixes; 0 for a single stream."""
    if n <= 1:
        return 0
    widths = {"pre": n, "post": n, "res": res_width}
    return projection_flops(1, n * d_model, sum(widths[m] for m in maps)) + stream_mix_flops(n, d_model)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(str(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

