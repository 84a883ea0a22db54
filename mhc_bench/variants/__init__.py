"""The registry of residual-mixing variants: one module per method, found by name.

Built in: ``baseline``, ``hc``, ``mhc``, ``mhc_lite`` and ``rowstoch`` (this package). A
variant in another package registers itself in either of two ways, and then trains,
probes, benchmarks and appears in the report like a built-in one, with no file of this
package edited:

- an entry point in the group ``mhc_bench.variants`` (``pyproject.toml``:
  ``[project.entry-points."mhc_bench.variants"] myvar = "my_pkg.my_variant:MyVariant"``);
- a module path in ``$MHC_BENCH_VARIANTS`` (comma-separated ``module`` or
  ``module:Attr``; a bare module registers every :class:`Variant` subclass it defines),
  for a file on ``PYTHONPATH`` that is not packaged.

Everything else reads this registry: the model's residual layers, the config schema
(``model.mixing`` validates against the named variant's knobs), the optimizer's
no-decay groups, the benchmark's FLOP model, cell ids and the report's labels and
markers. ``mhc-bench variants`` lists what is registered, with each one's knobs.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, create_model

from mhc_bench.variants.base import Knobs, MapKnobs, Variant, maps_label

__all__ = ["ENTRY_POINT_GROUP", "MODULES_ENV", "Knobs", "MapKnobs", "Variant", "get", "maps_label",
           "mixing_type", "names", "parse_mixing", "reference", "register"]

ENTRY_POINT_GROUP = "mhc_bench.variants"
MODULES_ENV = "MHC_BENCH_VARIANTS"
BUILTIN = ("mhc_bench.variants.baseline:Baseline", "mhc_bench.variants.hc:HC", "mhc_bench.variants.mhc:MHC",
           "mhc_bench.variants.mhc_lite:MHCLite", "mhc_bench.variants.rowstoch:RowStochastic")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_variants: dict[str, Variant] = {}
_knob_models: dict[str, type[Knobs]] = {}
_loaded = False


def register(variant: type[Variant] | Variant) -> Variant:
    """Add a variant (class or instance); its name must be new and lower_snake_case."""
    instance = variant() if isinstance(variant, type) else variant
    if not isinstance(instance, Variant):
        raise TypeError(f"{variant!r} is not a mhc_bench.variants.Variant")
    name = instance.name
    if not _NAME.match(name):
        raise ValueError(f"variant name {name!r} must be lower_snake_case")
    if name in _variants:
        if type(_variants[name]) is type(instance):
            return _variants[name]  # the same class registered twice (a module imported again)
        other = type(_variants[name]).__module__
        raise ValueError(f"a variant named {name!r} is already registered ({other})")
    if not issubclass(instance.knobs, Knobs):
        raise TypeError(f"{name}: knobs must subclass mhc_bench.variants.Knobs")
    _variants[name] = instance
    # The section's model: the variant's knobs with kind fixed to its name (the discriminator).
    _knob_models[name] = create_model(f"{type(instance).__name__}Mixing", __base__=instance.knobs,
                                      kind=(Literal[name], name))  # type: ignore[call-overload]
    mixing_type.cache_clear()
    return instance


def _load_target(target: str) -> list[Any]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name.strip())
    if attr:
        return [getattr(module, attr.strip())]
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, Variant) and obj is not Variant
             and obj.__module__ == module.__name__ and "name" in vars(obj)]
    if not found:
        raise ValueError(f"{MODULES_ENV}: module {module_name!r} defines no Variant subclass")
    return found


def load() -> None:
    """Register the built-in variants, then the plug-ins (entry points, ``$MHC_BENCH_VARIANTS``), once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for target in BUILTIN:
        for obj in _load_target(target):
            register(obj)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        register(ep.load())
    for target in filter(None, (t.strip() for t in os.environ.get(MODULES_ENV, "").split(","))):
        for obj in _load_target(target):
            register(obj)
    references = [v.name for v in _variants.values() if v.is_reference]
    if len(references) != 1:
        raise ValueError(f"exactly one variant must be the reference (is_reference), found {references}")


def names() -> tuple[str, ...]:
    load()
    return tuple(_variants)


def get(name: str) -> Variant:
    load()
    try:
        return _variants[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; registered: {', '.join(_variants)}") from None


def reference() -> Variant:
    """The variant every loss gap is measured against (the plain residual network)."""
    load()
    return next(v for v in _variants.values() if v.is_reference)


def knobs_model(name: str) -> type[Knobs]:
    """The pydantic model of ``model.mixing`` for one variant (its knobs plus ``kind``)."""
    get(name)
    return _knob_models[name]


def _kind_of_string(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


@functools.cache
def mixing_type() -> Any:
    """The type of ``model.mixing``: a variant name, or a mapping validated by that variant's knobs."""
    load()
    models = tuple(_knob_models.values())
    union = models[0] if len(models) == 1 else Union[models]  # noqa: UP007 - a runtime tuple of types
    return Annotated[union, Field(discriminator="kind"), BeforeValidator(_kind_of_string)]


def parse_mixing(value: Any) -> Knobs:
    """A ``model.mixing`` value (a name, a mapping or knobs) as the variant's knobs; ``ValueError``
    naming the knob otherwise."""
    if isinstance(value, Knobs):
        return value
    try:
        return TypeAdapter(mixing_type()).validate_python(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "kind"
        raise ValueError(f"mixing.{where}: {first['msg']}") from None
