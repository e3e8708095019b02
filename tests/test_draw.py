"""``caffelite draw``: DOT structure (in-place layers folded, shapes on edges); SVG when `dot` exists."""

import os
import re
import shutil

import pytest

from caffelite.cli import main
from caffelite.draw import draw_file, net_to_dot
from caffelite.errors import UnsupportedError
from caffelite.layer import TEST
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text

NET = '''name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" include { phase: TRAIN } }
'''


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    return str(path)


def edges(dot):
    return re.findall(r'^\s*(\S+) -> (\S+?)(?: \[label="([^"]*)"\])?;$', dot, re.M)


def test_dot_structure_and_folding(net_file, tmp_path):
    out = tmp_path / "net.dot"
    assert main(["draw", net_file, "-o", str(out), "--shapes"]) == 0
    dot = out.read_text()
    assert dot.startswith('digraph "tiny" {') and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == 4  # data, conv (+ relu folded), ip, loss
    assert "+ relu (ReLU)" in dot and 'label="relu' not in dot
    assert dot.count("shape=octagon") == 5  # data, label, conv, ip, loss
    found = {(src, dst): label for src, dst, label in edges(dot)}
    assert found[("layer1", '"blob:conv"')] == "2x4x6x6"
    assert found[('"blob:conv"', "layer3")] == "2x4x6x6"
    assert found[('"blob:ip"', "layer4")] == "2x5"
    assert found[("layer4", '"blob:loss"')] == "scalar"


def test_phase_filter_and_no_shapes(net_file, tmp_path):
    out = tmp_path / "test.dot"
    dot = draw_file(net_file, str(out), phase=TEST)
    assert "SoftmaxWithLoss" not in dot and "[label=" not in "".join(e for e in dot.splitlines() if "->" in e)
    assert out.read_text() == dot


def test_net_to_dot_quotes_names():
    param = parse_text('layer { name: "a\\"b" type: "Input" top: "x y" input_param { shape { dim: 1 } } }',
                       caffe_pb2.NetParameter())
    dot = net_to_dot(param)
    assert 'label="a\\"b\\n(Input)"' in dot and '"blob:x y"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_svg_with_graphviz(net_file, tmp_path):
    out = tmp_path / "net.svg"
    draw_file(net_file, str(out), show_shapes=True)
    assert "<svg" in out.read_text()


def test_svg_without_graphviz_is_a_clear_error(net_file, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UnsupportedError, match="dot"):
        draw_file(net_file, str(tmp_path / "net.png"))
    assert not os.path.exists(tmp_path / "net.png")


def test_python_layers_are_not_imported(tmp_path, monkeypatch):
    sentinel = tmp_path / "imported"
    (tmp_path / "evil_draw.py").write_text("open(%r, 'w').write('x')\n" % str(sentinel))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "p.prototxt"
    path.write_text('layer { name: "d" type: "Python" top: "x" python_param { module: "evil_draw" layer: "L" } }\n'
                    'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    dot = draw_file(str(path), str(tmp_path / "p.dot"), show_shapes=True)
    assert not sentinel.exists() and 'label="?"' in dot
