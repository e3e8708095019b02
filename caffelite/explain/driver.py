"""``caffelite explain``'s driver: build the net with given or random inputs, run it, trace its loss layers."""

from __future__ import annotations

import json

import numpy as np

from caffelite.common import TRAIN
from caffelite.errors import CaffeliteError, NetError
from caffelite.explain.tracers import TRACERS, Trace, trace_generic
from caffelite.layer_factory import layer_class
from caffelite.layers.loss import LossLayer
from caffelite.net import Net
from caffelite.net_passes import filter_net
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param

__all__ = ["explain_file", "explain_param", "parse_values", "LABELED"]

LABELED = {"SoftmaxWithLoss", "Accuracy", "InfogainLoss", "MultinomialLogisticLoss", "HingeLoss"}


def parse_values(items) -> dict[str, np.ndarray]:
    """``BLOB=JSON`` strings (``fc1=[[1.2,0.8]]``) as arrays."""
    out = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError("expected BLOB=VALUES (JSON nested lists), got %r" % item)
        try:
            out[name] = np.asarray(json.loads(text), dtype=np.float64)
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError("values of %s are not JSON numbers: %s" % (name, e)) from None
    return out


# --- building the net ---------------------------------------------------------------------------
def _prepare(param, values: dict, shapes: dict, allow_python_layers: bool) -> caffe_pb2.NetParameter:
    """Filter for TRAIN, turn given or missing blobs into Input tops, force backward.

    ``values`` (name -> array) and ``shapes`` (name -> shape, values drawn at random) may feed any
    blob no layer computes, and replace data layers whose tops they all give.
    """
    known = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
    known.update((n, v.shape) for n, v in values.items())
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(param)
    copy.state.phase = TRAIN
    net = filter_net(copy)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    del out.input[:], out.input_shape[:], out.input_dim[:]
    produced: set[str] = set()
    inputs: list[tuple[str, tuple]] = []
    for name, shape in _net_inputs(net):
        inputs.append((name, known.get(name, shape)))
        produced.add(name)
    layers = []
    for lp in net.layer:
        if not len(lp.bottom) and lp.top and all(t in known for t in lp.top) and lp.type != "Input":
            for t in lp.top:  # a data layer whose tops are given: feed them instead of reading files
                inputs.append((t, known[t]))
                produced.add(t)
            continue
        if lp.type == "Python" and not allow_python_layers:
            raise NetError("layer '%s' is a Python layer (%s.%s); explain does not import it unless "
                           "--allow-python-layers (or give its tops with --set)"
                           % (lp.name, lp.python_param.module, lp.python_param.layer), layer=lp.name)
        for b in lp.bottom:
            if b not in produced:
                if b not in known:
                    raise NetError("blob '%s' (bottom of layer '%s') has no producer and no value: give it "
                                   "with --set %s=[...] or --input %s=SHAPE" % (b, lp.name, b, b),
                                   layer=lp.name, field="bottom")
                inputs.append((b, known[b]))
                produced.add(b)
        copy = caffe_pb2.LayerParameter()
        copy.CopyFrom(lp)
        if lp.type == "Input":
            shapes = list(lp.input_param.shape)
            del copy.input_param.shape[:]
            for i, t in enumerate(lp.top):
                dims = (known[t] if t in known else
                        tuple(shapes[0 if len(shapes) == 1 else i].dim) if shapes else None)
                if dims is None:
                    raise NetError("input '%s' has no shape: give it with --set %s=[...]" % (t, t), layer=lp.name)
                copy.input_param.shape.add().dim.extend(dims)
        produced.update(lp.top)
        layers.append(copy)
    if inputs:
        feed = out.layer.add()
        feed.name, feed.type = "explain_inputs", "Input"
        for name, shape in inputs:
            feed.top.append(name)
            feed.input_param.shape.add().dim.extend(int(d) for d in shape)
    out.layer.extend(layers)
    out.force_backward = True
    return out


