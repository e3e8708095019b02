"""Every corpus net that BVLC Caffe builds (TEST phase) builds in caffelite with the same shapes.

tests/corpus/caffe_shapes.json records, for each net, what Caffe built: every blob's shape, the
(name, type) of every layer including the Split layers it inserts, every parameter's shape, and the
net's inputs and outputs (see tests/corpus/README.md for where the files come from).
"""

import json
import os

import pytest

import caffelite

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
with open(os.path.join(CORPUS, "caffe_shapes.json")) as f:
    SHAPES = json.load(f)
BUILT = sorted(k for k, v in SHAPES.items() if "caffe_error" not in v)



@pytest.mark.parametrize("rel", BUILT)
def test_corpus_net_shapes(rel):
    want = SHAPES[rel]
    net = caffelite.Net(os.path.join(CORPUS, rel), caffelite.TEST)
    assert [[n, layer.type] for n, layer in zip(net._layer_names, net.layers)] == want["layers"]
    assert {n: list(b.shape) for n, b in net.blobs.items()} == want["blobs"]
    assert {n: [list(b.shape) for b in blobs] for n, blobs in net.params.items()} == want["params"]
    assert list(net.inputs) == want["inputs"]
    assert list(net.outputs) == want["outputs"]

