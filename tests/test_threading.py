"""The threading policy (caffelite/compute/parallel.py): thread count, one-thread BLAS scope, fixed tiles,
the tuner's choice, and the batch-1 paths (tiles in threads, depthwise stencil) against plain NumPy."""

import argparse

import numpy as np
import pytest
from google.protobuf import text_format

import caffelite
import caffelite.layers.vision as vision
from caffelite import cli
from caffelite.blob import Blob
from caffelite.compute import depthwise, parallel
from caffelite.layers.vision import convolution_reference
from caffelite.proto import caffe_pb2
from caffelite.testing import make_layer


@pytest.fixture
def restore_threads():
    saved = parallel.get_num_threads()
    yield
    parallel.set_num_threads(saved)


def test_set_num_threads(restore_threads):
    caffelite.set_num_threads(3)
    assert caffelite.get_num_threads() == 3
    caffelite.set_num_threads(1)
    assert not parallel._threads_allowed()
    with pytest.raises(ValueError):
        caffelite.set_num_threads(0)


@pytest.mark.parametrize("env, want", [({"OMP_NUM_THREADS": "3"}, 3), ({"OPENBLAS_NUM_THREADS": "1"}, 1),
                                       ({"OMP_NUM_THREADS": "4,2"}, 4), ({"MKL_NUM_THREADS": "2"}, 2),
                                       ({"OMP_NUM_THREADS": "x"}, None), ({}, None)])
def test_thread_count_from_the_environment(env, want, monkeypatch):
    for var in parallel._ENV_THREADS:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parallel._env_threads() == want


def test_cli_threads_before_or_after_the_command(restore_threads):
    parser = cli.build_parser()
    assert parser.parse_args(["--threads", "2", "time", "--model", "m.prototxt"]).threads == 2
    assert parser.parse_args(["time", "--model", "m.prototxt", "--threads", "3"]).threads == 3
    assert parser.parse_args(["time", "--model", "m.prototxt"]).threads is None
    with pytest.raises(SystemExit):
        cli.main(["--threads", "0", "time", "--model", "m.prototxt"])
    assert cli.caffe_style_argv(["-threads", "2"]) == ["--threads", "2"]
    assert isinstance(parser, argparse.ArgumentParser)


def test_single_threaded_blas_is_reentrant(monkeypatch):
    monkeypatch.setattr(parallel, "WORKERS", 2)
    if parallel._BLAS is None:
        pytest.skip("threadpoolctl or a BLAS it knows is missing")
    get, set_ = parallel._BLAS
    before = get()
    set_(2)
    try:
        with parallel.single_threaded_blas() as outer:
            assert outer and get() == 1
            with parallel.single_threaded_blas() as inner:
                assert inner and get() == 1
            assert get() == 1  # the inner scope leaves the switch to the outer one
        assert get() == 2
    finally:
        set_(before)


@pytest.mark.parametrize("m, k, n", [(1, 9216, 4096), (512, 4608, 49), (64, 576, 3136), (3, 5, 7), (7, 1 << 20, 2)])
def test_tiles_cover_the_product_once(m, k, n):
    cover = np.zeros((m, n), int)
    parts = parallel.tiles(m, k, n)
    assert 1 <= len(parts) <= parallel.MAX_TILES
    for rows, cols in parts:
        cover[rows, cols] += 1
    assert (cover == 1).all()
    if m * k * n >= 2 * parallel.TILE_MIN and max(m, n) > 1:
        assert len(parts) > 1


def test_tuner_picks_the_faster_way_and_rechecks():
    tuner = parallel.Tuner()
    cost = {False: 1.0, True: 3.0}  # threads slower (a busy machine)
    seen = []
    for _ in range(200):
        threaded = tuner.threaded()
        seen.append(threaded)
        tuner.record(threaded, cost[threaded])
    assert tuner.choice is False
    assert 3 <= sum(seen[1:]) <= 20  # trials, then re-checks at growing intervals
    cost = {False: 1.0, True: 0.4}  # the machine is quiet again
    for _ in range(1200):
        threaded = tuner.threaded()
        tuner.record(threaded, cost[threaded])
    assert tuner.choice is True


