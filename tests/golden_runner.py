"""Run one golden case (computed by BVLC Caffe) through caffelite's pycaffe-compatible API.

The same procedure as ../shared/tools/golden_check.py, so the project's tests and the shared
checker agree on what "matches" means.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

import numpy as np

import caffelite

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def tolerance_ok(ref: np.ndarray, got: np.ndarray) -> str | None:
    got = np.asarray(got)
    if got.shape != ref.shape and got.size == ref.size == 1:
        got = got.reshape(ref.shape)
    if got.shape != ref.shape:
        return "shape %s, Caffe %s" % (got.shape, ref.shape)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    if not np.allclose(got, ref, rtol=1e-4, atol=1e-5 * scale, equal_nan=True):
        return "max abs err %.3g (scale %.3g)" % (float(np.max(np.abs(got.astype(np.float64) - ref))), scale)
    return None


@contextmanager
def in_case_folder(folder: str):
    """Data sources and Python-layer modules are relative to the case folder, as in Caffe."""
    cwd = os.getcwd()
    os.chdir(folder)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(folder)


def case_names(kind: str = "layers", runnable: bool = True) -> list[str]:
    root = os.path.join(GOLDEN, kind)
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "case.json")))
    if runnable:
        names = [n for n in names if os.path.exists(os.path.join(root, n, "arrays.npz"))]
    return names


def run_layer_case(folder: str) -> list[str]:
    """Every mismatch between caffelite and Caffe for the case in ``folder`` (empty: all match)."""
    meta = read_json(os.path.join(folder, "case.json"))
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        ref = dict(z)
    with in_case_folder(folder):
        proto = os.path.join(folder, "net.prototxt")
        weights = os.path.join(folder, "weights.caffemodel")
        phase = caffelite.TRAIN if meta["phase"] == "TRAIN" else caffelite.TEST
        net = caffelite.Net(proto, weights, phase) if os.path.exists(weights) else caffelite.Net(proto, phase)
        for k, v in ref.items():
            if k.startswith("in/"):
                net.blobs[k[3:]].reshape(*v.shape)
                net.blobs[k[3:]].data[...] = v
        names = [k[4:] for k in ref if k.startswith("fwd/")]
        got = {}
        for i in range(meta.get("forwards", 1) - 1):
            net.forward()
            got.update({"fwd%d/%s" % (i, n): net.blobs[n].data.copy() for n in names if n in net.blobs})
        net.forward()
        got.update({"fwd/" + n: net.blobs[n].data.copy() for n in names if n in net.blobs})
        if meta.get("backward", True):
            for k, v in ref.items():
                if k.startswith("topdiff/"):
                    net.blobs[k[8:]].diff[...] = v
            net.backward()
            for n in names:
                if n in net.blobs:
                    got["bwd/" + n] = net.blobs[n].diff.copy()
            for lname, blobs in net.params.items():
                for i, b in enumerate(blobs):
                    got["param/%s/%d/data" % (lname, i)] = b.data.copy()
                    got["param/%s/%d/diff" % (lname, i)] = b.diff.copy()
    bad = []
    for k, r in ref.items():
        if k.startswith(("in/", "topdiff/")):
            continue
        if k not in got:
            bad.append("%s: missing" % k)
            continue
        err = tolerance_ok(r, got[k])
        if err:
            bad.append("%s: %s" % (k, err))
    return bad
