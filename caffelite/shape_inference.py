"""Blob shapes of a net without running it: each layer is set up on blobs of its bottoms' shapes.

The layers' own ``setup`` (Caffe's LayerSetUp + Reshape) computes the tops' shapes, so shapes
follow exactly the code that will run.  Random fillers become constant 0 first (VGG's fc6 has
100M weights; shapes need no random numbers).  A shape that cannot be known (a data file absent,
a Python layer not imported, a layer type caffelite lacks, a layer that refuses its bottoms) is
None, and so is every shape computed from it: inference never stops at the first unknown.

Used by ``caffelite check`` (which reports why a shape is unknown) and ``caffelite draw``
(edge labels).  Python-layer modules are imported only when ``allow_python_layers`` is true: a
prototxt may come from anyone.
"""

from __future__ import annotations

from caffelite.blob import Blob
from caffelite.errors import CaffeliteError
from caffelite.layer_factory import layer_class
from caffelite.net_passes import filter_net, is_in_place, num_top_blobs, set_state
from caffelite.proto import caffe_pb2

__all__ = ["ShapeInference", "infer_shapes", "infer_shapes_in_phase", "stage_variants", "net_input_shapes",
           "layer_top_shapes", "zero_random_fillers"]

Shape = tuple[int, ...]

_RANDOM_FILLERS = {"constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra"}


def zero_random_fillers(msg) -> None:
    """Turn every known filler of ``msg`` (recursively) into constant 0, in place.

    Unknown filler names stay, so the layer still reports them.
    """
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        values = value if fd.is_repeated else [value]
        for v in values:
            if fd.message_type.name == "FillerParameter":
                if v.type in _RANDOM_FILLERS:
                    v.type, v.value, v.sparse = "constant", 0.0, -1
            else:
                zero_random_fillers(v)


def layer_top_shapes(layer_param, cls, bottom_shapes: list[Shape], param_shapes: list | None = None) -> list[Shape]:
    """The top shapes of layer class ``cls`` set up on blobs of ``bottom_shapes``.

    In-place tops share their bottom's blob and automatic tops are added, as Net's wiring does
    (:mod:`caffelite.net_passes`).  Raises what the layer's setup raises.  ``param_shapes``, when
    given, receives the shapes of the layer's parameter blobs.
    """
    lp = caffe_pb2.LayerParameter()
    lp.CopyFrom(layer_param)
    zero_random_fillers(lp)
    layer = cls.create(lp)
    bottom = [Blob(s) for s in bottom_shapes]
    top = [bottom[j] if is_in_place(lp, j) else Blob() for j in range(len(lp.top))]
    top.extend(Blob() for _ in range(len(top), num_top_blobs(layer, len(top))))
    layer.run_setup(bottom, top)
    if param_shapes is not None:
        param_shapes.extend(tuple(b.shape) for b in layer.blobs)
    return [tuple(b.shape) for b in top]


def net_input_shapes(param, given: dict[str, Shape]) -> dict[str, Shape | None]:
    """Shapes of the net-level ``input`` blobs (``input_shape`` or 4-d ``input_dim``); ``given`` wins."""
    shapes: dict[str, Shape | None] = {}
    for i, name in enumerate(param.input):
        shape = None
        if i < len(param.input_shape):
            shape = tuple(param.input_shape[i].dim)
        elif len(param.input_dim) >= 4 * (i + 1):
            shape = tuple(param.input_dim[4 * i:4 * i + 4])
        shapes[name] = given.get(name, shape)
    return shapes


