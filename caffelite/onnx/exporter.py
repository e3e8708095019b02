"""Caffe net -> ONNX graph: the net is built by caffelite (TEST phase by default), then walked layer by layer.

Caffe's rules come from the code that runs caffelite's forward: NetState filtering, the V0/V1
upgrades, Split insertion and in-place blobs.  Before the build, data layers become Input layers
(shapes from the layer or from ``inputs``) and loss / Accuracy layers are left out, their bottoms
becoming the graph's outputs.  Graph inputs and outputs carry the Caffe blob names; an in-place
chain's intermediate values get unique names and its final value keeps the blob's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from caffelite._version import __version__
from caffelite.common import TEST
from caffelite.errors import (
    CaffeliteError,
    MissingDependencyError,
    NetError,
    ShapeError,
    UnsupportedError,
    WeightsError,
)
from caffelite.net import Net
from caffelite.net_passes import set_state
from caffelite.onnx import _caffelite
from caffelite.onnx.convert import CONVERTERS, DATA, DROPPED, UNEXPORTABLE, _load
from caffelite.onnx.graph import Graph, LayerContext
from caffelite.proto import caffe_pb2

# The newest opset that both onnxruntime (1.32) and OpenCV 5's ONNX importer (5.1) load: every test passes at it
# and at 17 (tests/test_onnx_*.py); an older onnx library that does not know it gets its own newest.
DEFAULT_OPSET = 28
MIN_OPSET = 13  # Split/Squeeze/Reduce* with tensor inputs, Softmax on one axis
TWO_GB = 2 ** 31


def require_onnx():
    """The ``onnx`` module, or a MissingDependencyError naming the extra."""
    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError("exporting to ONNX needs the optional package 'onnx': "
                                     "pip install caffelite[onnx]") from e
    return onnx


@dataclass
class Exported:
    """An export: the ONNX model, the caffelite net it was read from (for verification), and its interface."""

    model: object
    net: Net
    inputs: dict = field(default_factory=dict)  # graph input name -> static shape
    outputs: list = field(default_factory=list)  # graph output names
    blobs: dict = field(default_factory=dict)  # graph output name -> Caffe blob (the same but for NAME:out)
    source: str | None = None


def _layer_lines(path: str | None) -> dict:
    """Layer name -> 1-based line of its definition in the prototxt (best effort)."""
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8", errors="replace") as f:
        tree = _caffelite.parse_locations(f.read())
    lines = {}
    for entry in tree.all("layer") + tree.all("layers"):
        name = entry.get("name") or (entry.get("layer").get("name") if entry.get("layer") else None)
        if name is not None and name.value is not None:
            lines.setdefault(name.value.strip("\"'"), entry.line)
    return lines


class _Where:
    def __init__(self, source, lines):
        self.source, self.lines = source, lines

    def __call__(self, layer_name):
        return self.source, self.lines.get(layer_name)

    def context(self, err: CaffeliteError) -> CaffeliteError:
        return err.add_context(file=self.source, line=self.lines.get(err.layer))


def _data_shapes(lp, batch_hint=None):
    """Shapes a data layer's tops would have, where the prototxt alone says (None where it needs data)."""
    t = lp.type
    n_top = len(lp.top)
    if t == "Input":
        shapes = [list(s.dim) for s in lp.input_param.shape]
        if len(shapes) == 1:
            return shapes * n_top
        return shapes if len(shapes) == n_top else [None] * n_top
    if t == "DummyData":
        p = lp.dummy_data_param
        if len(p.shape):
            shapes = [list(s.dim) for s in p.shape]
        else:
            shapes = [[a, b, c, d] for a, b, c, d in zip(p.num, p.channels, p.height, p.width)]
        return shapes * n_top if len(shapes) == 1 else (shapes + [None] * n_top)[:n_top]
    if t == "MemoryData":
        p = lp.memory_data_param
        return ([[p.batch_size, p.channels, p.height, p.width], [p.batch_size]] + [None] * n_top)[:n_top]
    batch = {"Data": lp.data_param.batch_size, "ImageData": lp.image_data_param.batch_size,
             "WindowData": lp.window_data_param.batch_size, "HDF5Data": lp.hdf5_data_param.batch_size}.get(t)
    data = None
    crop = lp.transform_param.crop_size
    if t == "ImageData":
        p = lp.image_data_param
        channels = 3 if p.is_color else 1
        if crop:
            data = [batch, channels, crop, crop]
        elif p.new_height and p.new_width:
            data = [batch, channels, p.new_height, p.new_width]
    elif t == "WindowData" and crop:
        data = [batch, 3, crop, crop]
    if t == "HDF5Data":
        return [None] * n_top
    return ([data, [batch] if batch else None] + [None] * n_top)[:n_top]


