"""The speed paths give the numbers of the plain ones: threads with a one-thread BLAS, scratch reuse, blocks."""

import itertools

import numpy as np
import pytest

import caffelite.compute.parallel as common
import caffelite.compute.parallel as parallel
import caffelite.layers.vision as vision
from caffelite.blob import Blob
from caffelite.compute.im2col import Workspace
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer

GAUSS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" }'


def step(spec, x, seed=0, backward_twice=True):
    """Forward + backward (twice: parameter diffs accumulate) in float64; all outputs and gradients."""
    layer = make_layer(spec, caffe_pb2.TRAIN)
    bottom, top = [Blob(data=x, dtype=np.float64)], [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    rng = np.random.default_rng(seed)
    for b in layer.blobs:
        b.astype(np.float64)
        b.data[...] = rng.normal(size=b.shape)
    layer.run_forward(bottom, top)
    top[0].diff[...] = rng.normal(size=top[0].shape)
    for _ in range(2 if backward_twice else 1):
        layer.run_backward(top, [True], bottom)
    return [top[0].data.copy(), bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs]


@pytest.mark.parametrize("params", ["num_output: 4 kernel_size: 3 pad: 1 group: 2",
                                    "num_output: 3 kernel_size: 3 stride: 2",
                                    "num_output: 6 kernel_size: 3 pad: 2"])
def test_convolution_chunk_threads_with_switched_blas(params, monkeypatch):
    spec = 'type: "Convolution" convolution_param { %s %s }' % (params, GAUSS)
    x = np.random.default_rng(1).normal(size=(6, 4, 7, 8))
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1)
    monkeypatch.setattr(parallel, "CHUNK_THREADS", False)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1 << 40)
    want = step(spec, x)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)  # now in threads, the BLAS switched to one thread
    monkeypatch.setattr(parallel, "WORKERS", 3)
    got = step(spec, x)
    again = step(spec, x)  # the scratch arrays of the first run are reused
    for a, b, c in zip(want, got, again):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(c, b)


def test_single_threaded_blas_restores_the_thread_count(monkeypatch):
    monkeypatch.setattr(parallel, "CHUNK_THREADS", False)
    monkeypatch.setattr(parallel, "WORKERS", 2)
    if parallel._BLAS is None:
        with parallel.single_threaded_blas() as threads:
            assert threads is False
        return
    get, _ = parallel._BLAS
    before = get()
    with parallel.single_threaded_blas() as threads:
        assert threads is True
        assert get() == 1
    assert get() == before


@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_blocks_and_threads(transpose, monkeypatch):
    spec = ('type: "InnerProduct" inner_product_param { num_output: 37 transpose: %s %s }'
            % ("true" if transpose else "false", GAUSS))
    x = np.random.default_rng(2).normal(size=(9, 3, 5, 5))
    monkeypatch.setattr(common, "THREADED_MIN", 1 << 60)
    want = step(spec, x)
    monkeypatch.setattr(common, "THREADED_MIN", 0)
    monkeypatch.setattr(common, "ADD_BLOCK_BYTES", 8 * 5 * 8)  # 5-row blocks of the weight gradient
    monkeypatch.setattr(parallel, "WORKERS", 3)
    for a, b in zip(want, step(spec, x)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_workspace_shares_plain_scratch_and_keeps_zero_arrays_apart():
    a, b = Workspace(), Workspace()
    x = a.get("t.scratch", (4, 5), np.float64)
    y = b.get("t.scratch", (2, 3), np.float64)
    assert np.shares_memory(x, y)  # one array for both: layers run one after the other
    assert b.get("t.scratch", (4, 6), np.float64).shape == (4, 6)  # grows when needed
    z = a.get("t.zeros", (3, 3), np.float64, zeros=True)
    assert not z.any()
    z[...] = 1
    assert not b.get("t.zeros", (3, 3), np.float64, zeros=True).any()
    assert a.get("t.zeros", (3, 3), np.float64, zeros=True) is z


@pytest.mark.parametrize("num_output,size", [(3, 6), (16, 3)])  # long images: (X dY^T)^T; many outputs: dY X^T
def test_convolution_weight_gradient_both_products(num_output, size):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, size, size))
    layer = make_layer('type: "Convolution" convolution_param { num_output: %d kernel_size: 3 pad: 1 %s }'
                       % (num_output, GAUSS), caffe_pb2.TRAIN)
    bottom, top = [Blob(data=x, dtype=np.float64)], [Blob(dtype=np.float64)]
    layer.run_setup(bottom, top)
    for b in layer.blobs:
        b.astype(np.float64)
    layer.run_forward(bottom, top)
    dy = rng.normal(size=top[0].shape)
    top[0].diff[...] = dy
    layer.run_backward(top, [True], bottom)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((num_output, 5, 3, 3))
    for i, j in itertools.product(range(3), range(3)):
        want[:, :, i, j] = np.einsum("noyx,ncyx->oc", dy, xp[:, :, i:i + size, j:j + size])
    np.testing.assert_allclose(layer.blobs[0].diff, want, rtol=1e-10, atol=1e-12)


def test_forward_and_backward_chunks_are_tuned_apart(monkeypatch):
    """Forward and backward image chunks each keep their own tuner: one shared tuner alternated the two
    passes (the backward ran serial while tuning) and compared forward times against backward times."""
    spec = 'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 %s }' % GAUSS
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1)
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(parallel, "WORKERS", 2)
    layer = make_layer(spec, caffe_pb2.TRAIN)
    bottom, top = [Blob(data=np.random.default_rng(2).normal(size=(4, 3, 6, 6)))], [Blob()]
    layer.run_setup(bottom, top)
    assert len(layer.chunks) > 1
    for _ in range(3):
        layer.run_forward(bottom, top)
    top[0].diff[...] = 1
    for _ in range(5):
        layer.run_backward(top, [True], bottom)
    fwd, bwd = layer.tuners["forward"], layer.tuners["backward"]
    assert fwd is not bwd
    assert (fwd.calls, bwd.calls) == (3, 5)
