"""The layer factory: look up a layer class by its Caffe type name and create layers.

Caffe: include/caffe/layer_factory.hpp.  The registry itself (``register_layer``) lives in
caffelite/layer.py; this module imports :mod:`caffelite.layers` so that every built-in family has
registered itself before the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable

import caffelite.layers  # noqa: F401  (importing the package registers every family)
from caffelite.errors import UnknownLayerTypeError
from caffelite.layer import _REGISTRY, Layer
from caffelite.suggest import did_you_mean, fork_layer_hint

__all__ = ["create_layer", "layer_class", "layer_type_list", "layer_types_where"]


def layer_type_list() -> list[str]:
    """Every registered Caffe layer type, sorted (pycaffe's ``caffe.layer_type_list()``)."""
    return sorted(_REGISTRY)


def layer_types_where(fact: Callable[[type[Layer]], object]) -> frozenset[str]:
    """The registered types whose class has a fact, e.g. ``layer_types_where(lambda c: c.is_loss)``.

    The facts (``is_loss``, ``label_bottom``, ``default_normalization``, ...) are class attributes of
    :class:`~caffelite.layer.Layer`; the net, ``check`` and ``explain`` read them from there.
    """
    return frozenset(name for name, cls in _REGISTRY.items() if fact(cls))


def layer_class(type_name: str) -> type[Layer]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = sorted(_REGISTRY)
        fork = fork_layer_hint(type_name)
        hint = " " + fork if fork else did_you_mean(type_name, known)
        raise UnknownLayerTypeError("Unknown layer type: %s (known types: %s).%s"
                                    % (type_name, ", ".join(known), hint), field="type") from None


def create_layer(layer_param) -> Layer:
    """Caffe's LayerRegistry::CreateLayer."""
    return layer_class(layer_param.type).create(layer_param)
