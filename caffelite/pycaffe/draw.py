"""``caffe.draw``: pycaffe's net drawing (a NetParameter as a pydot graph), on caffelite.

pycaffe: python/caffe/draw.py.  Same functions and arguments; pydot is an optional extra
(``pip install caffelite[draw]``) and rendering to an image needs Graphviz's ``dot``.
``caffelite draw`` (caffelite/draw.py) writes DOT without either.
"""

from __future__ import annotations

from caffelite.errors import MissingDependencyError
from caffelite.net_passes import is_in_place, layer_included
from caffelite.proto import caffe_pb2

__all__ = ["get_pooling_types_dict", "get_edge_label", "get_layer_lr_mult", "get_layer_label",
           "choose_color_by_layertype", "get_pydot_graph", "draw_net", "draw_net_to_file"]

LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}


def _pydot():
    try:
        import pydot
    except ImportError:
        raise MissingDependencyError("caffe.draw needs pydot: pip install caffelite[draw] "
                                     "(and Graphviz's `dot` to render images)") from None
    return pydot


def get_pooling_types_dict() -> dict[int, str]:
    """Pooling method number -> name (MAX, AVE, STOCHASTIC)."""
    desc = caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR
    return {v.number: name for name, v in desc.values_by_name.items()}


def get_edge_label(layer) -> str | None:
    """The label of a layer's output edges: batch size for Data, num_output for conv and fc."""
    if layer.type == "Data":
        return "Batch " + str(layer.data_param.batch_size)
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return None


def get_layer_lr_mult(layer) -> str:
    """The lr_mult of a Convolution/Deconvolution/InnerProduct's weights and bias, for labels."""
    lr_mult = decay_mult = ""
    if layer.type in ("Convolution", "Deconvolution", "InnerProduct"):
        params = list(layer.param)
        weight = params[0].lr_mult if params else 1.0
        bias = params[1].lr_mult if len(params) > 1 else 1.0
        lr_mult = "lr mult: %.2f, %.2f" % (weight, bias)
        decay_mult = ""
    return lr_mult + decay_mult


def get_layer_label(layer, rankdir: str, display_lrm: bool = False) -> str:
    """The node label: name and type, plus kernel/stride/pad for convolution and pooling."""
    separator = " " if rankdir in ("TB", "BT") else "\\n"
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        kernel = p.kernel_size[0] if len(p.kernel_size) else 1
        stride = p.stride[0] if len(p.stride) else 1
        pad = p.pad[0] if len(p.pad) else 0
        label = '"%s%s(%s)%skernel size: %d%sstride: %d%spad: %d' % (
            layer.name, separator, layer.type, separator, kernel, separator, stride, separator, pad)
    elif layer.type == "Pooling":
        p = layer.pooling_param
        label = '"%s%s(%s %s)%skernel size: %d%sstride: %d%spad: %d' % (
            layer.name, separator, get_pooling_types_dict()[p.pool], layer.type, separator, p.kernel_size,
            separator, p.stride, separator, p.pad)
    else:
        label = '"%s%s(%s)' % (layer.name, separator, layer.type)
    if display_lrm and get_layer_lr_mult(layer):
        label += separator + get_layer_lr_mult(layer)
    return label + '"'


def choose_color_by_layertype(layertype: str) -> str:
    """pycaffe's colours: convolutions red, pooling orange, inner products purple, others blue."""
    if layertype in ("Convolution", "Deconvolution"):
        return "#FF5050"
    if layertype == "Pooling":
        return "#FF9900"
    if layertype == "InnerProduct":
        return "#CC33FF"
    return "#6495ED"


def _included(layer, phase) -> bool:
    """pycaffe draws every layer without a phase, else those FilterNet keeps in that phase."""
    return phase is None or layer_included(caffe_pb2.NetState(phase=phase), layer)


def get_pydot_graph(caffe_net, rankdir: str, label_edges: bool = True, phase=None, display_lrm: bool = False):
    """A pydot graph of the NetParameter ``caffe_net`` (layers as records, blobs as octagons)."""
    pydot = _pydot()
    graph = pydot.Dot(caffe_net.name if caffe_net.name else "Net", graph_type="digraph", rankdir=rankdir)
    nodes: dict = {}
    edges: list = []
    for layer in caffe_net.layer:
        if not _included(layer, phase):
            continue
        node_name = "%s_%s" % (layer.name, layer.type)
        label = get_layer_label(layer, rankdir, display_lrm)
        if len(layer.bottom) == 1 and len(layer.top) == 1 and is_in_place(layer, 0):
            nodes[node_name] = pydot.Node(label, **NEURON_LAYER_STYLE)
        else:
            style = dict(LAYER_STYLE_DEFAULT, fillcolor=choose_color_by_layertype(layer.type))
            nodes[node_name] = pydot.Node(label, **style)
        for bottom in layer.bottom:
            nodes[bottom + "_blob"] = pydot.Node("%s" % bottom, **BLOB_STYLE)
            edges.append((bottom + "_blob", node_name, '""'))
        for top in layer.top:
            nodes[top + "_blob"] = pydot.Node("%s" % top)
            edge_label = (get_edge_label(layer) if label_edges else None) or '""'
            edges.append((node_name, top + "_blob", edge_label))
    for node in nodes.values():
        graph.add_node(node)
    for src, dst, label in edges:
        graph.add_edge(pydot.Edge(nodes[src], nodes[dst], label=label))
    return graph


def draw_net(caffe_net, rankdir: str, ext: str = "png", phase=None, display_lrm: bool = False) -> bytes:
    """The drawing of ``caffe_net`` encoded as ``ext`` (png, svg, pdf, dot, raw, ...)."""
    return get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm).create(format=ext)


def draw_net_to_file(caffe_net, filename: str, rankdir: str = "LR", phase=None, display_lrm: bool = False) -> None:
    """Draw ``caffe_net`` into ``filename``, in the format its extension names."""
    ext = filename[filename.rfind(".") + 1:]
    with open(filename, "wb") as f:
        f.write(draw_net(caffe_net, rankdir, ext, phase, display_lrm))
