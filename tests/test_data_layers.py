"""Data layers and the DataTransformer, on small data made in tmp_path, against plain NumPy."""

import importlib
import os
import sys

import numpy as np
import pytest

import caffelite
from caffelite import cli
from caffelite.errors import (
    CaffeFileNotFoundError,
    FileFormatError,
    LayerError,
    MissingDependencyError,
    ShapeError,
    UnsupportedError,
)
from caffelite.proto import caffe_pb2
from caffelite.transform import DataTransformer, read_image, resize_bilinear


def _optional(module: str):
    """The module, or None.  Each test skips alone on what it needs: without lmdb, the HDF5, Image
    and Memory tests of this file still run (a module-level importorskip would drop them all)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


lmdb, h5py, Image = _optional("lmdb"), _optional("h5py"), _optional("PIL.Image")
needs_lmdb = pytest.mark.skipif(lmdb is None, reason="lmdb is not installed (pip install caffelite[lmdb])")
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed (pip install caffelite[hdf5])")
needs_pil = pytest.mark.skipif(Image is None, reason="Pillow is not installed (pip install caffelite[image])")


def make_net(tmp_path, text, phase=caffelite.TEST, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return caffelite.Net(str(path), phase)


def make_lmdb(tmp_path, images, labels, name="db"):
    np.savez(tmp_path / (name + ".npz"), images=images, labels=labels)
    assert cli.main(["convert-imageset", str(tmp_path / (name + ".npz")), str(tmp_path / name)]) == 0
    return name


@pytest.fixture
def images():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(5, 3, 6, 7)).astype(np.uint8), np.arange(5) % 3


def data_layer(source="db", batch=2, transform="", backend="backend: LMDB"):
    return ('layer { name: "d" type: "Data" top: "data" top: "label" data_param { source: "%s" %s '
            'batch_size: %d } transform_param { %s } }' % (source, backend, batch, transform))


# --- Data (LMDB) ---------------------------------------------------------------------------------
@needs_lmdb
def test_data_layer_centre_crop_mean_values_scale_and_wraparound(tmp_path, monkeypatch, images):
    x, y = images
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, x, y)
    net = make_net(tmp_path, data_layer(transform="scale: 0.5 mean_value: 10 mean_value: 20 mean_value: 30 "
                                                  "crop_size: 4"))
    mean = np.array([10, 20, 30], np.float32).reshape(3, 1, 1)
    expected = (x.astype(np.float32) - mean)[:, :, 1:5, 1:5] * np.float32(0.5)  # (6-4)//2, (7-4)//2
    for batch in ([0, 1], [2, 3], [4, 0]):  # the cursor wraps around
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, expected[batch])
        np.testing.assert_array_equal(net.blobs["label"].data, y[batch])


@needs_lmdb
def test_data_layer_single_top_and_float_data(tmp_path, monkeypatch):
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, x, np.zeros(3))
    net = make_net(tmp_path, 'layer { name: "d" type: "Data" top: "data" data_param { source: "db" '
                             'backend: LMDB batch_size: 3 } transform_param { scale: 2 } }')
    net.forward()
    np.testing.assert_allclose(net.blobs["data"].data, x * 2, rtol=1e-6)


@needs_lmdb
def test_mean_file_is_subtracted_at_the_uncropped_position(tmp_path, monkeypatch, images):
    x, y = images
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, x, y)
    assert cli.main(["compute-image-mean", "db", "mean.binaryproto"]) == 0
    net = make_net(tmp_path, data_layer(batch=5, transform='scale: 0.25 mean_file: "mean.binaryproto" crop_size: 3'))
    net.forward()
    mean = x.astype(np.float64).mean(axis=0).astype(np.float32)
    expected = ((x.astype(np.float32) - mean) * np.float32(0.25))[:, :, 1:4, 2:5]
    np.testing.assert_allclose(net.blobs["data"].data, expected, rtol=1e-6, atol=1e-5)


@needs_lmdb
def test_train_phase_random_crop_and_mirror_come_from_caffelite_rng(tmp_path, monkeypatch, images):
    x, y = images
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, x, y)
    text = data_layer(batch=5, transform="crop_size: 4 mirror: true")
    caffelite.set_random_seed(3)
    first = make_net(tmp_path, text, caffelite.TRAIN)
    first.forward()
    seen = set()
    for i in range(5):
        out = first.blobs["data"].data[i]
        matches = [(h, w, m) for h in range(3) for w in range(4) for m in (0, 1)
                   if np.array_equal(out, x[i, :, h:h + 4, w:w + 4][:, :, ::-1] if m else x[i, :, h:h + 4, w:w + 4])]
        assert matches, "item %d is not a crop of its image" % i
        seen.update(matches)
    assert len(seen) > 1  # not always the centre crop
    caffelite.set_random_seed(3)
    again = make_net(tmp_path, text, caffelite.TRAIN)
    again.forward()
    np.testing.assert_array_equal(again.blobs["data"].data, first.blobs["data"].data)


def test_transformer_mirrors_in_test_phase_too_like_caffe():
    """Caffe's DataTransformer draws the mirror coin in every phase (only crops depend on it)."""
    param = caffe_pb2.TransformationParameter(mirror=True)
    t = DataTransformer(param, caffelite.TEST)
    item = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    caffelite.set_random_seed(0)
    flips = set()
    for _ in range(20):
        out = np.empty_like(item)
        mirrored = t.transform(item, out)[2]
        flips.add(mirrored)
        np.testing.assert_array_equal(out, item[:, :, ::-1] if mirrored else item)
    assert flips == {True, False}


