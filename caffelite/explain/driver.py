"""``caffelite explain``'s driver: build the net with given or random inputs, run it, trace its loss layers.

What the driver knows about a layer type comes from the layer classes (``is_loss``,
``label_bottom``, ``reads_source``: :mod:`caffelite.layer`); what explain adds is the range of
values each input must take (:data:`CLASS_AXIS`, :data:`VALUE_DOMAINS`), so that random inputs are
valid and given ones are checked.
"""

from __future__ import annotations

import json

import numpy as np

from caffelite.common import TEST, TRAIN
from caffelite.errors import CaffeliteError, NetError
from caffelite.explain.tracers import TRACERS, Trace, trace_generic
from caffelite.layer_factory import layer_class
from caffelite.net import Net
from caffelite.net_passes import filter_net, set_state
from caffelite.proto import caffe_pb2
from caffelite.upgrade import read_net_param

__all__ = ["explain_file", "explain_param", "parse_values", "LABELED", "CLASS_AXIS", "VALUE_DOMAINS"]

_FEED = "explain_inputs"  # the Input layer explain adds for the blobs it feeds; never shown to the user

# Types whose label bottom (the class fact ``label_bottom``) holds class indices, and the axis of
# bottom 0 that counts the classes (None: everything after the batch axis, as HingeLoss reads it).
CLASS_AXIS = {
    "SoftmaxWithLoss": lambda lp: lp.softmax_param.axis,
    "Accuracy": lambda lp: lp.accuracy_param.axis,
    "InfogainLoss": lambda lp: lp.infogain_loss_param.axis,
    "MultinomialLogisticLoss": lambda lp: None,
    "HingeLoss": lambda lp: None,
}
# Other inputs with a restricted range: type -> {bottom index, or "label" for the class fact
# ``label_bottom``: domain}.  unit: targets in [0, 1]; prob: probabilities along axis 1 (each item
# sums to 1); nonneg: a matrix of gains (H >= 0); binary: similarity labels 0 / 1.
VALUE_DOMAINS = {
    "SigmoidCrossEntropyLoss": {"label": "unit"},
    "MultinomialLogisticLoss": {0: "prob"},
    "InfogainLoss": {2: "nonneg"},
    "ContrastiveLoss": {"label": "binary"},
}
LABELED = frozenset(t for t in CLASS_AXIS if layer_class(t).label_bottom is not None)


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
        if out[name].size == 0:
            raise ValueError("--set %s: no values (give at least one number)" % name)
    return out


def _class(type_name: str):
    try:
        return layer_class(type_name)
    except CaffeliteError:
        return None


# --- building the net ---------------------------------------------------------------------------
def _state_param(param, phase: int, stages, level: int) -> caffe_pb2.NetParameter:
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(param)
    set_state(copy.state, phase, stages or [], level)
    return copy


def _prepare(param, values: dict, shapes: dict, allow_python_layers: bool,
             phase: int = TRAIN, stages=(), level: int = 0) -> caffe_pb2.NetParameter:
    """Filter for the state, turn given or missing blobs into Input tops, force backward.

    ``values`` (name -> array) and ``shapes`` (name -> shape, values drawn at random) may feed any
    blob no layer computes, and replace data layers whose tops they all give.  The layers keep
    their order and names; their include/exclude rules are dropped (the filter already applied).
    """
    known = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
    known.update((n, v.shape) for n, v in values.items())
    net = filter_net(_state_param(param, phase, stages, level))
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    del out.input[:], out.input_shape[:], out.input_dim[:]
    out.state.phase = phase
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
        del copy.include[:], copy.exclude[:]
        if lp.type == "Input":
            shapes_ = list(lp.input_param.shape)
            del copy.input_param.shape[:]
            for i, t in enumerate(lp.top):
                dims = (known[t] if t in known else
                        tuple(shapes_[0 if len(shapes_) == 1 else i].dim) if shapes_ else None)
                if dims is None:
                    raise NetError("input '%s' has no shape: give it with --set %s=[...]" % (t, t), layer=lp.name)
                copy.input_param.shape.add().dim.extend(dims)
        produced.update(lp.top)
        layers.append(copy)
    if inputs:
        feed = out.layer.add()
        feed.name, feed.type = _FEED, "Input"
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


