"""caffe.io (caffelite.pycaffe.io): proto round trips against Caffe's files, Transformer, images."""

from __future__ import annotations

import os

import numpy as np
import pytest

from caffelite.errors import CaffeFileNotFoundError, NetError, ShapeError, UnsupportedError
from caffelite.proto import caffe_pb2
from caffelite.pycaffe import io as cio
from tests.fixtures import HERE, committed

GOLDEN = os.path.join(HERE, "golden", "layers", "data_lmdb_mean_file")  # committed: missing fails, never skips


# --- BlobProto ---------------------------------------------------------------------------------
def test_blobproto_legacy_shape():
    blob = caffe_pb2.BlobProto()
    blob.data.extend(np.arange(100.0).tolist())
    blob.num, blob.channels, blob.height, blob.width = 1, 1, 10, 10
    arr = cio.blobproto_to_array(blob)
    assert arr.shape == (1, 1, 10, 10) and arr.dtype == np.float64
    np.testing.assert_array_equal(arr.ravel(), np.arange(100.0))


def test_blobproto_new_shape_and_diff():
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 5])
    blob.data.extend([1.0] * 10)
    blob.diff.extend(np.arange(10.0).tolist())
    assert cio.blobproto_to_array(blob).shape == (2, 5)
    np.testing.assert_array_equal(cio.blobproto_to_array(blob, return_diff=True), np.arange(10.0).reshape(2, 5))


def test_blobproto_without_shape_is_scalar_or_error():
    blob = caffe_pb2.BlobProto()
    blob.data.append(123.0)
    arr = cio.blobproto_to_array(blob)
    assert arr.shape == () and arr == 123
    blob.data.append(1.0)
    with pytest.raises(ValueError, match="no shape"):
        cio.blobproto_to_array(blob)


def test_array_to_blobproto_round_trip_any_rank():
    rng = np.random.default_rng(0)
    for shape in [(3,), (2, 3), (2, 3, 4), (1, 2, 3, 4), (2, 1, 2, 1, 2)]:
        a = rng.normal(size=shape).astype(np.float32)
        d = rng.normal(size=shape).astype(np.float32)
        bp = caffe_pb2.BlobProto.FromString(cio.array_to_blobproto(a, d).SerializeToString())
        assert list(bp.shape.dim) == list(shape)
        np.testing.assert_array_equal(cio.blobproto_to_array(bp), a)
        np.testing.assert_array_equal(cio.blobproto_to_array(bp, return_diff=True), d)
    with pytest.raises(ShapeError):
        cio.array_to_blobproto(np.ones((2, 2)), np.ones(3))


def test_blobprotovector_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.ones((1, 2, 2, 2)), np.array([5.0])]
    data = cio.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(data, bytes)
    back = cio.blobprotovector_str_to_arraylist(data)
    assert len(back) == 3
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)
    assert cio.arraylist_to_blobprotovecor_str is cio.arraylist_to_blobprotovector_str  # pycaffe's old name


def test_mean_binaryproto_written_by_caffe():
    path = committed("golden", "layers", "data_lmdb_mean_file", "mean.binaryproto")
    from caffelite.protoio import read_blob_proto

    with open(path, "rb") as f:
        blob = caffe_pb2.BlobProto.FromString(f.read())
    mean = cio.blobproto_to_array(blob)
    assert mean.shape == (1, 3, 6, 6)
    np.testing.assert_array_equal(mean, read_blob_proto(path))
    # and back: our proto of that array parses to the same values
    np.testing.assert_array_equal(cio.blobproto_to_array(cio.array_to_blobproto(mean)), mean)


