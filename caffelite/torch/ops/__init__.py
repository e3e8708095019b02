"""Caffe layer types as torch operations: a registry from the Caffe type name to a builder.

A builder is called once per layer with the caffelite layer (already set up by caffelite's Net,
so its parameters were parsed and checked there) and the bottom/top Blobs it was set up with; it
returns ``fn(bottoms, params) -> tops``, a function of torch tensors that holds Caffe's
semantics in torch operations.  ``params`` are the layer's parameters as torch tensors (shared
ones are the owner's tensor).  Shapes that depend on the batch are read from the tensors, so one
module runs any batch size.
"""

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


def load_all() -> None:
    from caffelite.torch.ops import common, loss, neuron, recurrent, vision  # noqa: F401