def _load_param(net_or_path):
    """(NetParameter, source path or None, the Net whose weights to use or None) from a path, a NetParameter or
    a Net."""
    if isinstance(net_or_path, Net):
        param = caffe_pb2.NetParameter()
        param.CopyFrom(net_or_path.param)
        return param, getattr(net_or_path, "_source", None), net_or_path
    if isinstance(net_or_path, caffe_pb2.NetParameter):
        return _caffelite.read_net_param(net_or_path), None, None
    path = os.fspath(net_or_path)
    return _caffelite.read_net_param(path), path, None


def prepare(param, inputs, where: _Where):
    """The filtered net with data layers as Input layers and loss / Accuracy layers removed.

    Returns (NetParameter, score bottoms of the removed layers, graph input names).
    """
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    scores, dropped_tops, data_tops, unknown = [], {}, [], {}
    consumed = set()
    for lp in param.layer:
        if lp.type not in DROPPED:
            consumed.update(lp.bottom)
    given = dict(inputs or {})
    for lp in param.layer:
        for b in lp.bottom:
            if b in dropped_tops and lp.type not in DROPPED:
                file, line = where(lp.name)
                raise NetError("cannot export to ONNX: layer reads '%s', the output of %s layer '%s', which is left "
                               "out of the graph" % (b, dropped_tops[b][1], dropped_tops[b][0]), file=file, line=line,
                               layer=lp.name, layer_type=lp.type, field="bottom")
        if lp.type in DROPPED:
            scores.extend(lp.bottom)
            dropped_tops.update((t, (lp.name, lp.type)) for t in lp.top)
            continue
        is_data = lp.type in DATA or (lp.type == "Python" and not len(lp.bottom) and len(lp.top)
                                      and all(t in given or t not in consumed for t in lp.top))
        if not is_data:
            if lp.type in UNEXPORTABLE:  # before the build, which would run (import) a Python layer
                file, line = where(lp.name)
                why = UNEXPORTABLE[lp.type]
                if lp.type == "Python" and not len(lp.bottom):
                    why = ("a Python data layer is read by the net: give the shapes of its tops (%s) with --input "
                           "NAME=N,C,H,W to make them graph inputs" % ", ".join(t for t in lp.top if t in consumed))
                raise UnsupportedError("cannot export to ONNX: " + why, file=file, line=line, layer=lp.name,
                                                 layer_type=lp.type)
            out.layer.add().CopyFrom(lp)
            continue
        declared = _data_shapes(lp) if lp.type != "Python" else [None] * len(lp.top)
        shapes = []
        for top, shape in zip(lp.top, declared):
            if top in given:
                want = list(given.pop(top))
                if lp.type == "Input" and shape and (len(want) != len(shape)
                                                     or (len(shape) == 4 and want[1] != shape[1])):
                    file, line = where(lp.name)
                    raise ShapeError("--input %s=%s contradicts the net: '%s' is declared %s (the number of axes and "
                                     "the channels must match)" % (top, ",".join(map(str, want)), top,
                                                                    "x".join(map(str, shape))),
                                     file=file, line=line, layer=lp.name, layer_type=lp.type, field="input_param.shape")
                shape = want
            if shape is None or any(d <= 0 for d in shape):
                if top in consumed:
                    unknown[top] = lp
                shape = [1]  # a top nothing reads: any shape; it is not a graph input
            shapes.append(shape)
            data_tops.append(top)
        new = out.layer.add()
        new.name, new.type = lp.name, "Input"
        new.top.extend(lp.top)
        new.include.extend(lp.include)
        new.exclude.extend(lp.exclude)
        for s in shapes:
            new.input_param.shape.add().dim.extend(int(d) for d in s)
    if given:
        raise NetError("--input names %s, which %s no input or data-layer top of the net (its inputs: %s)"
                       % (", ".join(sorted(given)), "is" if len(given) == 1 else "are",
                          ", ".join(data_tops) or "none"), file=where.source, field="input")
    if unknown:
        top, lp = next(iter(unknown.items()))
        file, line = where(lp.name)
        raise NetError("the shape of '%s' comes from the data files of %s layer '%s': give it with --input %s=N,C,H,W "
                       "(in Python: inputs={'%s': (N, C, H, W)})" % (top, lp.type, lp.name, top, top),
                       file=file, line=line, layer=lp.name, layer_type=lp.type)
    return out, scores, data_tops