def conv_layer(params, x, dtype=np.float64, seed=0):
    layer = make_layer('type: "Convolution" convolution_param { %s weight_filler { type: "gaussian" } '
                       'bias_filler { type: "gaussian" } }' % params, caffe_pb2.TEST)
    bottom, top = [Blob(data=x, dtype=dtype)], [Blob(dtype=dtype)]
    layer.run_setup(bottom, top)
    rng = np.random.default_rng(seed)
    for b in layer.blobs:
        b.astype(dtype)
        b.data[...] = rng.normal(size=b.shape)
    return layer, bottom, top


def forward_both_ways(params, x, monkeypatch, dtype=np.float64):
    """Top of a conv layer run serially (one thread) and with every part in threads (4 calls each)."""
    outs = []
    for workers, allow in ((1, False), (3, True)):
        monkeypatch.setattr(parallel, "WORKERS", workers)
        monkeypatch.setattr(parallel, "CHUNK_THREADS", allow)
        layer, bottom, top = conv_layer(params, x, dtype)
        for _ in range(4):  # through the tuner's trials: both ways are used
            layer.run_forward(bottom, top)
        outs.append(top[0].data.copy())
    return layer, outs


def test_caller_and_workers_share_the_parts(restore_threads):
    """map_parts in threads: every part once, results in part order, parts run serially inside (no nested
    hand-offs, in the caller too), and a part's exception reaches the caller after the other parts end."""
    import threading
    caffelite.set_num_threads(2)
    ran, inner = [], []

    def part(i):
        ran.append((i, threading.get_ident()))
        inner.append(parallel._threads_allowed())
        return i * i
    with parallel.single_threaded_blas():
        assert parallel._threads_allowed()
        assert parallel.map_parts(part, list(range(9))) == [i * i for i in range(9)]
        assert parallel._threads_allowed()  # the caller's own flag is back
    assert sorted(i for i, _ in ran) == list(range(9)) and not any(inner)

    def failing(i):
        if i == 3:
            raise ValueError("part 3")
        return i
    with parallel.single_threaded_blas(), pytest.raises(ValueError, match="part 3"):
        parallel.map_parts(failing, list(range(6)))


@pytest.mark.parametrize("params", ["num_output: 7 kernel_size: 3 pad: 1", "num_output: 5 kernel_size: 1",
                                    "num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2",
                                    "num_output: 4 kernel_size: 2 dilation: 2"])
def test_batch1_tiles_in_threads_give_identical_numbers(params, monkeypatch):
    monkeypatch.setattr(parallel, "TILE_MIN", 16)  # many tiles even for these small shapes
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    x = np.random.default_rng(1).normal(size=(1, 4, 9, 11))
    layer, (serial, threaded) = forward_both_ways(params, x, monkeypatch)
    np.testing.assert_array_equal(serial, threaded)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    g = layer.geom
    want = convolution_reference(x, w, b, g.stride, g.pad, g.dilation, layer.group)
    np.testing.assert_allclose(serial, want, rtol=1e-10, atol=1e-10)


DEPTHWISE = [((1, 5, 9, 11), "kernel_size: 3 pad: 1"), ((2, 3, 8, 7), "kernel_size: 3 stride: 2 pad: 1"),
             ((1, 4, 10, 9), "kernel_size: 3 dilation: 2 pad: 2"), ((1, 6, 7, 8), "kernel_h: 2 kernel_w: 5 pad_w: 2"),
             ((3, 2, 5, 6), "kernel_size: 3"), ((1, 3, 13), "kernel_size: 4 stride: 3 pad: 1"),
             ((1, 3, 10, 11), "kernel_size: 3 stride: 4"),
             ((2, 4, 9, 9), "kernel_size: 3 stride: 3 pad: 2 dilation: 2"),
             ((1, 2, 3, 3), "kernel_size: 5 pad: 2 stride: 2"),
             ((1, 2, 4, 5, 6), "kernel_size: 3 pad: 1 bias_term: false"),
             ((1, 24, 5, 4), "kernel_size: 3 pad: 1"), ((2, 17, 6, 7), "kernel_size: 3 stride: 2 pad: 1"),
             ((1, 9, 5, 5), "kernel_size: 3 bias_term: false")]


