"""caffe.draw (pycaffe's drawing API) on caffelite: graph structure via pydot, without rendering."""

import os

import pytest

import caffelite.compat  # noqa: F401  (installs the `caffe` alias)
from caffelite.proto import caffe_pb2
from caffelite.protoio import read_text_proto

pydot = pytest.importorskip("pydot")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "BVLC__caffe")


def lenet():
    return read_text_proto(os.path.join(CORPUS, "examples", "mnist", "lenet_train_test.prototxt"),
                           caffe_pb2.NetParameter())


def test_pydot_graph_has_a_node_per_layer_and_blob():
    import caffe.draw

    net = lenet()
    graph = caffe.draw.get_pydot_graph(net, "LR")
    names = [n.get_name() for n in graph.get_nodes()]
    assert any("conv1" in n and "Convolution" in n for n in names)
    assert any("kernel size: 5" in n for n in names)
    edges = graph.get_edges()
    assert any(e.get_label() == "20" for e in edges)  # conv1's num_output labels its output edge
    text = graph.to_string()
    assert "#FF5050" in text and "octagon" in text


def test_phase_filter_drops_the_other_phase():
    import caffe.draw

    net = lenet()
    train = caffe.draw.get_pydot_graph(net, "TB", phase=caffe_pb2.TRAIN).to_string()
    test = caffe.draw.get_pydot_graph(net, "TB", phase=caffe_pb2.TEST).to_string()
    assert "accuracy" not in train and "accuracy" in test


def test_draw_net_to_file_renders_with_graphviz(tmp_path):
    import shutil

    import caffe.draw

    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed")
    out = tmp_path / "net.svg"
    caffe.draw.draw_net_to_file(lenet(), str(out), "LR")
    assert out.read_bytes().lstrip().startswith(b"<?xml")
