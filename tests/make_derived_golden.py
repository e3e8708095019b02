"""Write the derived golden cases: nets whose expected numbers follow from BVLC Caffe's code.

Not recorded by a Caffe run: each expectation is computed here in plain NumPy from what Caffe's
code does, and every case is tagged ``derived`` in its case.json.  The rules used:

- net.cpp Net::Init / AppendTop: a layer with AutoTopBlobs() and fewer tops than it needs (a loss
  layer with no ``top``, as in V0/V1 nets) gets a blob named ``(automatic)``, pushed to blobs_ and
  blob_names_ but not to available_blobs, so it is never a net output.  pycaffe's ``net.blobs`` is
  ``OrderedDict(zip(_blob_names, _blobs))`` (several ``(automatic)`` collapse to one key, at the
  first one's place, holding the last blob) and ``net.outputs`` is
  ``[list(blobs.keys())[i] for i in _outputs]``.  The loss top's diff is its loss weight.
- reshape_layer.cpp, flatten_layer.cpp, concat_layer.cpp (one bottom), slice_layer.cpp (one top):
  ``top->ShareData(*bottom); top->ShareDiff(*bottom)`` and no work in Forward/Backward, so the
  names view one buffer: an in-place layer on either name changes what both show, data and diff.
  The real golden cases reshape_axes and flatten_axis2 (recorded from Caffe) show the same:
  bwd/<top> and bwd/<bottom> are one array.

Run from the project root: ``.venv/bin/python tests/make_derived_golden.py`` (rewrites the cases).
"""

from __future__ import annotations

import json
import os

import numpy as np

from caffelite.proto import caffe_pb2

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "layers")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax_loss(x, label):
    """SoftmaxWithLoss over axis 1, VALID normalization: (loss, dloss/dx)."""
    z = x - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = x.shape[0]
    idx = label.reshape(n).astype(int)
    loss = -np.log(np.maximum(p[np.arange(n), idx], np.finfo(np.float32).tiny)).sum() / n
    grad = p.copy()
    grad[np.arange(n), idx] -= 1
    return loss, grad / n