@pytest.mark.parametrize("layout", ["planes", "channels last"])
@pytest.mark.parametrize("shape, params", DEPTHWISE)
def test_depthwise_stencil_matches_the_reference(shape, params, layout, monkeypatch):
    monkeypatch.setattr(parallel, "TILE_MIN", 16)
    monkeypatch.setattr(depthwise, "CHANNELS_LAST_RUN", 0 if layout == "planes" else 1 << 30)
    c = shape[1]
    x = np.random.default_rng(2).normal(size=shape)
    spec = "num_output: %d group: %d %s" % (c, c, params)
    layer, (serial, threaded) = forward_both_ways(spec, x, monkeypatch)
    assert layer.depthwise
    np.testing.assert_array_equal(serial, threaded)
    g = layer.geom
    b = layer.blobs[1].data if layer.bias_term else None
    want = convolution_reference(x, layer.blobs[0].data, b, g.stride, g.pad, g.dilation, c)
    np.testing.assert_allclose(serial, want, rtol=1e-12, atol=1e-12)


def test_depthwise_float32_close_to_the_group_products(monkeypatch):
    x = np.random.default_rng(3).normal(size=(1, 16, 15, 15)).astype(np.float32)
    layer, bottom, top = conv_layer("num_output: 16 group: 16 kernel_size: 3 pad: 1", x, np.float32)
    layer.run_forward(bottom, top)
    fast = top[0].data.copy()
    monkeypatch.setattr(layer, "depthwise", False)
    layer.run_forward(bottom, top)
    np.testing.assert_allclose(fast, top[0].data, rtol=1e-5, atol=1e-5)


def test_net_outputs_do_not_depend_on_the_thread_count(restore_threads, monkeypatch):
    monkeypatch.setattr(parallel, "TILE_MIN", 64)
    monkeypatch.setattr(vision, "CHUNK_BYTES", 1)
    monkeypatch.setattr(vision, "BAND_BYTES", 256)
    monkeypatch.setattr(vision, "EXACT_MAX_BYTES", 256)
    proto = """
    input: "data" input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }
    layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
            convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
    layer { name: "dw" type: "Convolution" bottom: "c1" top: "dw"
            convolution_param { num_output: 8 group: 8 kernel_size: 3 stride: 2 weight_filler { type: "msra" } } }
    layer { name: "pw" type: "Convolution" bottom: "dw" top: "pw"
            convolution_param { num_output: 6 kernel_size: 1 weight_filler { type: "msra" } } }
    layer { name: "fc" type: "InnerProduct" bottom: "pw" top: "fc"
            inner_product_param { num_output: 5 weight_filler { type: "gaussian" } } }
    """
    x = np.random.default_rng(4).normal(size=(1, 3, 12, 12)).astype(np.float32)
    outs = []
    for n in (1, 3):
        caffelite.set_random_seed(5)
        caffelite.set_num_threads(n)
        monkeypatch.setattr(parallel, "CHUNK_THREADS", True)
        net = caffelite.Net(text_format.Parse(proto, caffe_pb2.NetParameter()), caffelite.TEST)
        for _ in range(5):
            out = net.forward(data=x)["fc"].copy()
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("shape, params", [((1, 3, 9, 11), "num_output: 4 kernel_size: 3 pad: 1"),
                                           ((2, 2, 8, 7), "num_output: 3 kernel_size: 3 dilation: 2 pad: 1"),
                                           ((1, 4, 6, 5), "num_output: 6 kernel_size: 2 group: 2"),
                                           ((1, 2, 5, 4, 6), "num_output: 3 kernel_size: 3 pad: 1")])
