"""Smoke tests of the dataset tools through the CLI: convert-imageset, compute-image-mean, plot-log."""

import importlib
import os
import sys

import numpy as np
import pytest

import caffelite
from caffelite.cli import main
from caffelite.proto import caffe_pb2
from caffelite.protoio import read_blob_proto
from caffelite.tools.plot_log import parse_log


def _optional(module: str):
    """The module, or None: each test skips alone on what it needs (plot-log needs neither lmdb nor Pillow)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


lmdb, Image = _optional("lmdb"), _optional("PIL.Image")
needs_lmdb = pytest.mark.skipif(lmdb is None, reason="lmdb is not installed (pip install caffelite[lmdb])")
needs_pil = pytest.mark.skipif(Image is None, reason="Pillow is not installed (pip install caffelite[image])")


def read_datums(db):
    env = lmdb.open(str(db), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            out = []
            for key, value in txn.cursor():
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                out.append((key.decode(), datum))
            return out
    finally:
        env.close()


@pytest.fixture
def picture_set(tmp_path):
    """Three RGB PNGs in class folders, and a Caffe list file over the same images."""
    rng = np.random.default_rng(11)
    rgbs = {}
    for cls in ("cat", "dog"):
        os.makedirs(tmp_path / "pics" / cls)
    for i, cls in enumerate(["cat", "dog", "dog"]):
        rgb = rng.integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "pics" / cls / ("p%d.png" % i))
        rgbs["%s/p%d.png" % (cls, i)] = rgb
    (tmp_path / "list.txt").write_text("".join("%s %d\n" % (name, i) for i, name in enumerate(rgbs)))
    return rgbs


@needs_lmdb
@needs_pil
def test_convert_list_file_keys_labels_and_bgr_pixels(tmp_path, picture_set):
    db = tmp_path / "db"
    assert main(["convert-imageset", str(tmp_path / "pics") + "/", str(tmp_path / "list.txt"), str(db)]) == 0
    records = read_datums(db)
    assert [k for k, _ in records] == ["%08d_%s" % (i, name) for i, name in enumerate(picture_set)]
    for i, rgb in enumerate(picture_set.values()):
        d = records[i][1]
        assert (d.channels, d.height, d.width, d.label, d.encoded) == (3, 6, 8, i, False)
        pixels = np.frombuffer(d.data, np.uint8).reshape(3, 6, 8)
        np.testing.assert_array_equal(pixels, rgb[..., ::-1].transpose(2, 0, 1))


@needs_lmdb
@needs_pil
def test_convert_class_folders_gray_resize(tmp_path, picture_set):
    db = tmp_path / "db"
    assert main(["convert-imageset", "--gray", "--resize_height", "3", "--resize_width", "4",
                 str(tmp_path / "pics"), str(db)]) == 0
    records = read_datums(db)
    assert [d.label for _, d in records] == [0, 1, 1]  # cat = 0, dog = 1 (sorted folder names)
    assert all((d.channels, d.height, d.width) == (1, 3, 4) for _, d in records)


@needs_lmdb
@needs_pil
def test_convert_encoded_decodes_to_the_same_batch(tmp_path, monkeypatch, picture_set):
    monkeypatch.chdir(tmp_path)
    assert main(["convert-imageset", "pics/", "list.txt", "raw"]) == 0
    assert main(["convert-imageset", "--encoded", "pics/", "list.txt", "enc"]) == 0
    assert all(d.encoded for _, d in read_datums(tmp_path / "enc"))
    outs = []
    for name in ("raw", "enc"):
        (tmp_path / ("%s.prototxt" % name)).write_text(
            'layer { name: "d" type: "Data" top: "data" top: "label" data_param { source: "%s" backend: LMDB '
            'batch_size: 3 } }' % name)
        net = caffelite.Net(str(tmp_path / ("%s.prototxt" % name)), caffelite.TEST)
        net.forward()
        outs.append(net.blobs["data"].data.copy())
    np.testing.assert_array_equal(outs[0], outs[1])


@needs_lmdb
def test_convert_npz_shuffle_keeps_every_record(tmp_path):
    images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(10))
    assert main(["convert-imageset", "--shuffle", "--seed", "3", str(tmp_path / "d.npz"), str(tmp_path / "db")]) == 0
    records = read_datums(tmp_path / "db")
    labels = [d.label for _, d in records]
    assert sorted(labels) == list(range(10)) and labels != list(range(10))
    for _, d in records:
        np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(2, 2), images[d.label])


@needs_lmdb
def test_convert_errors(tmp_path, capsys):
    assert main(["convert-imageset", str(tmp_path / "none.npz"), str(tmp_path / "db")]) == 1
    assert "none.npz does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 2, 2), np.uint8), labels=np.zeros(2))
    os.makedirs(tmp_path / "db")
    assert main(["convert-imageset", str(tmp_path / "d.npz"), str(tmp_path / "db")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["convert-imageset", "--backend", "leveldb", str(tmp_path / "d.npz"), str(tmp_path / "x")]) == 1
    assert "leveldb is not supported" in capsys.readouterr().err


@needs_lmdb
def test_compute_image_mean_writes_a_legacy_4d_blob(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 3, 2, 5)).astype(np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.zeros(4))
    assert main(["convert-imageset", str(tmp_path / "d.npz"), str(tmp_path / "db")]) == 0
    out = tmp_path / "mean.binaryproto"
    assert main(["compute-image-mean", str(tmp_path / "db"), str(out)]) == 0
    mean = read_blob_proto(str(out))
    assert mean.shape == (1, 3, 2, 5)
    np.testing.assert_allclose(mean[0], images.mean(axis=0), rtol=1e-6)
    printed = capsys.readouterr().out
    assert "mean_value channel [2]: %g" % images[:, 2].mean() in printed
    bp = caffe_pb2.BlobProto()
    bp.ParseFromString(out.read_bytes())
    assert (bp.num, bp.channels, bp.height, bp.width) == (1, 3, 2, 5)
    assert main(["compute-image-mean", str(tmp_path / "nodb")]) == 1


CAFFE_LOG = """\
I1203 10:00:00.000000  1234 solver.cpp:218] Iteration 0 (0 iter/s, 0.01s/100 iters), loss = 2.3
I1203 10:00:00.000000  1234 solver.cpp:237]     Train net output #0: loss = 2.3 (* 1 = 2.3 loss)
I1203 10:00:00.000000  1234 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1203 10:00:01.000000  1234 solver.cpp:218] Iteration 100 (100 iter/s, 1s/100 iters), loss = 0.5
I1203 10:00:01.000000  1234 sgd_solver.cpp:105] Iteration 100, lr = 0.0099
I1203 10:00:02.000000  1234 solver.cpp:330] Iteration 200, Testing net (#0)
I1203 10:00:02.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.91
I1203 10:00:02.000000  1234 solver.cpp:397]     Test net output #1: loss = 0.3 (* 1 = 0.3 loss)
I1203 10:00:02.000000  1234 solver.cpp:228] Iteration 200, loss = 1e-05
"""


def test_parse_log_reads_caffe_lines():
    parsed = parse_log(CAFFE_LOG)
    assert parsed["loss"] == [(0, 2.3), (100, 0.5), (200, 1e-05)]
    assert parsed["lr"] == [(0, 0.01), (100, 0.0099)]
    assert parsed["test"] == {(0, "accuracy"): [(200, 0.91)], (0, "loss"): [(200, 0.3)]}


def test_plot_log_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = tmp_path / "train.log"
    log.write_text(CAFFE_LOG)
    out = tmp_path / "curve.png"
    assert main(["plot-log", str(log), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 loss points, 2 test points, 2 lr points" in capsys.readouterr().out


def test_plot_log_errors(tmp_path, monkeypatch, capsys):
    assert main(["plot-log", str(tmp_path / "missing.log")]) == 1
    (tmp_path / "empty.log").write_text("nothing to see\n")
    assert main(["plot-log", str(tmp_path / "empty.log"), "-o", str(tmp_path / "c.png")]) == 1
    assert "is it a Caffe training log" in capsys.readouterr().err
    (tmp_path / "t.log").write_text(CAFFE_LOG)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot-log", str(tmp_path / "t.log"), "-o", str(tmp_path / "c.png")]) == 1
    assert "pip install caffelite[plot]" in capsys.readouterr().err


@needs_lmdb
def test_digits_example_trains_from_lmdbs_it_converts(tmp_path, capsys):
    """examples/digits/train.py end to end, shortened: convert, train with Data layers, plot."""
    import runpy

    pytest.importorskip("matplotlib")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    train = runpy.run_path(os.path.join(root, "examples", "digits", "train.py"))["main"]
    accuracy = train(["--workdir", str(tmp_path / "build"), "--max-iter", "250", "--plot", str(tmp_path / "c.png")])
    assert accuracy >= 0.9
    assert (tmp_path / "c.png").exists() and (tmp_path / "build" / "digits_train_lmdb" / "data.mdb").exists()
    assert "final test accuracy" in capsys.readouterr().out
