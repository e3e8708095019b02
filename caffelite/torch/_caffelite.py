"""Every caffelite internal the torch bridge uses, imported in this one place.

When caffelite's modules move (the layer registry, the proto readers, the layer families), only
these imports change; the rest of ``caffelite.torch`` imports from here.
"""

from caffelite.blob import Blob
from caffelite.common import TEST, TRAIN
from caffelite.compute.im2col import ConvGeometry
from caffelite.errors import (
    BackwardError,
    CaffeliteError,
    LabelError,
    LayerError,
    MissingDependencyError,
    NetError,
    ShapeError,
    UnsupportedError,
)
from caffelite.layers.pooling import pooled_size, pooling_setup
from caffelite.net import Net, filter_net
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param

__all__ = ["Blob", "BackwardError", "CaffeliteError", "LabelError", "LayerError", "MissingDependencyError",
           "NetError", "ShapeError", "UnsupportedError", "TEST", "TRAIN", "ConvGeometry", "pooled_size",
           "pooling_setup", "Net", "filter_net", "read_net_param", "caffe_pb2", "net_wiring", "layer_blobs",
           "layer_names"]


def net_wiring(net: Net):
    """What the bridge reads from a built Net, by layer: (bottom blob names, top blob names, bottom
    need-backward flags) and, by (layer, param) index, the learnable parameter id (shared ones share it)."""
    index = net._blob_index
    names = [n if index.get(n) == i else "%s#%d" % (n, i) for i, n in enumerate(net._blob_names)]
    layers = [([names[i] for i in b], [names[i] for i in t], list(need))
              for b, t, need in zip(net._bottom_ids, net._top_ids, net._bottom_need_backward)]
    return layers, dict(net._param_learnable_id)


def layer_blobs(net: Net, layer_id: int):
    """The (bottom, top) Blobs of one layer of a built Net."""
    return net._layer_blobs(layer_id)


def layer_names(net: Net) -> list[str]:
    return list(net._layer_names)