@pytest.mark.parametrize("chunk_bytes", [1, 200])  # a band per output row, or a few rows
def test_forward_in_bands_of_output_rows_matches_the_reference(shape, params, chunk_bytes, monkeypatch):
    monkeypatch.setattr(vision, "BAND_BYTES", chunk_bytes)
    monkeypatch.setattr(vision, "EXACT_MAX_BYTES", chunk_bytes)  # too big for exact columns: wide, in bands
    x = np.random.default_rng(6).normal(size=shape)
    layer, bottom, top = conv_layer(params, x)
    assert layer.bands is not None and len(layer.bands) > 1
    layer.run_forward(bottom, top)
    g = layer.geom
    want = convolution_reference(x, layer.blobs[0].data, layer.blobs[1].data, g.stride, g.pad, g.dilation, layer.group)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)



ELEMENTWISE = [('type: "ReLU"', 1, False), ('type: "ReLU" relu_param { negative_slope: 0.1 }', 1, True),
               ('type: "BatchNorm" batch_norm_param { use_global_stats: true }', 1, True),
               ('type: "Scale" scale_param { bias_term: true }', 1, True), ('type: "Scale"', 2, False),
               ('type: "Eltwise"', 2, False),
               ('type: "Eltwise" eltwise_param { coeff: 0.5 coeff: -2 coeff: 1 }', 3, False),
               ('type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride: 1 }', 1, False),
               ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 }', 1, False),
               ('type: "LRN" lrn_param { local_size: 3 alpha: 0.5 norm_region: WITHIN_CHANNEL }', 1, False)]


@pytest.mark.parametrize("spec, bottoms, in_place", ELEMENTWISE)
def test_elementwise_parts_in_threads_give_identical_numbers(spec, bottoms, in_place, monkeypatch):
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(bottoms)]
    if "Scale" in spec and bottoms == 2:
        xs[1] = rng.normal(size=(5,)).astype(np.float32)
    outs = []
    for workers, part_min in ((1, 1 << 40), (1, 8), (3, 8)):  # one part; parts serially; parts in threads
        monkeypatch.setattr(parallel, "WORKERS", workers)
        monkeypatch.setattr(parallel, "CHUNK_THREADS", True)
        monkeypatch.setattr(parallel, "ELEMENTWISE_MIN", part_min)
        layer = make_layer(spec, caffe_pb2.TEST)
        bottom = [Blob(data=x.copy()) for x in xs]
        top = bottom[:1] if in_place else [Blob()]
        layer.run_setup(bottom, top)
        layer.need_backward = False
        prng = np.random.default_rng(8)  # the same parameters for both layers
        for b in layer.blobs:
            b.data[...] = np.abs(prng.normal(size=b.shape)) + 0.5
        runs = []
        for _ in range(4):  # through the tuner's trials: both ways when there are threads
            for b, x in zip(bottom, xs):
                b.data[...] = x
            layer.run_forward(bottom, top)
            runs.append(top[0].data.copy())
        for r in runs[1:]:
            np.testing.assert_array_equal(r, runs[0])
        outs.append(runs[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_blas_runs_one_thread_during_a_net_pass_and_gets_its_count_back(restore_threads, monkeypatch):
    if parallel._BLAS is None:
        pytest.skip("threadpoolctl or a BLAS it knows is missing")
    from caffelite.layers.neuron import ReLULayer
    get, set_ = parallel._BLAS
    seen, forward = [], ReLULayer.forward

    def spy(self, bottom, top):
        seen.append((get(), parallel._scope["depth"]))
        forward(self, bottom, top)
    monkeypatch.setattr(ReLULayer, "forward", spy)
    caffelite.set_num_threads(2)
    before = get()
    set_(2)
    try:
        net = caffelite.Net(text_format.Parse("""
            input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
            layer { name: "r1" type: "ReLU" bottom: "data" top: "a" }
            layer { name: "r2" type: "ReLU" bottom: "a" top: "b" }""", caffe_pb2.NetParameter()), caffelite.TEST)
        net.forward(data=np.ones((1, 2, 3, 3), np.float32))
        assert seen == [(1, 2), (1, 2)]  # the net's scope and the layer's: one switch for the pass
        assert get() == 2
    finally:
        set_(before)
