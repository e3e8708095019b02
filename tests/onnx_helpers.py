"""Shared by the ONNX export tests: random He-scaled weights and the export/compare round trip."""

from __future__ import annotations

import numpy as np
import pytest

import caffelite

onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) is not installed")

import caffelite.onnx as conx  # noqa: E402,F401  (re-exported to the tests)
from caffelite.onnx.exporter import prepare_net, to_onnx  # noqa: E402
from caffelite.onnx.verify import compare, random_feeds, run_caffelite, run_onnxruntime  # noqa: E402


def _fill_normal(rng, out: np.ndarray, std: float) -> None:
    """Normal values into ``out``: a block of at most 2^16 draws, repeated (big blobs are filled in one pass)."""
    flat = out.reshape(-1)
    block = rng.standard_normal(min(flat.size, 1 << 16), dtype=np.float32) * np.float32(std)
    for start in range(0, flat.size, block.size):
        chunk = flat[start:start + block.size]
        chunk[...] = block[:chunk.size]


def randomize(net: caffelite.Net, seed: int = 0) -> caffelite.Net:
    """He-scaled random weights, so that activations stay finite and non-trivial through deep nets."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        t = layer.layer_param.type
        for i, blob in enumerate(layer.blobs):
            shape = blob.data.shape
            if t == "BatchNorm":
                value = [rng.normal(0, 0.2, shape), rng.uniform(0.5, 1.5, shape), np.ones(shape)][i]
            elif t in ("Scale", "PReLU") and i == 0 and len(layer.layer_param.bottom) == 1:
                value = rng.uniform(0.5, 1.5, shape) if t == "Scale" else rng.uniform(0, 0.5, shape)
            elif len(shape) >= 2 and t not in ("Embed", "Parameter"):
                fan_in = int(np.prod(shape[1:])) if t != "Deconvolution" else int(np.prod(shape[2:])) * shape[0]
                _fill_normal(rng, blob.data, np.sqrt(2.0 / max(fan_in, 1)))
                continue
            else:
                value = rng.normal(0, 0.1 if len(shape) <= 1 else 1.0, shape)
            blob.data[...] = value
    return net


def normalize_scale(net: caffelite.Net, seed: int = 0) -> caffelite.Net:
    """One forward on random inputs, rescaling each Convolution / Deconvolution / InnerProduct (weights and bias)
    so that its output has unit standard deviation (as LSUV initialisation does).

    Random residual nets otherwise grow their activations block after block, to logits of ~1e4 whose float32
    rounding (any runtime's summation order) moves a softmax by more than 1e-4."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.layer_param.type == "Input":
            for top in layer.layer_param.top:
                net.blobs[top].data[...] = rng.standard_normal(net.blobs[top].shape)
    for i, layer in enumerate(net.layers):
        net.forward_from_to(i, i)
        if layer.layer_param.type in ("Convolution", "Deconvolution", "InnerProduct") and layer.blobs:
            top = net.blobs[layer.layer_param.top[0]].data
            std = float(top.std())
            if std > 0:
                for blob in layer.blobs:
                    blob.data[...] /= std
                top /= std
    return net


def round_trip(exported, feeds=None, seed: int = 0):
    """Run the export in onnxruntime and caffelite on the same inputs: {output: Difference}."""
    feeds = feeds if feeds is not None else random_feeds(exported, seed)
    got = run_onnxruntime(exported.model, feeds, exported.outputs)
    ref = run_caffelite(exported.net, feeds, exported.outputs, exported.blobs)
    return {o: compare(o, got[o], ref[o]) for o in exported.outputs}, got, ref


def assert_close(diffs: dict, tolerance: float) -> None:
    bad = {o: (d.max_abs, d.max_rel) for o, d in diffs.items() if not d.max_rel <= tolerance}
    assert not bad, "outputs differ from caffelite's (max abs, max rel): %s" % bad


def softmax_bottoms(net: caffelite.Net) -> list[str]:
    """The inputs of the Softmax layers: random deep nets saturate their softmax to 0/1, so also compare these."""
    return [layer.layer_param.bottom[0] for layer in net.layers if layer.layer_param.type == "Softmax"]


def export_random(net_or_path, seed: int = 0, **kwargs):
    """Export with random He-scaled weights: build (data layers as inputs), randomize, export that net; the
    Softmax inputs are outputs too."""
    build = {k: kwargs.pop(k) for k in ("weights", "inputs", "phase", "stages", "level") if k in kwargs}
    prepared = prepare_net(net_or_path, **build)
    normalize_scale(randomize(prepared.net, seed), seed)
    return to_onnx(prepared, extra_outputs=softmax_bottoms(prepared.net), **kwargs)


_FORWARD_FIELDS_IGNORED = ("name", "param", "include", "exclude", "phase", "loss_weight", "propagate_down")


def fingerprint(net: caffelite.Net) -> str:
    """What the TEST forward of ``net`` computes, in a hash: each layer's type, blobs, shapes and parameter
    fields, without names, learning-rate specs, rules or fillers (weights are random in these tests)."""
    import hashlib

    from caffelite.proto import caffe_pb2

    h = hashlib.sha256()
    for layer in net.layers:
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(layer.layer_param)
        for name in _FORWARD_FIELDS_IGNORED:
            lp.ClearField(name)
        for descriptor, value in lp.ListFields():
            if descriptor.message_type is not None and not descriptor.is_repeated:
                for filler in ("weight_filler", "bias_filler", "filler"):
                    if filler in value.DESCRIPTOR.fields_by_name:
                        value.ClearField(filler)
        h.update(lp.SerializeToString(deterministic=True))
        h.update(repr([tuple(net.blobs[t].shape) for t in lp.top if t in net.blobs]).encode())
        h.update(repr([tuple(b.shape) for b in layer.blobs]).encode())
    return h.hexdigest()
