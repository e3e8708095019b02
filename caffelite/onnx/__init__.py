"""Export Caffe nets to ONNX, with caffelite's (= Caffe's) exact semantics, and verify the export.

::

    import caffelite.onnx
    model = caffelite.onnx.export("deploy.prototxt", "model.onnx", weights="model.caffemodel")

The ``onnx`` package is an optional extra (``pip install caffelite[onnx]``); verification also needs
``onnxruntime``.  The command line is ``caffelite export`` (caffelite/tools/export.py).
"""

from __future__ import annotations

from caffelite.onnx.exporter import DEFAULT_OPSET, Exported, convert, save
from caffelite.onnx.verify import Difference, random_feeds, verify

__all__ = ["export", "convert", "verify", "save", "supported_types", "Exported", "Difference", "DEFAULT_OPSET",
           "random_feeds"]


def export(net_or_path, path=None, weights=None, inputs=None, *, phase=None, stages=None, level: int = 0,
           outputs=None, dynamic_batch: bool = False, opset: int | None = None):
    """Export a Caffe net to ONNX; returns the ``onnx.ModelProto`` (also written to ``path`` when given).

    Parameters
    ----------
    net_or_path : str, NetParameter or caffelite.Net
        The net prototxt (any Caffe format version), or a net already built (its weights are used).
    path : str, optional
        Where to write the model (weights beyond 2 GB go to ``<path>.data``).
    weights : str, optional
        A ``.caffemodel`` (or ``.h5``); without it, the net's fillers give the weights.
    inputs : dict, optional
        ``{blob: shape}`` for data-layer tops whose shape comes from data files, or to change a
        declared input shape (same number of axes and channels).
    phase, stages, level : the NetState (default: TEST, no stage, level 0).
    outputs : list of str, optional
        Blobs to expose instead of the default outputs (unread blobs, and the bottoms of the loss and
        Accuracy layers, which are left out).
    dynamic_batch : bool
        Make axis 0 of the inputs and outputs symbolic (``N``).
    opset : int, optional
        ONNX opset (default :data:`DEFAULT_OPSET`, the newest that onnxruntime and OpenCV 5 both load).
    """
    exported = convert(net_or_path, weights, inputs, phase=phase, stages=stages, level=level, outputs=outputs,
                       dynamic_batch=dynamic_batch, opset=opset)
    if path is not None:
        save(exported.model, path)
    return exported.model


def supported_types() -> list[str]:
    """The Caffe layer types the exporter handles."""
    from caffelite.onnx.convert import supported_types as types

    return types()
