"""SoftmaxWithLoss on inputs big enough to be split across worker threads equals plain NumPy."""

import numpy as np
import pytest

import caffelite
from caffelite.compute import parallel


def reference(x, labels, ignore, normalization_count):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    valid = labels != ignore
    idx = np.where(valid, labels, 0).astype(int)
    n, _, h, w = x.shape
    picked = p[np.arange(n)[:, None, None], idx, np.arange(h)[None, :, None], np.arange(w)[None, None, :]]
    loss = -np.log(np.maximum(picked, np.finfo(np.float32).tiny))[valid].sum() / normalization_count(valid)
    grad = p.copy()
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, idx[:, None], 1, axis=1)
    grad = (grad - onehot) * valid[:, None] / normalization_count(valid)
    return loss, p, grad


@pytest.mark.parametrize("shape", [(1, 5, 300, 300), (3000, 7, 1, 20)])  # split by positions / by images
@pytest.mark.parametrize("two_tops", [False, True])
def test_threaded_softmax_loss_matches_numpy(tmp_path, shape, two_tops):
    n, c, h, w = shape
    assert len(parallel.batch_parts(max(n, h * w), n * c * h * w)) > 1 or parallel.WORKERS < 2
    tops = 'top: "loss" top: "prob"' if two_tops else 'top: "loss"'
    path = tmp_path / "net.prototxt"
    path.write_text("""force_backward: true
    layer { name: "x" type: "Input" top: "x" input_param { shape { dim: %d dim: %d dim: %d dim: %d } } }
    layer { name: "l" type: "Input" top: "l" input_param { shape { dim: %d dim: %d dim: %d } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "l" %s loss_param { ignore_label: 255 } }
    """ % (n, c, h, w, n, h, w, tops))
    net = caffelite.Net(str(path), caffelite.TRAIN)
    rng = np.random.default_rng(7)
    x = rng.normal(scale=3, size=shape).astype(np.float32)
    labels = rng.integers(0, c, size=(n, h, w)).astype(np.float32)
    labels[rng.random(labels.shape) < 0.2] = 255
    net.blobs["x"].data[...] = x
    net.blobs["l"].data[...] = labels
    out = net.forward()
    net.backward()
    loss, p, grad = reference(x.astype(np.float64), labels, 255, lambda valid: max(1, valid.sum()))
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(net.blobs["x"].diff, grad, rtol=1e-4, atol=1e-9)
    if two_tops:
        np.testing.assert_allclose(out["prob"], p, rtol=1e-5, atol=1e-8)