class ShapeInference:
    """Blob name -> shape (None: unknown) of a filtered net, one layer at a time, in net order.

    ``inputs`` (blob -> shape) gives the tops of bottomless layers (data layers whose files are
    absent, Python layers) and overrides any top it names.  Bottoms no earlier layer produces
    stay out of :attr:`shapes`, so a caller can tell "unknown bottom" from "unknown shape".
    """

    def __init__(self, param, inputs: dict[str, Shape] | None = None):
        self.inputs = dict(inputs or {})
        self.shapes: dict[str, Shape | None] = net_input_shapes(param, self.inputs)
        self.param_shapes: dict[str, list[Shape]] = {}  # layer name -> its parameter blobs' shapes, when set up

    def bottom_shapes(self, layer_param) -> list[Shape | None]:
        return [self.shapes.get(b) for b in layer_param.bottom]

    def add_layer(self, layer_param, cls) -> Exception | None:
        """Infer and record ``layer_param``'s top shapes; what its setup raised, if anything.

        ``cls`` None (the type cannot be set up here) makes the tops unknown unless given.
        """
        lp = layer_param
        error = None
        tops: list | None = None
        given = [self.inputs.get(t) for t in lp.top]
        bottoms_known = all(self.shapes.get(b) is not None for b in lp.bottom)
        if len(lp.top) and all(g is not None for g in given) and not len(lp.bottom):
            tops = given  # --input wins over files and Python modules
        elif cls is not None and bottoms_known:
            params: list[Shape] = []
            try:
                tops = layer_top_shapes(lp, cls, [self.shapes[b] for b in lp.bottom], params)
                self.param_shapes[lp.name] = params
            except Exception as e:  # noqa: BLE001 - inference goes on; the caller decides what it means
                error = e
        for j, t in enumerate(lp.top):
            shape = tops[j] if tops is not None and j < len(tops) else None
            if given[j] is not None:
                shape = given[j]
            self.shapes[t] = tuple(shape) if shape is not None else None
        return error


def infer_shapes(param, inputs: dict[str, Shape] | None = None, *,
                 allow_python_layers: bool = False) -> dict[str, list[int] | None]:
    """Blob name -> shape (None when unknown) of a filtered NetParameter (its ``state.phase`` is used).

    Never raises for a layer: a layer that cannot be set up leaves its tops unknown.
    """
    inference = ShapeInference(param, inputs)
    for layer_param in param.layer:
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(layer_param)
        if not lp.HasField("phase"):
            lp.phase = param.state.phase
        cls = None
        if lp.type != "Python" or allow_python_layers:
            try:
                cls = layer_class(lp.type)
            except CaffeliteError:
                pass
        inference.add_layer(lp, cls)
    return {n: (list(s) if s is not None else None) for n, s in inference.shapes.items()}


def stage_variants(param, stages: list[str] | None = None) -> list[tuple[str, ...]]:
    """The stage sets a net is meant to run with: ``stages`` when given, else its NetState's.

    A net whose rules mention stages while its state names none is run with one (DIGITS' train,
    val, deploy): then no stage, and each mentioned stage alone, in name order.
    """
    if stages is not None or len(param.state.stage):
        return [tuple(stages if stages is not None else param.state.stage)]
    mentioned = sorted({st for lp in param.layer for rule in list(lp.include) + list(lp.exclude)
                        for st in list(rule.stage) + list(rule.not_stage)})
    return [()] + [(st,) for st in mentioned]


def infer_shapes_in_phase(param, phase: int, inputs: dict[str, Shape] | None = None, *,
                          allow_python_layers: bool = False, source: str | None = None) -> dict[str, list[int] | None]:
    """Blob name -> shape of an unfiltered net in ``phase``, filtered in each of its :func:`stage_variants`.

    The first variant that knows a blob's shape gives it.  Raises NetError where FilterNet does.
    """
    shapes: dict[str, list[int] | None] = {}
    for stages in stage_variants(param):
        state_param = caffe_pb2.NetParameter()
        state_param.CopyFrom(param)
        set_state(state_param.state, phase, stages)
        found = infer_shapes(filter_net(state_param, source), inputs, allow_python_layers=allow_python_layers)
        for name, shape in found.items():
            if shapes.get(name) is None:
                shapes[name] = shape
    return shapes