def _net_inputs(net):
    for i, name in enumerate(net.input):
        if i < len(net.input_shape):
            yield name, tuple(net.input_shape[i].dim)
        else:
            yield name, tuple(net.input_dim[4 * i:4 * i + 4])


def _fill_inputs(net: Net, param, values: dict, seed: int) -> list[str]:
    """Write given values; draw the others (labels as valid class indices). Returns random names."""
    rng = np.random.default_rng(seed)
    label_classes = {}
    for lp in param.layer:
        if lp.type in LABELED and len(lp.bottom) > 1 and lp.bottom[0] in net.blobs:
            shape = net.blobs[lp.bottom[0]].shape
            axis = (lp.accuracy_param.axis if lp.type == "Accuracy" else lp.softmax_param.axis) % max(1, len(shape))
            label_classes[lp.bottom[1]] = shape[axis] if shape else 2
        if lp.type == "SigmoidCrossEntropyLoss" and len(lp.bottom) > 1:
            label_classes[lp.bottom[1]] = 2
    drawn = []
    for name in net.inputs:
        blob = net.blobs[name]
        if name in values:
            blob.data[...] = values[name].reshape(blob.shape)
        elif name in label_classes:
            blob.data[...] = rng.integers(0, label_classes[name], blob.shape)
            drawn.append(name)
        else:
            blob.data[...] = rng.standard_normal(blob.shape)
            drawn.append(name)
    return drawn


def _is_explained(lp) -> bool:
    if lp.type in TRACERS:
        return True
    try:
        cls = layer_class(lp.type)
    except CaffeliteError:
        return False
    return issubclass(cls, LossLayer)


def explain_param(param, *, layers: list[str] | None = None, values: dict | None = None,
                  shapes: dict | None = None, lang: str = "en", seed: int = 0, allow_python_layers: bool = False,
                  source: str | None = None) -> str:
    """The trace, as text, of the named layers (default: every loss and Accuracy layer).

    ``values``: blob -> array; ``shapes``: blob -> shape of inputs drawn at random (data layers
    whose files are not here can be replaced this way).
    """
    values = dict(values or {})
    shapes = dict(shapes or {})
    prepared = _prepare(param, values, shapes, allow_python_layers)
    net = Net(prepared, phase=TRAIN)
    unused = sorted((set(values) | set(shapes)) - set(net.inputs))
    if unused:
        raise NetError("--set %s: not an input of the net (inputs: %s); only blobs that no layer computes can be "
                       "set" % (", ".join(unused), ", ".join(net.inputs)), file=source)
    drawn = _fill_inputs(net, prepared, values, seed)
    net.forward()
    net.backward()
    t = Trace(lang)
    if drawn:
        t.say("random", 0, seed=seed, names=", ".join(drawn))
    names = net._layer_names
    targets = layers or [n for n, layer in zip(names, net.layers) if _is_explained(layer.layer_param)]
    if not targets:
        t.say("no_layers", 0)
    for name in targets:
        i = net._layer_index(name, 0)
        layer = net.layers[i]
        bottom, top = net._layer_blobs(i)
        bottom_names = [net._blob_names[b] for b in net._bottom_ids[i]]
        t.lines.append("")
        t.say("layer", 0, name=name, type=layer.layer_type())
        t.say("inputs", 1, items=", ".join("%s %s" % (n, "x".join(map(str, b.shape)) or "scalar")
                                            for n, b in zip(bottom_names, bottom)))
        need = bool(net._bottom_need_backward[i][0]) if bottom else False
        tracer = TRACERS.get(layer.layer_type(), trace_generic if top and len(bottom) else None)
        if tracer is not None:
            tracer(t, layer, bottom, top, bottom_names, need)
    return "\n".join(t.lines).strip("\n") + "\n"


def explain_file(path: str, **kwargs) -> str:
    """Read a net prototxt (upgraded as Caffe does) and explain it: see :func:`explain_param`."""
    return explain_param(read_net_param(path), source=path, **kwargs)