def write_case(name, prototxt, meta, arrays, weights=None):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "net.prototxt"), "w") as f:
        f.write(prototxt)
    meta = dict(name=name, **meta)
    meta["tags"] = sorted(set(meta.get("tags", [])) | {"derived"})
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    np.savez(os.path.join(folder, "arrays.npz"),
             **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
    if weights:
        net = caffe_pb2.NetParameter()
        for layer_name, blobs in weights.items():
            lp = net.layer.add()
            lp.name = layer_name
            for b in blobs:
                bp = lp.blobs.add()
                bp.shape.dim.extend(b.shape)
                bp.data.extend(np.asarray(b, dtype=np.float32).ravel().tolist())
        with open(os.path.join(folder, "weights.caffemodel"), "wb") as f:
            f.write(net.SerializeToString())


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def v0_anonymous_loss(rng):
    proto = """name: "v0_anonymous_loss"
input: "data"
input_dim: 4 input_dim: 3 input_dim: 1 input_dim: 1
input: "label"
input_dim: 4 input_dim: 1 input_dim: 1 input_dim: 1
layers { layer { name: "ip" type: "innerproduct" num_output: 5 } bottom: "data" top: "ip" }
layers { layer { name: "loss" type: "softmax_loss" } bottom: "ip" bottom: "label" }
layers { layer { name: "accuracy" type: "accuracy" } bottom: "ip" bottom: "label" top: "accuracy" }
"""
    x = f32(rng.standard_normal((4, 3, 1, 1)))
    label = np.array([0, 3, 1, 4], dtype=np.float64).reshape(4, 1, 1, 1)
    w, b = f32(rng.standard_normal((5, 3))), f32(rng.standard_normal(5))
    ip = x.reshape(4, 3) @ w.T + b
    loss, g = softmax_loss(ip, label)
    acc = np.mean(ip.argmax(axis=1) == label.ravel())
    zeros = np.zeros_like
    fwd = {"data": x, "label": label, "label_input_1_split_0": label, "label_input_1_split_1": label,
           "ip": ip, "ip_ip_0_split_0": ip, "ip_ip_0_split_1": ip, "(automatic)": np.array(loss),
           "accuracy": np.array(acc)}
    # no force_backward: only the loss path gets a diff; Accuracy runs no backward
    bwd = {n: zeros(v) for n, v in fwd.items()}
    bwd.update({"ip": g, "ip_ip_0_split_0": g, "(automatic)": np.array(1.0)})
    arrays = {"in/data": x, "in/label": label}
    arrays.update({"fwd/" + k: v for k, v in fwd.items()})
    arrays.update({"bwd/" + k: v for k, v in bwd.items()})
    arrays.update({"param/ip/0/data": w, "param/ip/1/data": b,
                   "param/ip/0/diff": g.T @ x.reshape(4, 3), "param/ip/1/diff": g.sum(axis=0)})
    meta = dict(phase="TRAIN", backward=True, topdiff=[], inputs=["data", "label"], tags=["net", "legacy"],
                net_blobs=list(fwd), net_outputs=["accuracy"])
    write_case("v0_anonymous_loss", proto, meta, arrays, {"ip": [w, b]})


def v0_two_anonymous_losses(rng):
    proto = """name: "v0_two_anonymous_losses"
input: "data"
input_dim: 2 input_dim: 4 input_dim: 1 input_dim: 1
input: "label"
input_dim: 2 input_dim: 1 input_dim: 1 input_dim: 1
input: "target"
input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1
layers { layer { name: "ip" type: "innerproduct" num_output: 3 } bottom: "data" top: "ip" }
layers { layer { name: "cls_loss" type: "softmax_loss" } bottom: "ip" bottom: "label" }
layers { layer { name: "reg_loss" type: "euclidean_loss" } bottom: "ip" bottom: "target" }
"""
    x = f32(rng.standard_normal((2, 4, 1, 1)))
    label = np.array([2, 0], dtype=np.float64).reshape(2, 1, 1, 1)
    target = f32(rng.standard_normal((2, 3, 1, 1)))
    w, b = f32(rng.standard_normal((3, 4))), f32(rng.standard_normal(3))
    ip = x.reshape(2, 4) @ w.T + b
    cls, g_cls = softmax_loss(ip, label)
    d = ip - target.reshape(2, 3)
    reg = 0.5 * np.sum(d * d) / 2
    g_reg = d / 2
    g = g_cls + g_reg
    # the two (automatic) blobs share one key in net.blobs, at the first's place, holding the last (reg_loss's)
    fwd = {"data": x, "label": label, "target": target, "ip": ip, "ip_ip_0_split_0": ip,
           "ip_ip_0_split_1": ip, "(automatic)": np.array(reg)}
    bwd = {"data": np.zeros_like(x), "label": np.zeros_like(label), "target": np.zeros_like(target),
           "ip": g, "ip_ip_0_split_0": g_cls, "ip_ip_0_split_1": g_reg, "(automatic)": np.array(1.0)}
    arrays = {"in/data": x, "in/label": label, "in/target": target}
    arrays.update({"fwd/" + k: v for k, v in fwd.items()})
    arrays.update({"bwd/" + k: v for k, v in bwd.items()})
    arrays.update({"param/ip/0/data": w, "param/ip/1/data": b,
                   "param/ip/0/diff": g.T @ x.reshape(2, 4), "param/ip/1/diff": g.sum(axis=0)})
    meta = dict(phase="TRAIN", backward=True, topdiff=[], inputs=["data", "label", "target"],
                tags=["net", "legacy"], net_blobs=list(fwd), net_outputs=[], loss=cls + reg)
    write_case("v0_two_anonymous_losses", proto, meta, arrays, {"ip": [w, b]})


def sigmoid_inplace_then_reshape(rng):
    """SE-BN-Inception's excitation: Sigmoid in place on the conv output, Reshape, Scale by it."""
    proto = """name: "sigmoid_inplace_then_reshape"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "feat" input_param { shape { dim: 2 dim: 3 dim: 1 dim: 1 } shape { dim: 2 dim: 3 dim: 4 } } }
layer { name: "up" type: "Power" bottom: "data" top: "up" power_param { scale: 2 shift: 0.5 } }
layer { name: "prob" type: "Sigmoid" bottom: "up" top: "up" }
layer { name: "prob_reshape" type: "Reshape" bottom: "up" top: "prob_reshape" reshape_param { shape { dim: 0 dim: 0 } } }
layer { name: "scale" type: "Scale" bottom: "feat" bottom: "prob_reshape" top: "out" scale_param { axis: 0 bias_term: false } }
"""  # noqa: E501
    x, feat = f32(rng.standard_normal((2, 3, 1, 1))), f32(rng.standard_normal((2, 3, 4)))
    g = f32(rng.standard_normal((2, 3, 4)))
    s = sigmoid(2 * x + 0.5)
    out = feat * s.reshape(2, 3, 1)
    d_prob = (g * feat).sum(axis=2)  # Scale's gradient w.r.t. its scale, written into the shared diff
    d_up = d_prob * s.reshape(2, 3) * (1 - s.reshape(2, 3))  # Sigmoid backward, in place on that buffer
    arrays = {"in/data": x, "in/feat": feat, "topdiff/out": g,
              "fwd/data": x, "fwd/feat": feat, "fwd/up": s, "fwd/prob_reshape": s.reshape(2, 3), "fwd/out": out,
              "bwd/out": g, "bwd/feat": g * s.reshape(2, 3, 1),
              "bwd/prob_reshape": d_up,  # not d_prob: both names view one diff
              "bwd/up": d_up.reshape(2, 3, 1, 1), "bwd/data": 2 * d_up.reshape(2, 3, 1, 1)}
    meta = dict(phase="TEST", backward=True, topdiff=["out"], inputs=["data", "feat"], tags=["net"])
    write_case("sigmoid_inplace_then_reshape", proto, meta, arrays)


def reshape_then_sigmoid_inplace(rng):
    """Reshape, then Sigmoid in place on the reshaped name: the bottom's name shows the sigmoid too."""
    proto = """name: "reshape_then_sigmoid_inplace"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "up" type: "Power" bottom: "data" top: "up" power_param { scale: 2 shift: 0.5 } }
layer { name: "rs" type: "Reshape" bottom: "up" top: "rs" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "prob" type: "Sigmoid" bottom: "rs" top: "rs" }
"""
    x, g = f32(rng.standard_normal((2, 3, 2))), f32(rng.standard_normal((2, 6)))
    s = sigmoid(2 * x + 0.5)
    d = g * s.reshape(2, 6) * (1 - s.reshape(2, 6))
    arrays = {"in/data": x, "topdiff/rs": g,
              "fwd/data": x, "fwd/up": s, "fwd/rs": s.reshape(2, 6),  # up shows the sigmoid: one buffer
              "bwd/rs": d, "bwd/up": d.reshape(2, 3, 2), "bwd/data": 2 * d.reshape(2, 3, 2)}
    meta = dict(phase="TEST", backward=True, topdiff=["rs"], inputs=["data"], tags=["net"])
    write_case("reshape_then_sigmoid_inplace", proto, meta, arrays)


def shared_views_chain(rng):
    """TanH in place, then Flatten, a one-bottom Concat and a one-top Slice: four names, one buffer."""
    proto = """name: "shared_views_chain"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 2 } } }
layer { name: "up" type: "Power" bottom: "data" top: "up" power_param { scale: 3 } }
layer { name: "act" type: "TanH" bottom: "up" top: "up" }
layer { name: "fl" type: "Flatten" bottom: "up" top: "fl" }
layer { name: "cat" type: "Concat" bottom: "fl" top: "cat" }
layer { name: "sl" type: "Slice" bottom: "cat" top: "sl" }
"""
    x, g = f32(rng.standard_normal((2, 3, 2))), f32(rng.standard_normal((2, 6)))
    t = np.tanh(3 * x)
    d = g * (1 - t.reshape(2, 6) ** 2)
    arrays = {"in/data": x, "topdiff/sl": g, "fwd/data": x, "fwd/up": t}
    for n in ("fl", "cat", "sl"):
        arrays["fwd/" + n], arrays["bwd/" + n] = t.reshape(2, 6), d
    arrays.update({"bwd/up": d.reshape(2, 3, 2), "bwd/data": 3 * d.reshape(2, 3, 2)})
    meta = dict(phase="TEST", backward=True, topdiff=["sl"], inputs=["data"], tags=["net"])
    write_case("shared_views_chain", proto, meta, arrays)


def main():
    rng = np.random.default_rng(14)
    v0_anonymous_loss(rng)
    v0_two_anonymous_losses(rng)
    sigmoid_inplace_then_reshape(rng)
    reshape_then_sigmoid_inplace(rng)
    shared_views_chain(rng)


if __name__ == "__main__":
    main()