def _build(prepared, phase: int, source) -> Net:
    """The Net; errors about explain's own feed layer or a missing data source are put in the user's terms."""
    try:
        return Net(prepared, phase=phase)
    except CaffeliteError as e:
        if e.layer == _FEED:
            e.layer, e.layer_type = None, None
            e.message = "the given or random inputs: " + e.message
            e.args = (e.message,)
        lp = next((lp for lp in prepared.layer if lp.name == e.layer), None)
        cls = _class(lp.type) if lp is not None else None
        if cls is not None and cls.reads_source:
            tops = " ".join("--input %s=SHAPE" % t for t in lp.top)
            e.message += ("; explain does not need the data: give the shapes of its tops (random values) with %s "
                          "(SHAPE like 64,1,28,28), or their values with --set NAME=[...]"
                          % tops)
            e.args = (e.message,)
        e.add_context(file=source)
        raise


# --- the user's view of the net: layers by position, blobs by the names in the prototxt ----------
class _View:
    """Net layer index <-> the user's layers (in the filtered prototxt's order), split blobs -> names."""

    def __init__(self, net: Net, prepared):
        fed = len(prepared.layer) and prepared.layer[0].name == _FEED  # _prepare puts its feed first
        user = list(prepared.layer)[1 if fed else 0:]
        self.user_params = user
        self.net_index: list[int] = []  # user position -> net layer index
        k = 0
        alias: dict[str, str] = {}
        for i, layer in enumerate(net.layers):
            lp = layer.layer_param
            if k < len(user) and lp.name == user[k].name and lp.type == user[k].type:
                self.net_index.append(i)
                k += 1
            elif lp.type == "Split":  # inserted by InsertSplits: its tops are the bottom under other names
                source = net._blob_names[net._bottom_ids[i][0]]
                for t in lp.top:
                    alias[t] = alias.get(source, source)
        self.alias = alias
        names = [lp.name for lp in user]
        self.count = {n: names.count(n) for n in names}
        self.names = names

    def blob_name(self, name: str) -> str:
        return self.alias.get(name, name)

    def nth(self, pos: int) -> int:
        """1-based rank of the layer at ``pos`` among the layers sharing its name."""
        return self.names[:pos + 1].count(self.names[pos])

    def select(self, wanted: list[str], param, phase: int, stages, level: int) -> list[int]:
        """Positions of ``NAME`` (every layer of that name) or ``NAME#K`` (the K-th of them)."""
        out: list[int] = []
        for item in wanted:
            name, sep, rank = item.rpartition("#")
            if not sep or not rank.isdigit():
                name, rank = item, ""
            found = [p for p, n in enumerate(self.names) if n == name]
            if rank:
                found = found[int(rank) - 1:int(rank)] if int(rank) >= 1 else []
            if not found:
                raise NetError(self._not_found(item, name, param, phase, stages, level))
            out += [p for p in found if p not in out]
        return out

    def _not_found(self, item, name, param, phase, stages, level) -> str:
        here = "the %s net" % ("TRAIN" if phase == TRAIN else "TEST")
        if name in self.names:
            return "--layer %s: %s has %d layer(s) named '%s'" % (item, here, self.count[name], name)
        for other in (TEST, TRAIN):
            if other != phase and name in {lp.name for lp in filter_net(_state_param(param, other, stages,
                                                                                      level)).layer}:
                flag = "TEST" if other == TEST else "TRAIN"
                return ("--layer %s: layer '%s' is not in %s (its include/exclude rules put it in the %s net): "
                        "add --phase %s" % (item, name, here, flag, flag))
        if name in {lp.name for lp in param.layer}:
            return ("--layer %s: layer '%s' is not in %s for these stages/level (see its include/exclude rules; "
                    "--stage/--level select them)" % (item, name, here))
        return "--layer %s: no layer named '%s' (layers of %s: %s)" % (item, name, here, ", ".join(self.names))


# --- inputs: drawn valid for the layers that read them, given ones checked ------------------------
def _domains(view: _View, net: Net) -> dict[str, tuple]:
    """Input blob -> (domain, argument) from the layers reading it: ("classes", C), ("unit",), ..."""
    out: dict[str, tuple] = {}
    producer = {t: lp for lp in view.user_params for t in lp.top}
    for lp in view.user_params:
        for idx, dom in _layer_domains(lp, [net.blobs.get(view.blob_name(b)) for b in lp.bottom]).items():
            name = view.blob_name(lp.bottom[idx])
            while name not in out:  # back through layers that only move values (Flatten, Reshape, Split)
                out[name] = dom
                up = producer.get(name)
                if up is None or up.type not in _VALUE_PRESERVING or len(up.bottom) != 1 or up.bottom[0] == name:
                    break
                name = view.blob_name(up.bottom[0])
    return out


