"""Caffe layer types as torch operations: a registry from the Caffe type name to a builder.

A builder is called once per layer with the caffelite layer (already set up by caffelite's Net,
so its parameters were parsed and checked there) and the bottom/top Blobs it was set up with; it
returns ``fn(bottoms, params) -> tops``, a function of torch tensors that holds Caffe's
semantics in torch operations.  ``params`` are the layer's parameters as torch tensors (shared
ones are the owner's tensor).  Shapes that depend on the batch are read from the tensors, so one
module runs any batch size.
"""

from __future__ import annotations

from caffelite.torch.ops.registry import OPS, Fallback, canonical_axis, channel_view, register

__all__ = ["OPS", "Fallback", "canonical_axis", "channel_view", "register", "load_all"]


def load_all() -> None:
    from caffelite.torch.ops import common, loss, neuron, recurrent, vision  # noqa: F401
