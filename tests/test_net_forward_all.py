"""Net's pycaffe batch helpers (forward_all, forward_backward_all, _batch) on a small net."""

from __future__ import annotations

import numpy as np
import pytest

import caffelite
from caffelite.errors import ShapeError

DEPLOY = """name: 'tiny' force_backward: true
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 4 dim: 3 } } }
layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'
  inner_product_param { num_output: 2 weight_filler { type: 'gaussian' std: 1 }
                        bias_filler { type: 'constant' value: 0.5 } } }
layer { name: 'relu' type: 'ReLU' bottom: 'ip' top: 'relu' }
"""


@pytest.fixture()
def net(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(DEPLOY)
    caffelite.set_random_seed(3)
    return caffelite.Net(str(path), caffelite.TEST)


def _reference(net, x):
    w, b = net.params["ip"][0].data, net.params["ip"][1].data
    ip = x @ w.T + b
    return ip, np.maximum(ip, 0)


def test_batch_pads_the_last_batch_with_zeros(net):
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    batches = list(net._batch({"data": x}))
    assert [b["data"].shape for b in batches] == [(4, 3), (4, 3), (4, 3)]
    np.testing.assert_array_equal(batches[0]["data"], x[:4])
    np.testing.assert_array_equal(batches[1]["data"], x[4:8])
    np.testing.assert_array_equal(batches[2]["data"][:2], x[8:])
    np.testing.assert_array_equal(batches[2]["data"][2:], 0)


def test_batch_exact_multiple_has_no_padding(net):
    x = np.ones((8, 3))
    assert [len(b["data"]) for b in net._batch({"data": x})] == [4, 4]


def test_batch_unequal_lengths_is_an_error(net):
    with pytest.raises(ShapeError, match="differ in length"):
        list(net._batch({"a": np.ones((4, 3)), "b": np.ones((5, 3))}))


@pytest.mark.parametrize("n", [1, 4, 7, 9])
def test_forward_all_matches_numpy(net, n):
    x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    out = net.forward_all(data=x)
    assert set(out) == {"relu"}
    ip, relu = _reference(net, x)
    assert out["relu"].shape == (n, 2)
    np.testing.assert_allclose(out["relu"], relu, rtol=1e-5, atol=1e-6)


def test_forward_all_extra_blobs_and_copies(net):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    out = net.forward_all(blobs=["ip"], data=x)
    assert set(out) == {"relu", "ip"}
    ip, _ = _reference(net, x)
    np.testing.assert_allclose(out["ip"], ip, rtol=1e-5, atol=1e-6)
    # results are copies: a later forward does not change them
    kept = out["ip"].copy()
    net.forward(data=np.zeros((4, 3), dtype=np.float32))
    np.testing.assert_array_equal(out["ip"], kept)


def test_forward_all_without_inputs_runs_once(net):
    net.blobs["data"].data[...] = 1.0
    out = net.forward_all()
    _, relu = _reference(net, np.ones((4, 3), dtype=np.float32))
    np.testing.assert_allclose(out["relu"], relu, rtol=1e-5, atol=1e-6)


def test_forward_backward_all_matches_numpy(net):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    g = rng.normal(size=(6, 2)).astype(np.float32)
    outs, diffs = net.forward_backward_all(blobs=["ip"], diffs=["ip"], data=x, relu=g)
    assert set(outs) == {"relu", "ip"} and set(diffs) == {"data", "ip"}
    ip, relu = _reference(net, x)
    np.testing.assert_allclose(outs["relu"], relu, rtol=1e-5, atol=1e-6)
    gip = g * (ip > 0)
    np.testing.assert_allclose(diffs["ip"], gip, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(diffs["data"], gip @ net.params["ip"][0].data, rtol=1e-5, atol=1e-5)
    assert outs["ip"].shape == (6, 2) and diffs["data"].shape == (6, 3)


def test_forward_backward_all_forward_only_inputs(net):
    # without output diffs, backward uses whatever diff the outputs hold (zero here)
    x = np.ones((5, 3), dtype=np.float32)
    net.blobs["relu"].diff[...] = 0
    outs, diffs = net.forward_backward_all(data=x)
    assert outs["relu"].shape == (5, 2)
    np.testing.assert_array_equal(diffs["data"], 0)
