"""Run an exported model in onnxruntime and the same inputs through caffelite; report the differences.

The relative difference of an output is :math:`\\max |y_{onnx} - y_{caffe}| / \\max |y_{caffe}|`: the error
measured against the output's own scale, so that values near 0 do not make it meaningless.  NaN must
match NaN at the same places.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caffelite.errors import MissingDependencyError

TOLERANCE = 1e-4


@dataclass
class Difference:
    """How far one output of the ONNX model is from caffelite's."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float

    def ok(self, tolerance: float = TOLERANCE) -> bool:
        return self.max_rel <= tolerance


def compare(name: str, got: np.ndarray, ref: np.ndarray) -> Difference:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return Difference(name, tuple(ref.shape), float("inf"), float("inf"))
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    if np.any(nan_got != nan_ref):
        return Difference(name, ref.shape, float("inf"), float("inf"))
    keep = ~nan_ref
    if not np.any(keep):
        return Difference(name, ref.shape, 0.0, 0.0)
    same = got[keep] == ref[keep]  # equal infinities are equal
    diff = np.where(same, 0.0, np.abs(got[keep] - ref[keep]))
    finite = np.abs(ref[keep][np.isfinite(ref[keep])])
    scale = float(finite.max()) if finite.size else 0.0
    max_abs = float(diff.max())
    return Difference(name, ref.shape, max_abs, max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf))


def random_feeds(exported, seed: int = 0) -> dict:
    """Standard normal inputs of the declared shapes; integer indices for Embed and BatchReindex inputs."""
    rng = np.random.default_rng(seed)
    feeds = {n: rng.standard_normal(shape).astype(np.float32) for n, shape in exported.inputs.items()}
    for layer in exported.net.layers:
        lp = layer.layer_param
        if lp.type == "Embed" and lp.bottom[0] in feeds:
            high = lp.embed_param.input_dim
            feeds[lp.bottom[0]] = rng.integers(0, high, exported.inputs[lp.bottom[0]]).astype(np.float32)
        if lp.type == "BatchReindex" and lp.bottom[1] in feeds:
            high = exported.net.blobs[lp.bottom[0]].shape[0]
            feeds[lp.bottom[1]] = rng.integers(0, high, exported.inputs[lp.bottom[1]]).astype(np.float32)
    return feeds


def run_onnxruntime(model_or_path, feeds: dict, outputs=None) -> dict:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingDependencyError("verifying an ONNX export needs onnxruntime: pip install onnxruntime") from e
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = outputs or [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def run_caffelite(net, feeds: dict, outputs, blobs=None) -> dict:
    """caffelite's forward on ``feeds``: {output: array}, reading blob ``blobs.get(output, output)``."""
    for layer in net.layers:  # recurrent layers carry their state between passes: the export starts from 0
        if hasattr(layer, "reset"):
            layer.reset()
    for name, value in feeds.items():
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value
    net.forward()
    blobs = blobs or {}
    return {o: net.blobs[blobs.get(o, o)].data.copy() for o in outputs}


def verify(exported, feeds: dict | None = None, seed: int = 0, model_path: str | None = None) -> list[Difference]:
    """Check the model (``onnx.checker``, full check) and compare onnxruntime's outputs with caffelite's.

    ``feeds`` maps input names to arrays (default: :func:`random_feeds`).  ``model_path``: the saved
    file, used instead of the in-memory model (needed beyond 2 GB).
    """
    from caffelite.onnx.exporter import require_onnx

    onnx = require_onnx()
    onnx.checker.check_model(model_path or exported.model, full_check=True)
    feeds = {k: np.asarray(v, np.float32) for k, v in (feeds or random_feeds(exported, seed)).items()}
    got = run_onnxruntime(model_path or exported.model, feeds, exported.outputs)
    ref = run_caffelite(exported.net, feeds, exported.outputs, exported.blobs)
    return [compare(o, got[o], ref[o]) for o in exported.outputs]
