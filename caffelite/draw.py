"""``caffelite draw``: a net as a graph, written as Graphviz DOT (and rendered by ``dot`` if installed).

pycaffe: python/caffe/draw.py (layers as boxes, blobs as octagons, ``rankdir``).  Unlike
pycaffe, in-place layers (ReLU, Dropout, BatchNorm/Scale written ``bottom: x top: x``) are folded
into the node of the layer that produced their blob, so a conv–ReLU pair is one box; blob shapes
(inferred by :mod:`caffelite.shape_inference`, which never imports Python layers unless asked) can
label the edges.  Writing DOT needs nothing; SVG/PNG/PDF need Graphviz's ``dot`` program.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from caffelite.common import TEST, TRAIN
from caffelite.errors import UnsupportedError
from caffelite.net_passes import filter_net, is_in_place
from caffelite.proto import caffe_pb2
from caffelite.shape_inference import infer_shapes_in_phase
from caffelite.upgrade import read_net_param

__all__ = ["net_to_dot", "draw_file", "layer_label"]

LAYER_COLOR = "#6495ED"
LOSS_COLOR = "#F4A460"
DATA_COLOR = "#90EE90"
BLOB_COLOR = "#E0E0E0"


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _is_in_place(lp) -> bool:
    """Every top computed in place (``bottom: x top: x``): the layer folds into its input's producer."""
    return len(lp.top) > 0 and len(lp.top) == len(lp.bottom) and all(is_in_place(lp, j) for j in range(len(lp.top)))


def layer_label(lp) -> str:
    """Name, type and the parameters that decide its output shape (as pycaffe's draw shows)."""
    lines = [lp.name, "(%s)" % lp.type]
    if lp.type in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        k = list(p.kernel_size) or [p.kernel_h, p.kernel_w]
        lines.append("k %s s %s p %s → %d" % ("x".join(map(str, k)), "x".join(map(str, p.stride)) or "1",
                                             "x".join(map(str, p.pad)) or "0", p.num_output))
    elif lp.type == "Pooling":
        p = lp.pooling_param
        pool = caffe_pb2.PoolingParameter.PoolMethod.Name(p.pool)
        lines.append("global %s" % pool if p.global_pooling else "%s k %d s %d p %d" % (
            pool, p.kernel_size or p.kernel_h, p.stride, p.pad))
    elif lp.type == "InnerProduct":
        lines.append("→ %d" % lp.inner_product_param.num_output)
    return "\n".join(lines)


def net_to_dot(param, *, shapes: dict | None = None, rankdir: str = "TB") -> str:
    """DOT text of a (filtered) NetParameter; ``shapes`` (blob -> shape or None) labels the edges."""
    shapes = shapes or {}
    lines = ["digraph %s {" % _q(param.name or "net"), "  rankdir=%s;" % rankdir,
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    producer: dict[str, str] = {}  # blob -> node id of the layer that last wrote it (in-place folded)
    labels: dict[str, list[str]] = {}
    order: list[tuple[str, object]] = []
    for i, lp in enumerate(param.layer):
        if _is_in_place(lp) and all(b in producer for b in lp.bottom):
            labels[producer[lp.bottom[0]]].append("+ %s (%s)" % (lp.name, lp.type))
            continue
        node = "layer%d" % i
        labels[node] = [layer_label(lp)]
        order.append((node, lp))
        for t in lp.top:
            producer[t] = node
    for node, lp in order:
        color = (LOSS_COLOR if lp.type.endswith("Loss") or lp.type == "Accuracy" else
                 DATA_COLOR if not len(lp.bottom) else LAYER_COLOR)
        lines.append("  %s [shape=box, style=filled, fillcolor=%s, label=%s];"
                     % (node, _q(color), _q("\n".join(labels[node]))))
    blobs = []
    for _, lp in order:
        for b in list(lp.bottom) + list(lp.top):
            if b not in blobs:
                blobs.append(b)
    for b in blobs:
        lines.append("  %s [shape=octagon, style=filled, fillcolor=%s, label=%s];"
                     % (_q("blob:" + b), _q(BLOB_COLOR), _q(b)))

    def edge(src, dst, blob):
        shape = shapes.get(blob)
        attr = ""
        if blob in shapes:
            attr = " [label=%s]" % _q("?" if shape is None else "x".join(map(str, shape)) or "scalar")
        lines.append("  %s -> %s%s;" % (src, dst, attr))

    for node, lp in order:
        for b in lp.bottom:
            edge(_q("blob:" + b), node, b)
        for t in lp.top:
            edge(node, _q("blob:" + t), t)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_file(path: str, output: str, *, phase: int | None = None, show_shapes: bool = False,
              rankdir: str = "TB", inputs: dict | None = None, allow_python_layers: bool = False) -> str:
    """Draw the net at ``path`` into ``output`` (.dot written directly; other extensions via ``dot``).

    ``phase`` None draws every layer (pycaffe's draw_net default); TRAIN or TEST filters first.
    Returns the DOT text.
    """
    param = read_net_param(path)
    shapes = None
    if show_shapes:
        shapes = infer_shapes_in_phase(param, TEST if phase == TEST else TRAIN, inputs,
                                       allow_python_layers=allow_python_layers, source=path)
    if phase is not None:
        param.state.phase = phase
        param = filter_net(param, path)
    dot = net_to_dot(param, shapes=shapes, rankdir=rankdir)
    ext = os.path.splitext(output)[1].lower().lstrip(".")
    if ext in ("dot", "gv", ""):
        with open(output, "w", encoding="utf-8") as f:
            f.write(dot)
        return dot
    exe = shutil.which("dot")
    if exe is None:
        raise UnsupportedError("Graphviz's `dot` program is not installed, so %s cannot be rendered; install "
                               "graphviz, or write a .dot file (-o net.dot)" % output, file=output)
    proc = subprocess.run([exe, "-T" + ext, "-o", output], input=dot.encode("utf-8"), capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise UnsupportedError("dot -T%s failed: %s" % (ext, proc.stderr.decode("utf-8", "replace").strip()),
                               file=output)
    return dot