def test_transformer_single_mean_value_applies_to_every_channel():
    t = DataTransformer(caffe_pb2.TransformationParameter(mean_value=[5], scale=0.5))
    item = np.random.default_rng(0).integers(0, 255, size=(3, 2, 2)).astype(np.uint8)
    out = np.empty((3, 2, 2), np.float32)
    t.transform(item, out)
    np.testing.assert_array_equal(out, (item.astype(np.float32) - 5) * np.float32(0.5))


def test_transformer_errors():
    with pytest.raises(LayerError, match="Cannot specify mean_file and mean_value at the same time"):
        DataTransformer(caffe_pb2.TransformationParameter(mean_file="m.binaryproto", mean_value=[1]))
    t = DataTransformer(caffe_pb2.TransformationParameter(mean_value=[1, 2]))
    with pytest.raises(ShapeError, match="Specify either 1 mean_value or as many as channels: 3"):
        t.transform(np.zeros((3, 2, 2), np.uint8), np.zeros((3, 2, 2), np.float32))
    with pytest.raises(ShapeError, match="crop_size 5 is larger"):
        DataTransformer(caffe_pb2.TransformationParameter(crop_size=5)).infer_shape((1, 4, 4))
    with pytest.raises(CaffeFileNotFoundError):
        DataTransformer(caffe_pb2.TransformationParameter(mean_file="/nonexistent/mean.binaryproto"))


@needs_lmdb
def test_leveldb_is_refused_with_a_way_out(tmp_path, monkeypatch, images):
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, *images)
    with pytest.raises(UnsupportedError) as err:
        make_net(tmp_path, data_layer(backend=""))  # Caffe's default backend is LEVELDB
    msg = str(err.value)
    assert "LevelDB is not supported" in msg and "convert" in msg and "backend: LMDB" in msg


@needs_lmdb
def test_missing_and_truncated_lmdb_name_the_file(tmp_path, monkeypatch, images):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CaffeFileNotFoundError, match="nowhere"):
        make_net(tmp_path, data_layer(source="nowhere"))
    make_lmdb(tmp_path, *images)
    os.makedirs("cut")
    with open("db/data.mdb", "rb") as f:
        head = f.read(100)
    with open("cut/data.mdb", "wb") as f:
        f.write(head)
    with pytest.raises(FileFormatError) as err:
        make_net(tmp_path, data_layer(source="cut"))
    assert "cut" in str(err.value)


@needs_lmdb
def test_record_that_is_not_a_datum_is_a_typed_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = lmdb.open("bad", map_size=1 << 20)
    with env.begin(write=True) as txn:
        datum = caffe_pb2.Datum(channels=1, height=2, width=2, data=b"\x01\x02")  # 2 of 4 bytes
        txn.put(b"0", datum.SerializeToString())
    env.close()
    with pytest.raises(FileFormatError, match="truncated record"):
        make_net(tmp_path, data_layer(source="bad"))


