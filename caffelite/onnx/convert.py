"""The registry of layer converters: Caffe type name -> function(LayerContext) -> top tensor names.

Layers that have no TEST-time computation are handled by the exporter itself: data layers become
graph inputs; loss layers and Accuracy are left out (their score bottoms become outputs); Split,
Silence and TEST-time Dropout add no node.
"""

from __future__ import annotations

CONVERTERS = {}

# A layer of these types is left out of the exported graph: a loss or a metric needs labels.
DROPPED = {"Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
           "SigmoidCrossEntropyLoss", "ContrastiveLoss"}

# Data layers: their tops become the graph's inputs.
DATA = {"Input", "Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData"}

# Layers that cannot be expressed, with the reason given to the user.
UNEXPORTABLE = {
    "Python": "a Python layer runs arbitrary code that ONNX cannot express",
    "HDF5Output": "HDF5Output writes files; it has no graph output",
    "Filter": "Filter's top has a data-dependent number of items (static ONNX shapes cannot follow it)",
}


def converter(*types: str):
    """Register ``fn`` as the converter of the Caffe layer types ``types``."""
    def register(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return register


def _load():
    from caffelite.onnx import layers_common, layers_recurrent, layers_vision  # noqa: F401  (registration)


def supported_types() -> list[str]:
    """Every layer type the exporter handles (converted, dropped, or made a graph input)."""
    _load()
    return sorted(set(CONVERTERS) | DROPPED | DATA | {"Split", "Silence", "Dropout"})