def test_datums_and_mean_written_by_caffe_reproduce_the_data_layer():
    """Datums from Caffe's LMDB minus Caffe's mean file, scaled: the Data layer's output in Caffe."""
    lmdb = pytest.importorskip("lmdb")
    committed("golden", "layers", "data_lmdb_mean_file", "db", "data.mdb")
    with open(os.path.join(GOLDEN, "mean.binaryproto"), "rb") as f:
        mean = cio.blobproto_to_array(caffe_pb2.BlobProto.FromString(f.read()))[0]
    env = lmdb.open(os.path.join(GOLDEN, "db"), readonly=True, lock=False)
    with env.begin() as txn:
        datums = [caffe_pb2.Datum.FromString(v) for _, v in txn.cursor()]
    env.close()
    arrays = [cio.datum_to_array(d) for d in datums]
    assert arrays[0].dtype == np.uint8 and arrays[0].shape == (3, 6, 6)
    ref = np.load(os.path.join(GOLDEN, "arrays.npz"))
    got = (np.stack(arrays[:2]).astype(np.float64) - mean) * 0.25  # transform_param: scale 0.25
    np.testing.assert_allclose(got, ref["fwd0/data"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal([d.label for d in datums[:2]], ref["fwd0/label"])
    # round trip of Caffe's Datum through our writer gives the same bytes
    d0 = datums[0]
    again = cio.array_to_datum(arrays[0], label=d0.label)
    assert again.data == d0.data and (again.channels, again.height, again.width) == (3, 6, 6)


# --- Datum -------------------------------------------------------------------------------------
def test_datum_uint8_round_trip():
    a = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    d = caffe_pb2.Datum.FromString(cio.array_to_datum(a, label=7).SerializeToString())
    assert d.data == a.tobytes() and not len(d.float_data) and d.label == 7
    b = cio.datum_to_array(d)
    assert b.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    b[0, 0, 0] = 1  # writable


def test_datum_float_round_trip():
    a = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    d = cio.array_to_datum(a)
    assert not d.data and len(d.float_data) == a.size
    b = cio.datum_to_array(d)
    assert b.dtype == np.float64
    np.testing.assert_array_equal(a, b)


def test_datum_label_only_when_given():
    with_label = cio.array_to_datum(np.ones((10, 10, 3)), label=1)
    without = cio.array_to_datum(np.ones((10, 10, 3)))
    assert not without.HasField("label")
    assert len(with_label.SerializeToString()) > len(without.SerializeToString())


def test_datum_wrong_rank():
    with pytest.raises(ValueError, match="Incorrect array shape"):
        cio.array_to_datum(np.ones((2, 3)))


# --- Transformer -------------------------------------------------------------------------------
def _transformer(shape=(2, 3, 4, 5)):
    return cio.Transformer({"data": shape})


def test_transformer_matches_numpy_and_inverts():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(4, 5, 3)).astype(np.float32)
    mean = rng.uniform(size=3).astype(np.float32)
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", mean)
    t.set_input_scale("data", 0.5)
    before = img.copy()
    x = t.preprocess("data", img)
    np.testing.assert_array_equal(img, before)  # the caller's image is untouched
    ref = (img.transpose(2, 0, 1)[::-1] * 255.0 - mean[:, None, None]) * 0.5
    assert x.dtype == np.float32 and x.shape == (3, 4, 5)
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t.deprocess("data", x), img, rtol=1e-5, atol=1e-5)


def test_transformer_elementwise_mean_and_resize():
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(8, 10, 3))
    mean = rng.uniform(size=(3, 4, 5))
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", mean)
    x = t.preprocess("data", img)
    ref = cio.resize_image(img.astype(np.float32), (4, 5)).transpose(2, 0, 1) - mean
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-6)


def test_transformer_two_dimensional_mean():
    t = cio.Transformer({"data": (1, 1, 3, 3)})
    t.set_mean("data", np.ones((3, 3)))
    t.set_transpose("data", (2, 0, 1))
    np.testing.assert_array_equal(t.preprocess("data", np.full((3, 3, 1), 3.0)), np.full((1, 3, 3), 2.0))