_VALUE_PRESERVING = {"Flatten", "Reshape", "Split"}


def _layer_domains(lp, bottoms) -> dict[int, tuple]:
    """Bottom index -> (domain, argument) for one layer (bottoms: its blobs, None where not known)."""
    out: dict[int, tuple] = {}
    cls = _class(lp.type)
    if cls is None:
        return out
    lb = cls.label_bottom
    if lp.type in CLASS_AXIS and lb is not None and len(lp.bottom) > lb and bottoms[0] is not None:
        shape = bottoms[0].shape
        axis = CLASS_AXIS[lp.type](lp)
        if axis is None:
            classes = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        else:
            classes = shape[axis % max(1, len(shape))] if shape else 1
        ignore = _ignore_label(lp)
        out[lb] = ("classes", int(classes), ignore)
    for idx, dom in VALUE_DOMAINS.get(lp.type, {}).items():
        idx = lb if idx == "label" else idx
        if idx is not None and idx < len(lp.bottom):
            out[idx] = (dom,)
    return out


def _ignore_label(lp):
    if lp.type == "Accuracy":
        p = lp.accuracy_param
    else:
        p = lp.loss_param
    return p.ignore_label if p.HasField("ignore_label") else None


def _draw(rng, shape, domain) -> np.ndarray:
    kind = domain[0]
    if kind == "classes":
        return rng.integers(0, domain[1], shape).astype(np.float64)
    if kind in ("unit", "nonneg"):
        return rng.uniform(0, 1, shape)
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    if kind == "prob":  # each item (axis 0) a probability distribution over the rest
        x = rng.standard_normal(shape).reshape(shape[0] if shape else 1, -1)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).reshape(shape)
    return rng.standard_normal(shape)


def _fill_inputs(net: Net, view: _View, values: dict, seed: int) -> list[str]:
    """Write given values; draw the others valid for the layers reading them. Returns the random names."""
    rng = np.random.default_rng(seed)
    domains = _domains(view, net)
    drawn = []
    for name in net.inputs:
        blob = net.blobs[name]
        if name in values:
            blob.data[...] = values[name].reshape(blob.shape)
        else:
            blob.data[...] = _draw(rng, blob.shape, domains.get(name, ("real",)))
            drawn.append(name)
    return drawn


def value_problems(lp, bottoms, names) -> list[str]:
    """What is wrong with the values a layer reads (labels out of range, targets outside [0, 1], ...)."""
    problems = []
    for idx, dom in _layer_domains(lp, bottoms).items():
        blob = bottoms[idx]
        if blob is None:
            continue
        x = np.asarray(blob.data, dtype=np.float64)
        name = names[idx]
        kind = dom[0]
        if kind == "classes":
            ignore = dom[2]
            keep = x != ignore if ignore is not None else np.ones(x.shape, bool)
            bad = keep & ((x != np.trunc(x)) | (x < 0) | (x >= dom[1]))
            if bad.any():
                problems.append(("labels", dict(blob=name, bad=_few(x[bad]), c=dom[1], top=dom[1] - 1)))
        elif kind == "unit" and ((x < 0) | (x > 1)).any():
            problems.append(("targets", dict(blob=name, bad=_few(x[(x < 0) | (x > 1)]))))
        elif kind == "nonneg" and (x < 0).any():
            problems.append(("gains", dict(blob=name, bad=_few(x[x < 0]))))
        elif kind == "binary" and ((x != 0) & (x != 1)).any():
            problems.append(("similar", dict(blob=name, bad=_few(x[(x != 0) & (x != 1)]))))
        elif kind == "prob":
            rows = x.reshape(x.shape[0] if x.ndim else 1, -1)
            sums = rows.sum(axis=1)
            if ((x < 0) | (x > 1)).any() or (np.abs(sums - 1) > 1e-3).any():
                problems.append(("probs", dict(blob=name, sums=_few(sums))))
    return problems


def _few(values) -> str:
    vals = np.ravel(values)
    text = ", ".join("%g" % v for v in vals[:4])
    return "[" + text + (", …" if vals.size > 4 else "") + "]"