@dataclass
class Prepared:
    """A caffelite net built for export: data layers as inputs, loss / Accuracy layers left out."""

    net: Net
    scores: list  # bottoms of the layers left out: default outputs
    where: _Where
    layer_names: set  # the layers written in the prototxt (the others are Splits the net inserted)


def prepare_net(net_or_path, weights=None, inputs=None, *, phase=None, stages=None, level: int = 0) -> Prepared:
    """Parse, filter and build the net as it will be exported (the first half of :func:`convert`)."""
    phase = TEST if phase is None else phase
    param, source, built = _load_param(net_or_path)
    where = _Where(source, _layer_lines(source))
    set_state(param.state, phase, stages, level or None)  # level 0 keeps the file's
    try:
        filtered = _caffelite.filter_net(param, source)
        prepared, scores, _data_tops = prepare(filtered, inputs, where)
        net = Net(prepared, phase)
    except CaffeliteError as e:
        raise where.context(e) from e.__cause__
    if built is not None:  # a built net: its parameters, layer by layer (the same param gives the same shapes)
        for layer_name, layer in net.layer_dict.items():
            source_layer = built.layer_dict.get(layer_name)
            if source_layer is not None:
                for blob, src in zip(layer.blobs, source_layer.blobs):
                    blob.data[...] = src.data
    if weights:
        try:
            net.copy_from(os.fspath(weights))
        except WeightsError as e:
            file, line = where(e.layer)
            raise WeightsError("weights file %s does not fit the net: %s" % (weights, e.message),
                               file=file or e.file, line=line, layer=e.layer, field=e.field) from e
    return Prepared(net, scores, where, {lp.name for lp in prepared.layer})


def convert(net_or_path, weights=None, inputs=None, *, phase=None, stages=None, level: int = 0, outputs=None,
            dynamic_batch: bool = False, opset: int | None = None, name: str | None = None) -> Exported:
    """Build the ONNX model of a Caffe net (see :func:`caffelite.onnx.export`); returns an :class:`Exported`."""
    require_onnx()
    prepared = prepare_net(net_or_path, weights, inputs, phase=phase, stages=stages, level=level)
    return to_onnx(prepared, outputs=outputs, dynamic_batch=dynamic_batch, opset=opset, name=name)


def to_onnx(prepared: Prepared, *, outputs=None, dynamic_batch: bool = False, opset: int | None = None,
            name: str | None = None, extra_outputs=()) -> Exported:
    """The ONNX model of a prepared net (the second half of :func:`convert`); ``extra_outputs`` are exposed
    beside the default (or the given) outputs."""
    onnx = require_onnx()
    _load()
    newest = onnx.defs.onnx_opset_version()
    opset = min(DEFAULT_OPSET, newest) if opset is None else int(opset)
    if not MIN_OPSET <= opset <= newest:
        raise NetError("--opset %d: the exporter needs an opset from %d to %d (the newest this onnx %s knows)"
                       % (opset, MIN_OPSET, newest, onnx.__version__), field="opset")
    return _build(onnx, prepared, outputs, dynamic_batch, opset, name, list(extra_outputs))


