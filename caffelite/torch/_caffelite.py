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
           "pooling_setup", "Net", "filter_net", "read_net_param", "caffe_pb2", "blob_keys", "net_wiring",
           "layer_blobs", "layer_names"]


def blob_keys(net: Net) -> list[str]:
    """A name per blob index: the blob's name where ``net.blobs`` shows that blob under it (pycaffe's
    key: the last blob of a name, so ``(automatic)`` is the last anonymous loss top), else
    ``"<name>#<index>"`` (the other ``(automatic)`` blobs)."""
    names = net.blob_names
    last = {n: i for i, n in enumerate(names)}
    return [n if last[n] == i else "%s#%d" % (n, i) for i, n in enumerate(names)]


def net_wiring(net: Net):
    """What the bridge reads from a built Net, by layer: (bottom blob keys, top blob keys, bottom
    need-backward flags; keys as :func:`blob_keys`) and, by (layer, param) index, the learnable
    parameter id (Caffe's learnable_param_ids_: shared ones take their owner's)."""
    keys = blob_keys(net)
    layers = [([keys[i] for i in net.bottom_ids(lid)], [keys[i] for i in net.top_ids(lid)], list(need))
              for lid, need in enumerate(net.bottom_need_backward)]
    where = net.param_layer_indices
    learnable: dict = {}
    n_owned = 0
    for k, owner in enumerate(net.param_owners):
        if owner < 0:
            learnable[where[k]], n_owned = n_owned, n_owned + 1
        else:
            learnable[where[k]] = learnable[where[owner]]
    return layers, learnable


def layer_blobs(net: Net, layer_id: int):
    """The (bottom, top) Blobs of one layer of a built Net."""
    return net.bottom_vecs[layer_id], net.top_vecs[layer_id]


def layer_names(net: Net) -> list[str]:
    return net.layer_names