@pytest.mark.parametrize("module,extra,text", [
    ("lmdb", "lmdb", 'layer { name: "d" type: "Data" top: "data" data_param { source: "db" backend: LMDB '
                     'batch_size: 1 } }'),
    ("h5py", "hdf5", 'layer { name: "d" type: "HDF5Data" top: "data" hdf5_data_param { source: "l.txt" '
                     'batch_size: 1 } }'),
    ("PIL.Image", "image", 'layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { '
                           'source: "l.txt" batch_size: 1 } }'),
])
def test_missing_optional_package_names_the_pip_extra(tmp_path, monkeypatch, module, extra, text):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install caffelite\[%s\]" % extra):
        make_net(tmp_path, text)


# --- MemoryData --------------------------------------------------------------------------------
MEMORY = ('layer { name: "m" type: "MemoryData" top: "data" top: "label" memory_data_param { '
          'batch_size: 2 channels: 1 height: 2 width: 3 } }')


def test_memory_data_serves_batches_in_order_and_wraps(tmp_path):
    net = make_net(tmp_path, MEMORY)
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    labels = np.array([3, 1, 4, 1], np.float32)
    net.set_input_arrays(data, labels)
    for rows in ([0, 1], [2, 3], [0, 1]):
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, data[rows])
        np.testing.assert_array_equal(net.blobs["label"].data, labels[rows])
    net.set_input_arrays(data[::-1].copy(), labels[::-1].copy())  # Reset starts at row 0 again
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[[3, 2]])


def test_memory_data_checks_like_pycaffe(tmp_path):
    net = make_net(tmp_path, MEMORY)
    with pytest.raises(LayerError, match="needs to be initialized by calling Reset"):
        net.forward()
    good = np.zeros((4, 1, 2, 3), np.float32)
    labels = np.zeros(4, np.float32)
    with pytest.raises(ShapeError, match="data array must be float32"):
        net.set_input_arrays(good.astype(np.float64), labels)
    with pytest.raises(ShapeError, match="data array must be C contiguous"):
        net.set_input_arrays(np.zeros((4, 1, 3, 2), np.float32).transpose(0, 1, 3, 2), labels)
    with pytest.raises(ShapeError, match="data array must be 4-d"):
        net.set_input_arrays(good.reshape(4, 6), labels)
    with pytest.raises(ShapeError, match="data array has wrong width"):
        net.set_input_arrays(np.zeros((4, 1, 2, 4), np.float32), labels)
    with pytest.raises(ShapeError, match="multiple of batch size"):
        net.set_input_arrays(good[:3].copy(), labels[:3].copy())
    with pytest.raises(ShapeError, match="same first dimension"):
        net.set_input_arrays(good, labels[:2].copy())
    other = make_net(tmp_path, 'layer { name: "i" type: "Input" top: "x" input_param { shape { dim: 1 } } }',
                     name="other.prototxt")
    with pytest.raises(LayerError, match="first layer is a MemoryDataLayer"):
        other.set_input_arrays(good, labels)


# --- HDF5Data / HDF5Output ----------------------------------------------------------------------
def write_h5(path, data, label):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = label


@needs_h5py
def test_hdf5_data_crosses_file_boundaries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 2, 2)).astype(np.float32), rng.normal(size=(2, 2, 2)).astype(np.float32)
    write_h5("a.h5", a, np.array([0, 1, 2], np.float64))
    write_h5("b.h5", b, np.array([3, 4], np.float64))
    (tmp_path / "list.txt").write_text("a.h5\nb.h5\n")
    net = make_net(tmp_path, 'layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
                             'hdf5_data_param { source: "list.txt" batch_size: 2 } }')
    rows = np.concatenate([a, b])
    for k in range(4):
        net.forward()
        idx = [(2 * k) % 5, (2 * k + 1) % 5]
        np.testing.assert_array_equal(net.blobs["data"].data, rows[idx])
        np.testing.assert_array_equal(net.blobs["label"].data, np.array(idx, np.float32))