def test_transformer_checks_with_pycaffe_messages():
    t = _transformer()
    with pytest.raises(NetError, match="is not one of the net inputs"):
        t.set_raw_scale("label", 2)
    with pytest.raises(ShapeError, match="Transpose order needs to have the same number of dimensions"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(ShapeError, match="Channel swap needs to have the same number of dimensions"):
        t.set_channel_swap("data", (1, 0))
    with pytest.raises(ShapeError, match="Mean channels incompatible with input"):
        t.set_mean("data", np.zeros(4))
    with pytest.raises(ShapeError, match="Mean shape incompatible with input shape"):
        t.set_mean("data", np.zeros((3, 2, 2)))
    with pytest.raises(ShapeError, match="Mean shape invalid"):
        t.set_mean("data", np.zeros((1, 3, 4, 5)))
    with pytest.raises(ValueError):  # pycaffe's scripts catch these as ValueError / Exception
        t.set_mean("data", np.zeros(4))


def test_transformer_dicts_are_public():
    t = _transformer()
    t.set_transpose("data", (2, 0, 1))
    t.set_raw_scale("data", 255)
    assert t.transpose == {"data": (2, 0, 1)} and t.raw_scale == {"data": 255}
    assert t.inputs == {"data": (2, 3, 4, 5)} and t.mean == {} and t.channel_swap == {}


# --- resize / oversample -----------------------------------------------------------------------
def _bilinear_reference(im, new_dims):
    """Per-pixel skimage resize(order=1, mode='constant'): pixel centres aligned, zeros outside."""
    h, w = im.shape[:2]
    out = np.zeros(tuple(new_dims) + im.shape[2:])

    def pixel(y, x):
        return im[y, x] if 0 <= y < h and 0 <= x < w else 0.0

    for i in range(new_dims[0]):
        for j in range(new_dims[1]):
            y = (i + 0.5) * h / new_dims[0] - 0.5
            x = (j + 0.5) * w / new_dims[1] - 0.5
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            ty, tx = y - y0, x - x0
            out[i, j] = ((1 - ty) * (1 - tx) * pixel(y0, x0) + (1 - ty) * tx * pixel(y0, x0 + 1)
                         + ty * (1 - tx) * pixel(y0 + 1, x0) + ty * tx * pixel(y0 + 1, x0 + 1))
    return out


@pytest.mark.parametrize("src,dst", [((5, 7, 3), (9, 4)), ((6, 6, 1), (12, 12)), ((9, 8, 3), (3, 3))])
def test_resize_image_is_skimage_bilinear(src, dst):
    im = np.random.default_rng(0).uniform(-2, 3, size=src).astype(np.float32)
    lo, hi = im.min(), im.max()
    ref = _bilinear_reference((im - lo) / (hi - lo), dst) * (hi - lo) + lo
    got = cio.resize_image(im, dst)
    assert got.dtype == np.float32 and got.shape == tuple(dst) + src[2:]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_resize_image_other_channel_counts_align_corners():
    im = np.random.default_rng(0).normal(size=(4, 5, 2))
    got = cio.resize_image(im, (7, 9))
    np.testing.assert_allclose(got[[0, 0, -1, -1], [0, -1, 0, -1]], im[[0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-6)
    # a linear ramp stays a linear ramp under linear interpolation
    ramp = np.add.outer(np.arange(4.0), 2 * np.arange(5.0))[:, :, None].repeat(2, axis=2)
    want = np.add.outer(np.linspace(0, 3, 7), 2 * np.linspace(0, 4, 9))
    np.testing.assert_allclose(cio.resize_image(ramp, (7, 9))[:, :, 0], want, rtol=1e-6, atol=1e-5)


def test_resize_image_identity_constant_and_nearest():
    im = np.random.default_rng(0).uniform(size=(4, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(cio.resize_image(im, (4, 6)), im, rtol=1e-6, atol=1e-7)
    const = cio.resize_image(np.full((3, 3, 3), 0.25), (5, 2))
    assert const.shape == (5, 2, 3) and const.dtype == np.float32 and np.all(const == 0.25)
    up = cio.resize_image(im, (8, 12), interp_order=0)
    np.testing.assert_allclose(up[::2, ::2], im, rtol=1e-6)
    np.testing.assert_allclose(up[1::2, 1::2], im, rtol=1e-6)
    with pytest.raises(UnsupportedError):
        cio.resize_image(im, (2, 2), interp_order=3)


def test_resize_image_matches_skimage_when_installed():
    transform = pytest.importorskip("skimage.transform")
    im = np.random.default_rng(2).uniform(size=(11, 7, 3)).astype(np.float32)
    for dims in [(5, 9), (23, 3)]:
        ref = transform.resize(im, dims, order=1, mode="constant", anti_aliasing=False)
        np.testing.assert_allclose(cio.resize_image(im, dims), ref, rtol=1e-5, atol=1e-5)


def test_oversample_corners_centre_and_mirrors():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 7, 8, 3)).astype(np.float32)
    crops = cio.oversample(images, (4, 5))
    assert crops.shape == (20, 4, 5, 3) and crops.dtype == np.float32
    for n, im in enumerate(images):
        c = crops[10 * n:10 * n + 10]
        starts = [(0, 0), (0, 3), (3, 0), (3, 3), (int(3.5 - 2.0), int(4 - 2.5))]
        for k, (i, j) in enumerate(starts):
            np.testing.assert_array_equal(c[k], im[i:i + 4, j:j + 5])
            np.testing.assert_array_equal(c[k + 5], im[i:i + 4, j:j + 5][:, ::-1])


# --- load_image --------------------------------------------------------------------------------
def test_load_image_color_grey_and_alpha(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = cio.load_image(str(tmp_path / "a.png"))
    assert img.dtype == np.float32 and img.shape == (5, 4, 3)
    np.testing.assert_allclose(img, rgba[:, :, :3] / 255.0, rtol=1e-6)
    grey = cio.load_image(str(tmp_path / "a.png"), color=False)
    assert grey.shape == (5, 4, 1)
    want = rgba[:, :, :3] / 255.0 @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(grey[:, :, 0], want, rtol=1e-6)

    g = rng.integers(0, 256, size=(3, 6), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    as_color = cio.load_image(str(tmp_path / "g.png"))
    assert as_color.shape == (3, 6, 3)
    np.testing.assert_allclose(as_color, np.repeat(g[:, :, None] / 255.0, 3, axis=2), rtol=1e-6)
    np.testing.assert_allclose(cio.load_image(str(tmp_path / "g.png"), color=False)[:, :, 0], g / 255.0, rtol=1e-6)


def test_load_image_errors(tmp_path):
    with pytest.raises(CaffeFileNotFoundError):
        cio.load_image(str(tmp_path / "missing.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        cio.load_image(str(bad))


def test_load_image_without_pillow_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(UnsupportedError, match=r"caffelite\[image\]"):
        cio.load_image("x.png")
