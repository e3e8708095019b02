"""Blob semantics and the seven fillers (checked statistically against Caffe's formulas)."""

import math

import numpy as np
import pytest

import caffelite
from caffelite.blob import Blob
from caffelite.filler import fill
from caffelite.proto import caffe_pb2


def test_blob_shape_accessors_and_reshape():
    b = Blob(2, 3, 4)
    assert b.shape == (2, 3, 4) and b.count == 24
    assert (b.num, b.channels, b.height, b.width) == (2, 3, 4, 1)
    old = b.data
    b.reshape(6, 4)
    assert b.shape == (6, 4) and b.data is not old and b.data.dtype == np.float32
    b.reshape((6, 4))
    assert b.shape == (6, 4)
    with pytest.raises(caffelite.ShapeError):
        b.reshape(-1, 2)
    with pytest.raises(caffelite.ShapeError, match="legacy accessors"):
        _ = Blob(1, 2, 3, 4, 5).num


def test_diff_is_lazy():
    b = Blob(1000, 1000)
    assert not b.has_diff
    assert b.diff.shape == (1000, 1000) and b.has_diff


def test_blob_refuses_shapes_bigger_than_memory():
    with pytest.raises(caffelite.BlobMemoryError, match="GiB"):
        Blob(2**20, 2**20)


def _blob(shape, **kw):
    b = Blob(*shape)
    fill(b, caffe_pb2.FillerParameter(**kw))
    return b.data.astype(np.float64)


def test_constant_and_uniform():
    assert np.all(_blob((3, 4), type="constant", value=2.5) == 2.5)
    x = _blob((200, 500), type="uniform", min=-2, max=3)
    assert x.min() >= -2 and x.max() <= 3
    assert abs(x.mean() - 0.5) < 0.02 and abs(x.var() - 25 / 12) < 0.03


def test_gaussian_and_sparse():
    x = _blob((200, 500), type="gaussian", mean=1, std=2)
    assert abs(x.mean() - 1) < 0.02 and abs(x.std() - 2) < 0.02
    s = _blob((50, 2000), type="gaussian", std=1, sparse=10)
    assert abs((s != 0).mean() - 10 / 50) < 0.01


def test_positive_unitball_rows_sum_to_one():
    x = _blob((7, 3, 5), type="positive_unitball")
    assert np.all(x >= 0)
    np.testing.assert_allclose(x.reshape(7, -1).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("norm", ["FAN_IN", "FAN_OUT", "AVERAGE"])
def test_xavier_and_msra_scales(norm):
    shape = (100, 3, 4, 5)  # fan_in = 3*4*5 = 60, fan_out = count / shape[1] = 100*4*5
    n = {"FAN_IN": 60, "FAN_OUT": 2000, "AVERAGE": 1030}[norm]
    vn = caffe_pb2.FillerParameter.VarianceNorm.Value(norm)
    x = _blob(shape, type="xavier", variance_norm=vn)
    a = math.sqrt(3 / n)
    assert np.abs(x).max() <= a and abs(x.var() - a * a / 3) < 0.05 * a * a / 3
    m = _blob(shape, type="msra", variance_norm=vn)
    assert abs(m.std() - math.sqrt(2 / n)) < 0.03 * math.sqrt(2 / n)


class _ExtremeDraws:
    """A generator whose uniform draws are the extremes of [0, 1) in the requested dtype."""

    def random(self, out, dtype):
        one = np.dtype(dtype).type(1)
        out[...] = 0
        out[1::2] = np.nextafter(one, 0 * one)


@pytest.mark.parametrize("kw,bound", [(dict(type="xavier", variance_norm=caffe_pb2.FillerParameter.FAN_OUT),
                                       math.sqrt(3 / 2000)),
                                      (dict(type="uniform", min=-math.sqrt(0.1), max=math.sqrt(0.1)),
                                       math.sqrt(0.1))])
def test_uniform_draws_never_leave_the_interval_in_float32(monkeypatch, kw, bound):
    """float32(-sqrt(3/2000)) < -sqrt(3/2000): the extreme draws still land in [-a, a), as Caffe's [a, b)."""
    monkeypatch.setattr("caffelite.filler.rng", _ExtremeDraws)
    x = _blob((100, 3, 4, 5), **kw)
    assert x.min() >= -bound and x.max() < bound
    assert x.min() < -bound + 1e-7 and x.max() > bound - 1e-7  # the extremes were drawn


def test_bilinear_is_the_upsampling_kernel():
    x = _blob((2, 1, 4, 4), type="bilinear")
    t = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(x[0, 0], np.outer(t, t), rtol=1e-6)
    with pytest.raises(caffelite.LayerError, match="Filter must be square"):
        _blob((1, 1, 3, 4), type="bilinear")


def test_unknown_filler_and_sparse_misuse():
    with pytest.raises(caffelite.LayerError, match="Unknown filler name: foo"):
        _blob((2, 2), type="foo")
    with pytest.raises(caffelite.LayerError, match="Sparsity not supported"):
        _blob((2, 2), type="uniform", sparse=3)


def test_fillers_follow_the_random_seed():
    caffelite.set_random_seed(5)
    a = _blob((10,), type="gaussian")
    caffelite.set_random_seed(5)
    b = _blob((10,), type="gaussian")
    np.testing.assert_array_equal(a, b)