@needs_h5py
def test_hdf5_shuffle_serves_every_row_once_per_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_h5("a.h5", np.arange(3, dtype=np.float32), np.arange(3, dtype=np.float32))
    write_h5("b.h5", np.arange(3, 5, dtype=np.float32), np.arange(3, 5, dtype=np.float32))
    (tmp_path / "list.txt").write_text("a.h5 b.h5")
    net = make_net(tmp_path, 'layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
                             'hdf5_data_param { source: "list.txt" batch_size: 5 shuffle: true } }')
    orders = set()
    for _ in range(6):
        net.forward()
        assert sorted(net.blobs["data"].data.tolist()) == [0, 1, 2, 3, 4]
        orders.add(tuple(net.blobs["data"].data.tolist()))
    assert len(orders) > 1


@needs_h5py
def test_hdf5_errors_name_the_file_and_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layer = ('layer { name: "d" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "%s" '
             'batch_size: 1 } %s }')
    with pytest.raises(CaffeFileNotFoundError, match="Failed to open source file: nolist.txt"):
        make_net(tmp_path, layer % ("nolist.txt", ""))
    (tmp_path / "list.txt").write_text("missing.h5\n")
    with pytest.raises(CaffeFileNotFoundError, match="Failed opening HDF5 file: missing.h5"):
        make_net(tmp_path, layer % ("list.txt", ""))
    with h5py.File("only_data.h5", "w") as f:
        f["data"] = np.zeros((2, 1), np.float32)
    (tmp_path / "list.txt").write_text("only_data.h5\n")
    with pytest.raises(FileFormatError, match="Failed to find HDF5 dataset label in only_data.h5"):
        make_net(tmp_path, layer % ("list.txt", ""))
    with pytest.raises(LayerError, match="does not transform data"):
        make_net(tmp_path, layer % ("list.txt", "transform_param { scale: 2 }"))
    (tmp_path / "list.txt").write_text("junk.h5\n")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FileFormatError, match="junk.h5"):
        make_net(tmp_path, layer % ("list.txt", ""))


