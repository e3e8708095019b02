"""The registry of torch builders by Caffe type name, and the helpers every builder module shares."""

from __future__ import annotations

from collections.abc import Callable

OPS: dict[str, Callable] = {}


class Fallback(Exception):
    """Raised by a builder for a configuration it leaves to caffelite's NumPy layer (a CPU round trip)."""


def register(*types: str):
    """Decorator: register a builder under one or more Caffe type names."""
    def wrap(builder):
        for t in types:
            OPS[t] = builder
        return builder
    return wrap


def canonical_axis(axis: int, ndim: int) -> int:
    """Caffe's CanonicalAxisIndex (the layer's setup has already range-checked it)."""
    return axis + ndim if axis < 0 else axis


def channel_view(v, ndim: int, axis: int = 1):
    """A per-channel vector shaped to broadcast against an ndim tensor along ``axis``."""
    return v.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))