def _is_explained(lp) -> bool:
    """Loss layers (the class fact ``is_loss``), Accuracy, the types with a tracer, and any layer
    with a non-zero loss_weight (a Python loss layer, say)."""
    if lp.type in TRACERS or any(w for w in lp.loss_weight):
        return True
    cls = _class(lp.type)
    return cls is not None and cls.is_loss


def explain_param(param, *, layers: list[str] | None = None, values: dict | None = None,
                  shapes: dict | None = None, lang: str = "en", seed: int = 0, allow_python_layers: bool = False,
                  source: str | None = None, phase: int = TRAIN, stages=None, level: int = 0) -> str:
    """The trace, as text, of the named layers (default: every loss and Accuracy layer).

    ``values``: blob -> array; ``shapes``: blob -> shape of inputs drawn at random (data layers
    whose files are not here can be replaced this way).  ``layers``: names; ``NAME#K`` picks the
    K-th layer of a repeated name.  ``phase``, ``stages``, ``level``: the NetState to build.
    """
    values = {name: np.asarray(v, dtype=np.float64) for name, v in (values or {}).items()}
    shapes = dict(shapes or {})
    stages = list(stages or [])
    empty = sorted(name for name, v in values.items() if v.size == 0)
    if empty:
        raise NetError("--set %s: no values (give at least one number)" % ", ".join(empty), file=source)
    prepared = _prepare(param, values, shapes, allow_python_layers, phase, stages, level)
    net = _build(prepared, phase, source)
    view = _View(net, prepared)
    unused = sorted((set(values) | set(shapes)) - set(net.inputs))
    if unused:
        raise NetError("--set %s: not an input of the net (inputs: %s); only blobs that no layer computes can be "
                       "set" % (", ".join(unused), ", ".join(net.inputs)), file=source)
    targets = (view.select(layers, param, phase, stages, level) if layers else
               [p for p, lp in enumerate(view.user_params) if _is_explained(lp)])
    drawn = _fill_inputs(net, view, values, seed)
    t = Trace(lang)
    try:
        net.forward()
        net.backward()
    except CaffeliteError as e:  # say what is wrong with the given values first
        found = [t.m["bad_" + key].format(**kw) for lp in view.user_params
                 for key, kw in value_problems(lp, [net.blobs.get(view.blob_name(b)) for b in lp.bottom],
                                               list(lp.bottom))]
        if found:
            e.message += " (" + "; ".join(found) + ")"
            e.args = (e.message,)
        e.add_context(file=source)
        raise
    if drawn:
        t.say("random", 0, seed=seed, names=", ".join(drawn))
    if not targets:
        t.say("no_layers", 0)
    for pos in targets:
        _explain_layer(t, net, view, pos)
    if t.mismatches:
        t.lines.append("")
        t.say("mismatch_total", 0, n=t.mismatches)
    return "\n".join(t.lines).strip("\n") + "\n"


def _explain_layer(t: Trace, net: Net, view: _View, pos: int) -> None:
    i = view.net_index[pos]
    layer = net.layers[i]
    lp = view.user_params[pos]
    bottom, top = net._layer_blobs(i)
    bottom_names = list(lp.bottom)
    t.start_layer()
    t.lines.append("")
    t.say("layer", 0, name=lp.name, type=layer.layer_type())
    if view.count[lp.name] > 1:
        t.say("layer_nth", 1, k=view.nth(pos), n=view.count[lp.name], name=lp.name, pos=pos + 1,
              total=len(view.names))
    t.say("inputs", 1, items=", ".join("%s %s" % (n, "x".join(map(str, b.shape)) or "scalar")
                                        for n, b in zip(bottom_names, bottom)))
    for key, kw in value_problems(lp, bottom, bottom_names):
        t.warn("bad_" + key, **kw)
    need = [bool(x) for x in net._bottom_need_backward[i]]
    tracer = TRACERS.get(layer.layer_type(), trace_generic if top and len(bottom) else None)
    if tracer is not None:
        tracer(t, layer, bottom, top, bottom_names, need)


def explain_file(path: str, **kwargs) -> str:
    """Read a net prototxt (upgraded as Caffe does) and explain it: see :func:`explain_param`."""
    return explain_param(read_net_param(path), source=path, **kwargs)