@needs_h5py
def test_hdf5_output_writes_data_and_label_as_4d(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = make_net(tmp_path, 'layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 '
                             'dim: 3 } shape { dim: 2 } } } layer { name: "out" type: "HDF5Output" bottom: "x" '
                             'bottom: "y" hdf5_output_param { file_name: "out.h5" } }')
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = [7, 8]
    net.forward()
    net.forward()  # a second batch replaces the first
    with h5py.File("out.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][...], x.reshape(2, 3, 1, 1))
        np.testing.assert_array_equal(f["label"][...], np.array([7, 8], np.float32).reshape(2, 1, 1, 1))


# --- ImageData -----------------------------------------------------------------------------------
def save_rgb(path, rgb):
    Image.fromarray(rgb).save(path)


def opencv_gray(rgb):
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    return (r * 4899 + g * 9617 + b * 1868 + 8192) >> 14


@pytest.fixture
def image_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(9)
    os.makedirs("imgs")
    rgbs = [rng.integers(0, 256, size=(4, 5, 3)).astype(np.uint8) for _ in range(3)]
    for i, rgb in enumerate(rgbs):
        save_rgb("imgs/img %d.png" % i, rgb)  # a space in the name: Caffe splits at the last one
    (tmp_path / "list.txt").write_text("".join("img %d.png %d\n" % (i, i + 1) for i in range(3)))
    return rgbs


def image_layer(extra="", batch=2, transform=""):
    return ('layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { source: "list.txt" '
            'root_folder: "imgs/" batch_size: %d %s } transform_param { %s } }' % (batch, extra, transform))


@needs_pil
def test_image_data_is_bgr_and_wraps(tmp_path, image_folder):
    net = make_net(tmp_path, image_layer())
    net.forward()
    bgr = [rgb[..., ::-1].transpose(2, 0, 1) for rgb in image_folder]
    np.testing.assert_array_equal(net.blobs["data"].data, np.stack(bgr[:2]))
    np.testing.assert_array_equal(net.blobs["label"].data, [1, 2])
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, np.stack([bgr[2], bgr[0]]))
    np.testing.assert_array_equal(net.blobs["label"].data, [3, 1])


@needs_pil
def test_image_data_gray_uses_opencv_weights(tmp_path, image_folder):
    net = make_net(tmp_path, image_layer("is_color: false", batch=3))
    net.forward()
    expected = np.stack([opencv_gray(rgb)[None] for rgb in image_folder])
    np.testing.assert_array_equal(net.blobs["data"].data, expected)


@needs_pil
def test_image_data_resize_and_shuffle(tmp_path, image_folder):
    caffelite.set_random_seed(4)
    net = make_net(tmp_path, image_layer("new_height: 8 new_width: 10 shuffle: true", batch=3))
    net.forward()
    assert net.blobs["data"].shape == (3, 3, 8, 10)
    assert sorted(net.blobs["label"].data.tolist()) == [1, 2, 3]
    for i in range(3):
        label = int(net.blobs["label"].data[i])
        bgr = image_folder[label - 1][..., ::-1].transpose(2, 0, 1)
        np.testing.assert_array_equal(net.blobs["data"].data[i], resize_bilinear(bgr, 8, 10))


@needs_pil
def test_image_data_errors_name_the_file(tmp_path, image_folder):
    (tmp_path / "list.txt").write_text("img 0.png 1\nimg 1.png\n")
    with pytest.raises(FileFormatError, match="line 2 of list.txt"):
        make_net(tmp_path, image_layer())
    (tmp_path / "list.txt").write_text("gone.png 1\n")
    with pytest.raises(CaffeFileNotFoundError, match="imgs/gone.png"):
        make_net(tmp_path, image_layer())
    (tmp_path / "imgs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "list.txt").write_text("bad.png 1\n")
    with pytest.raises(FileFormatError, match="bad.png"):
        make_net(tmp_path, image_layer())
    (tmp_path / "list.txt").write_text("")
    with pytest.raises(FileFormatError, match="File is empty"):
        make_net(tmp_path, image_layer())


def reference_bilinear(src, h, w):
    """OpenCV's INTER_LINEAR in floating point (half-pixel centres, clamped edges)."""
    def taps(n_src, n_dst):
        f = (np.arange(n_dst) + 0.5) * n_src / n_dst - 0.5
        f = np.clip(f, 0, n_src - 1)
        i0 = np.floor(f).astype(int)
        i1 = np.minimum(i0 + 1, n_src - 1)
        return i0, i1, f - i0
    y0, y1, fy = taps(src.shape[1], h)
    x0, x1, fx = taps(src.shape[2], w)
    s = src.astype(np.float64)
    rows = s[:, :, x0] * (1 - fx) + s[:, :, x1] * fx
    return rows[:, y0] * (1 - fy[:, None]) + rows[:, y1] * fy[:, None]


@pytest.mark.parametrize("shape", [(7, 9), (3, 4), (12, 5), (2, 3)])
def test_resize_matches_opencv_bilinear_to_one_grey_level(shape):
    src = np.random.default_rng(0).integers(0, 256, size=(2, 6, 8)).astype(np.uint8)
    got = resize_bilinear(src, *shape)
    assert got.dtype == np.uint8 and got.shape == (2,) + shape
    assert np.max(np.abs(got.astype(np.float64) - reference_bilinear(src, *shape))) <= 1.0


def test_resize_exact_halving_is_an_area_average():
    src = np.random.default_rng(1).integers(0, 256, size=(1, 4, 6)).astype(np.uint8)
    blocks = src.reshape(1, 2, 2, 3, 2).astype(np.int64).sum(axis=(2, 4))
    np.testing.assert_array_equal(resize_bilinear(src, 2, 3), (blocks + 2) >> 2)


@needs_pil
def test_read_image_gray_png_in_colour_replicates_the_channel(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "g.png")
    colour = read_image(str(tmp_path / "g.png"))
    assert colour.shape == (3, 3, 4)
    for c in range(3):
        np.testing.assert_array_equal(colour[c], gray)


# --- WindowData ----------------------------------------------------------------------------------
def window_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rgb = np.random.default_rng(6).integers(0, 256, size=(20, 24, 3)).astype(np.uint8)
    save_rgb(tmp_path / "scene.png", rgb)
    # image 0: one foreground window (label 2, overlap 0.9), one background (overlap 0.1),
    # one in between (dropped when bg_threshold < 0.4)
    (tmp_path / "windows.txt").write_text("# 0\nscene.png\n3\n20\n24\n3\n"
                                          "2 0.9 4 2 11 13\n5 0.1 10 6 21 17\n1 0.4 0 0 5 5\n")
    return rgb[..., ::-1].transpose(2, 0, 1)


WINDOW = ('layer { name: "w" type: "WindowData" top: "data" top: "label" window_data_param { source: '
          '"windows.txt" batch_size: 2 fg_fraction: 0.5 scale: 0.5 %s } transform_param { crop_size: 8 %s } }')


@needs_pil
def test_window_data_warps_bg_then_fg_windows(tmp_path, monkeypatch):
    bgr = window_setup(tmp_path, monkeypatch)
    net = make_net(tmp_path, WINDOW % ("bg_threshold: 0.3", "mean_value: 100"))
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [0, 2])  # background first, then foreground
    bg = resize_bilinear(bgr[:, 6:18, 10:22], 8, 8).astype(np.float32)
    fg = resize_bilinear(bgr[:, 2:14, 4:12], 8, 8).astype(np.float32)
    np.testing.assert_array_equal(net.blobs["data"].data[0], (bg - 100) * np.float32(0.5))
    np.testing.assert_array_equal(net.blobs["data"].data[1], (fg - 100) * np.float32(0.5))


@needs_pil
def test_window_data_context_pad_leaves_zeros_outside_the_image(tmp_path, monkeypatch):
    bgr = window_setup(tmp_path, monkeypatch)
    (tmp_path / "windows.txt").write_text("# 0\nscene.png\n3\n20\n24\n2\n1 1.0 0 0 9 9\n0 0.0 10 6 21 17\n")
    net = make_net(tmp_path, WINDOW % ("context_pad: 2", ""))
    net.forward()
    fg = net.blobs["data"].data[1]
    # Caffe's geometry: context scale 8/(8-4) = 2 grows the 10x10 box at the corner to
    # [-5, 15]^2; clipped to [0, 15]^2 it warps to round(16*8/21) = 6 pixels after a padding
    # of round(5*8/21) = 2 pixels that stays 0
    expected = np.zeros((3, 8, 8), np.float32)
    expected[:, 2:, 2:] = resize_bilinear(bgr[:, 0:16, 0:16], 6, 6).astype(np.float32) * np.float32(0.5)
    np.testing.assert_array_equal(fg, expected)


@needs_pil
def test_window_file_errors(tmp_path, monkeypatch):
    window_setup(tmp_path, monkeypatch)
    (tmp_path / "windows.txt").write_text("# 0\nscene.png\n3\n20\n24\n2\n1 0.9 0 0 5 5\n")
    with pytest.raises(FileFormatError, match="ends inside image 0's windows"):
        make_net(tmp_path, WINDOW % ("", ""))
    (tmp_path / "windows.txt").write_text("# 0\nscene.png\n3\n20\n24\n1\n1 0.9 0 0 5 5\n")
    net = make_net(tmp_path, WINDOW % ("", ""))
    with pytest.raises(LayerError, match="no background window"):
        net.forward()
    with pytest.raises(LayerError, match="crop_size > 0"):
        make_net(tmp_path, WINDOW.replace("crop_size: 8", "") % ("", ""))


@needs_lmdb
def test_two_nets_and_the_user_can_read_one_lmdb_at_once(tmp_path, monkeypatch, images):
    """LMDB refuses a second open of a database in one process: readers open it only per read."""
    x, y = images
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path, x, y)
    train = make_net(tmp_path, data_layer(), caffelite.TRAIN)
    test = make_net(tmp_path, data_layer(), caffelite.TEST, name="test.prototxt")
    train.forward()
    env = lmdb.open("db", readonly=True, lock=False)  # the user's own reader, while the nets exist
    with env.begin() as txn:
        assert txn.stat()["entries"] == 5
    with pytest.raises(FileFormatError, match="close that one first"):
        test.forward()  # ... but not while it is open: py-lmdb's rule
    env.close()
    test.forward()
    train.forward()
    np.testing.assert_array_equal(train.blobs["label"].data, y[[2, 3]])
    np.testing.assert_array_equal(test.blobs["label"].data, y[[0, 1]])