def _build(onnx, prepared: Prepared, outputs, dynamic, opset, name, extra) -> Exported:
    helper = onnx.helper
    net, scores, where, written = prepared.net, prepared.scores, prepared.where, prepared.layer_names
    blob_names = list(net.blobs)
    graph = Graph(blob_names, opset)
    current, origin = {}, {}
    input_shapes = {}
    for layer in net.layers:
        lp = layer.layer_param
        if lp.type == "Input":
            for top in lp.top:
                current[top] = origin[top] = top
                input_shapes[top] = list(net.blobs[top].shape)
            continue
        if lp.type == "Split":  # no node: the tops are the bottom's tensor
            for top in lp.top:
                current[top] = current[lp.bottom[0]]
                # a Split the net inserted (not in the prototxt) stands for its bottom when an output is chosen
                origin[top] = origin.get(lp.bottom[0], lp.bottom[0]) if lp.name not in written else top
            continue
        if lp.type == "Silence":
            continue
        if lp.type in UNEXPORTABLE or lp.type not in CONVERTERS:
            file, line = where(lp.name)
            why = UNEXPORTABLE.get(lp.type, "no ONNX export is defined for layer type '%s'" % lp.type)
            raise UnsupportedError("cannot export to ONNX: " + why, file=file, line=line, layer=lp.name,
                                             layer_type=lp.type)
        ctx = LayerContext(graph, lp, [np.asarray(b.data, np.float32) for b in layer.blobs],
                           [current[b] for b in lp.bottom], [list(net.blobs[b].shape) for b in lp.bottom],
                           [list(net.blobs[t].shape) for t in lp.top], dynamic, where(lp.name))
        tops = CONVERTERS[lp.type](ctx)
        for top, tensor in zip(lp.top, tops):
            current[top] = tensor
            origin[top] = top

    # outputs: what the user asked for, else every unread blob and the score bottoms of removed layers
    if outputs or extra:
        unknown = [o for o in list(outputs or []) + extra if o not in current]
        if unknown:
            raise NetError("--output %s: no such blob in the %s net" % (", ".join(unknown), "exported"),
                           file=where.source, field="output")
    if outputs:
        wanted = list(outputs)
    else:
        wanted = [origin.get(b, b) for b in list(net.outputs) + scores]
        wanted = [b for b in dict.fromkeys(wanted) if b in current and not (b in input_shapes and current[b] == b)]
    wanted = list(dict.fromkeys(wanted + extra))
    if not wanted:
        raise NetError("nothing to export: the net computes no output from its inputs (ask for one with --output)",
                       file=where.source)

    # names: each output (and where possible every blob) names the tensor holding its final value
    rename, final, names = {}, set(input_shapes), {}
    for out in wanted:
        t = current[out]
        # an in-place layer on an input: the input keeps the blob's name, the final value gets NAME:out
        graph_name = out if out not in final else graph.fresh(out + ":out")
        if t in input_shapes or t in rename:
            graph.nodes.append(helper.make_node("Identity", [t], [graph_name],
                                                name=graph.fresh("node/%s/Identity" % out)))
        else:
            rename[t] = graph_name
        final.add(graph_name)
        names[graph_name] = out
    for blob in blob_names:
        t = current.get(blob)
        if t is not None and t not in rename and t not in input_shapes and blob not in final:
            rename[t] = blob
            final.add(blob)
    for node in graph.nodes:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]

    # keep only what the outputs need
    needed, kept = set(names), []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    initializers = [t for t in graph.initializers if t.name in needed]
    graph_inputs = [n for n in input_shapes if n in needed]

    def info(tensor_name, shape, batch_dynamic):
        dims = list(shape)
        if batch_dynamic and dims:
            dims[0] = "N"
        return helper.make_tensor_value_info(tensor_name, onnx.TensorProto.FLOAT, dims)

    g = helper.make_graph(kept, name or net.name or "caffelite",
                          [info(n, input_shapes[n], dynamic) for n in graph_inputs],
                          [info(g, net.blobs[b].shape, dynamic) for g, b in names.items()], initializer=initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="caffelite",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    return Exported(model, net, {n: input_shapes[n] for n in graph_inputs}, list(names), names, where.source)


def save(model, path) -> None:
    """Write ``model``; weights beyond 2 GB go to external data (``<file>.data`` beside it)."""
    onnx = require_onnx()
    path = os.fspath(path)
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size >= TWO_GB - 2 ** 26:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, path)
