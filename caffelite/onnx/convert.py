"""The registry of layer converters: Caffe type name -> function(LayerContext) -> top tensor names.

Layers that have no TEST-time computation are handled by the exporter itself: data layers become
graph inputs; loss layers and Accuracy are left out (their score bottoms become outputs); Split,
Silence and TEST-time Dropout add no node.
"""

from __future__ import annotations

from caffelite.layer_factory import layer_types_where
from caffelite.onnx.registry import CONVERTERS, converter

__all__ = ["CONVERTERS", "converter", "DROPPED", "DATA", "UNEXPORTABLE", "supported_types"]

# A layer of these types is left out of the exported graph: a loss or a metric needs labels
# (the facts live on the layer classes: Layer.is_loss).
DROPPED = layer_types_where(lambda cls: cls.is_loss) | {"Accuracy"}

# Data layers (Layer.provides_data) and Input: their tops become the graph's inputs.
DATA = layer_types_where(lambda cls: cls.provides_data) | {"Input"}

# Layers that cannot be expressed, with the reason given to the user.
UNEXPORTABLE = {
    "Python": "a Python layer runs arbitrary code that ONNX cannot express",
    "HDF5Output": "HDF5Output writes files; it has no graph output",
    "Filter": "Filter's top has a data-dependent number of items (static ONNX shapes cannot follow it)",
}


def _load():
    from caffelite.onnx import layers_common, layers_recurrent, layers_vision  # noqa: F401  (registration)


def supported_types() -> list[str]:
    """Every layer type the exporter handles (converted, dropped, or made a graph input)."""
    _load()
    return sorted(set(CONVERTERS) | DROPPED | DATA | {"Split", "Silence", "Dropout"})
