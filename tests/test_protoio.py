"""caffelite.protoio: plain proto I/O.  Here: the files we write get the permissions a plain
``open(path, "wb")`` would give (umask-respecting for a new file, unchanged for an existing one), as
Caffe's writers do, while staying atomic."""

import contextlib
import os
import stat

import numpy as np
import pytest

from caffelite import protoio, upgrade
from caffelite.blob import Blob
from caffelite.net import Net
from caffelite.proto import caffe_pb2

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
"""
UMASKS = [0o022, 0o027, 0o077, 0o002]


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def open_mode(path, value) -> int:
    """The mode a plain open(path, "wb") gives under umask ``value``: the reference."""
    with umask(value), open(path, "wb") as f:
        f.write(b"x")
    return mode(path)


def tiny_net() -> Net:
    return Net(protoio.parse_text(NET, caffe_pb2.NetParameter()), phase=caffe_pb2.TEST)


@pytest.mark.parametrize("value", UMASKS, ids=oct)
def test_atomic_write_gives_a_new_file_the_mode_open_gives(tmp_path, value):
    expected = open_mode(tmp_path / "reference", value)
    with umask(value):
        protoio.atomic_write(str(tmp_path / "out.bin"), b"data")
    assert mode(tmp_path / "out.bin") == expected == 0o666 & ~value
    assert (tmp_path / "out.bin").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "reference"]  # no temporary left


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with umask(0o022):
        protoio.atomic_write(str(path), b"new")
    assert mode(path) == 0o640
    assert path.read_bytes() == b"new"


@pytest.mark.parametrize("value", [0o022, 0o027], ids=oct)
def test_every_writer_gives_the_mode_open_gives(tmp_path, value):
    expected = open_mode(tmp_path / "reference", value)
    net = tiny_net()
    old_net = tmp_path / "old.prototxt"
    old_net.write_text('layers { name: "r" type: RELU bottom: "x" top: "x" } input: "x" input_dim: 1 '
                       "input_dim: 1 input_dim: 1 input_dim: 1")
    old_solver = tmp_path / "old_solver.prototxt"
    old_solver.write_text('net: "old.prototxt" solver_type: ADAM')
    with umask(value):
        net.save(str(tmp_path / "w.caffemodel"))
        protoio.write_binary_proto(str(tmp_path / "mean.binaryproto"),
                                   protoio.blob_to_proto(Blob((1, 2))))
        protoio.write_text_proto(str(tmp_path / "net.prototxt"), net.to_proto())
        upgrade.upgrade_net_file(str(old_net), str(tmp_path / "new.prototxt"))
        upgrade.upgrade_net_file(str(tmp_path / "w.caffemodel"), str(tmp_path / "new.caffemodel"))
        upgrade.upgrade_solver_file(str(old_solver), str(tmp_path / "new_solver.prototxt"))
    written = ["w.caffemodel", "mean.binaryproto", "net.prototxt", "new.prototxt", "new.caffemodel",
               "new_solver.prototxt"]
    assert {name: oct(mode(tmp_path / name)) for name in written} == {name: oct(expected) for name in written}


def test_net_save_hdf5_gives_the_mode_open_gives(tmp_path):
    pytest.importorskip("h5py")
    expected = open_mode(tmp_path / "reference", 0o022)
    net = tiny_net()
    with umask(0o022):
        net.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    assert mode(tmp_path / "w.caffemodel.h5") == expected
    again = tiny_net()
    again.copy_from(str(tmp_path / "w.caffemodel.h5"))
    np.testing.assert_array_equal(again.params["ip"][0].data, net.params["ip"][0].data)


def test_looks_binary_tells_caffemodels_from_prototxt(tmp_path):
    net = tiny_net()
    assert protoio.looks_binary(net.to_proto().SerializeToString())
    assert not protoio.looks_binary(NET.encode("utf-8"))
    assert not protoio.looks_binary(b"")
    assert protoio.looks_binary(b"\xff\xfe")  # not UTF-8
