"""Layer: Caffe's template method around pycaffe's four hooks, and the layer registry.

Caffe: include/caffe/layer.hpp.  The lookup by type name (which imports every layer family) is in
caffelite/layer_factory.py, as Caffe keeps it in layer_factory.

A layer subclass overrides the hooks ``setup``, ``reshape``, ``forward`` and ``backward`` (the
names pycaffe gives Python layers, so a user's ``caffe.Layer`` subclass and ours look alike) and
declares its blob counts as class attributes (``exact_bottoms = 1``, ``min_tops = 1``, ...), which
Caffe's ``exact_num_bottom_blobs()`` & co. read.  The net calls the wrappers ``run_setup``, ``run_forward`` and
``run_backward``, which do what Caffe's non-virtual ``SetUp``/``Forward``/``Backward`` do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from caffelite.blob import Blob
from caffelite.common import TEST, TRAIN
from caffelite.compute.parallel import Tuner, single_threaded_blas
from caffelite.errors import BackwardError, LayerError
from caffelite.proto import caffe_pb2

__all__ = ["TRAIN", "TEST", "BlobVec", "Layer", "register_layer"]


class BlobVec(list):
    """A layer's parameter blobs: a list with pycaffe's ``add_blob(*shape)``."""

    def add_blob(self, *shape) -> Blob:
        blob = Blob(*shape)
        self.append(blob)
        return blob


class Layer:
    """Base of every layer: Caffe's ``Layer<float>`` with pycaffe's hook names.

    Attributes
    ----------
    layer_param : LayerParameter
        This layer's own copy of its parameters (loss layers may add a default loss weight).
    blobs : list of Blob
        Learnable parameters (weights, biases, statistics).
    phase : int
        ``TRAIN`` or ``TEST``.
    param_propagate_down : list of bool
        Whether each parameter blob gets a gradient.
    """

    type: str = ""

    # --- facts about the type: the net, `check` and `explain` all read them here -------------------
    # False where Caffe's Backward computes nothing: NOT_IMPLEMENTED (Accuracy, ArgMax, Threshold) or empty.
    has_backward: bool = True
    # Caffe's Backward is empty and nothing lies below (data layers, Input): a loss_weight on a top is
    # accepted, where on Accuracy/ArgMax/Threshold Caffe aborts in Backward (see loss_weight_aborts).
    empty_backward: bool = False
    is_loss: bool = False  # Caffe's LossLayer: its first top gets loss weight 1 unless the prototxt says otherwise
    label_bottom: int | None = None  # the bottom holding labels or targets (loss layers, Accuracy)
    default_normalization: int | None = None  # losses that read loss_param.normalization: their default mode
    weight_param: str | None = None  # layers with learnable weights: the sub-message holding weight_filler
    provides_data: bool = False  # a data layer: tops without bottoms, filled by the layer itself
    reads_source: bool = False  # a data layer reading the files its source names (absent files: unknown shapes)

    @classmethod
    def loss_weight_aborts(cls) -> bool:
        """Whether Caffe aborts (Backward NOT_IMPLEMENTED) when a top of this type carries a loss_weight."""
        return not cls.has_backward and not cls.empty_backward
    # False when the net that holds the layer never runs its backward (set by Net): forward may then skip
    # what only backward reads (MAX pooling's argmax).
    need_backward: bool = True

    def __init__(self, layer_param=None):
        param = caffe_pb2.LayerParameter()
        if layer_param is not None:
            param.CopyFrom(layer_param)
        if not param.type and type(self).type:
            param.type = type(self).type
        self.layer_param = param
        self.phase = param.phase
        self.blobs: list[Blob] = BlobVec()
        for bp in param.blobs:  # parameters given inline, as Caffe's Layer constructor reads them
            from caffelite.protoio import blob_from_proto
            self.blobs.append(blob_from_proto(bp))
        self.param_propagate_down: list[bool] = []
        self._loss: list[float] = []

    @classmethod
    def create(cls, layer_param) -> Layer:
        """Factory used by the registry (the Python layer overrides it to load user classes)."""
        return cls(layer_param)

    # --- pycaffe-style identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.layer_param.name

    def layer_type(self) -> str:
        return self.layer_param.type or type(self).type

    # --- blob-count contract (Caffe's ExactNumBottomBlobs & co.) ---------------------------------
    # A subclass states its counts as class attributes (-1 means unchecked); the Caffe-named methods
    # below read them, and the few layers whose counts depend on their parameters override a method.
    exact_bottoms: int = -1
    min_bottoms: int = -1
    max_bottoms: int = -1
    exact_tops: int = -1
    min_tops: int = -1
    max_tops: int = -1
    equal_bottoms_tops: bool = False
    auto_tops: bool = False  # the net creates anonymous tops up to the required count

    def exact_num_bottom_blobs(self) -> int:
        return self.exact_bottoms

    def min_bottom_blobs(self) -> int:
        return self.min_bottoms

    def max_bottom_blobs(self) -> int:
        return self.max_bottoms

    def exact_num_top_blobs(self) -> int:
        return self.exact_tops

    def min_top_blobs(self) -> int:
        return self.min_tops

    def max_top_blobs(self) -> int:
        return self.max_tops

    def equal_num_bottom_top_blobs(self) -> bool:
        return self.equal_bottoms_tops

    def auto_top_blobs(self) -> bool:
        """Whether the net should create anonymous tops up to the required count."""
        return self.auto_tops

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Whether ``force_backward`` may send a gradient to this bottom (False for labels etc.)."""
        return self.has_backward

    # --- hooks (override these) ---------------------------------------------------------------
    def setup(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """One-time setup: read parameters, create learnable blobs (Caffe's LayerSetUp)."""

    def reshape(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Shape the tops (and internal buffers) from the bottoms."""
        raise NotImplementedError("%s layer does not implement reshape" % self.layer_type())

    def forward(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        raise NotImplementedError("%s layer does not implement forward" % self.layer_type())

    def backward(self, top: Sequence[Blob], propagate_down: Sequence[bool],
                 bottom: Sequence[Blob]) -> None:
        raise BackwardError("%s Layer cannot backpropagate (Caffe: NOT_IMPLEMENTED)" % self.layer_type())

    # --- Caffe's template methods ---------------------------------------------------------------
    def run_setup(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Caffe's Layer::SetUp: check blob counts, set up, reshape, store loss weights."""
        self.check_blob_counts(bottom, top)
        self.setup(bottom, top)
        self.reshape(bottom, top)
        self.set_loss_weights(top)

    def run_forward(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> float:
        """Caffe's Layer::Forward: reshape, forward, and return the weighted loss of the tops."""
        self.reshape(bottom, top)
        with single_threaded_blas():  # our threads over a one-thread BLAS (a no-op inside a net pass)
            self.forward(bottom, top)
        loss = 0.0
        for top_id, weight in enumerate(self._loss):
            if weight:
                blob = top[top_id]
                if not blob.has_diff:  # the top was reallocated: restore its loss multiplier
                    blob.diff[...] = weight
                loss += float(np.dot(blob.data.ravel(), blob.diff.ravel()))
        return loss

    def run_backward(self, top: Sequence[Blob], propagate_down: Sequence[bool],
                     bottom: Sequence[Blob]) -> None:
        """Caffe's Layer::Backward."""
        if not self.has_backward and not any(propagate_down):
            return
        with single_threaded_blas():
            self.backward(top, propagate_down, bottom)

    def tuner(self, role: str, size: int) -> Tuner:
        """This layer's :class:`~caffelite.compute.parallel.Tuner` for ``role`` on ``size`` values: whether
        its parts go to threads, from the timings of its own calls."""
        tuners = self.__dict__.setdefault("_parts_tuners", {})
        t = tuners.get((role, size))
        if t is None:
            t = tuners[(role, size)] = Tuner()
        return t

    def check_blob_counts(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Caffe's Layer::CheckBlobCounts, with its messages."""
        t = self.layer_type()
        nb, nt = len(bottom), len(top)
        checks = [
            (self.exact_num_bottom_blobs(), lambda n: n == nb, "takes %d bottom blob(s) as input."),
            (self.min_bottom_blobs(), lambda n: n <= nb, "takes at least %d bottom blob(s) as input."),
            (self.max_bottom_blobs(), lambda n: n >= nb, "takes at most %d bottom blob(s) as input."),
            (self.exact_num_top_blobs(), lambda n: n == nt, "produces %d top blob(s) as output."),
            (self.min_top_blobs(), lambda n: n <= nt, "produces at least %d top blob(s) as output."),
            (self.max_top_blobs(), lambda n: n >= nt, "produces at most %d top blob(s) as output."),
        ]
        for expected, ok, text in checks:
            if expected >= 0 and not ok(expected):
                raise LayerError("%s Layer %s (got %d bottom(s), %d top(s))"
                                 % (t, text % expected, nb, nt), field="bottom" if "bottom" in text else "top")
        if self.equal_num_bottom_top_blobs() and nb != nt:
            raise LayerError("%s Layer produces one top blob as output for each bottom blob input."
                             " (got %d bottom(s), %d top(s))" % (t, nb, nt), field="top")

    def set_loss_weights(self, top: Sequence[Blob]) -> None:
        """Caffe's SetLossWeights: one weight per top, stored as that top's diff."""
        weights = list(self.layer_param.loss_weight)
        self._loss = [0.0] * len(top)
        if not weights:
            return
        if len(weights) != len(top):
            raise LayerError("loss_weight must be unspecified or specified once per top blob."
                             " (%d weight(s), %d top(s))" % (len(weights), len(top)), field="loss_weight")
        for top_id, weight in enumerate(weights):
            if weight:
                self._loss[top_id] = float(weight)
                top[top_id].diff[...] = weight

    def loss(self, top_index: int) -> float:
        return self._loss[top_index] if top_index < len(self._loss) else 0.0

    def set_loss(self, top_index: int, value: float) -> None:
        if len(self._loss) <= top_index:
            self._loss.extend([0.0] * (top_index + 1 - len(self._loss)))
        self._loss[top_index] = float(value)

    def param_propagate_down_at(self, param_id: int) -> bool:
        return param_id < len(self.param_propagate_down) and self.param_propagate_down[param_id]

    def set_param_propagate_down(self, param_id: int, value: bool) -> None:
        if len(self.param_propagate_down) <= param_id:
            self.param_propagate_down.extend([True] * (param_id + 1 - len(self.param_propagate_down)))
        self.param_propagate_down[param_id] = bool(value)

    def __repr__(self) -> str:
        return "<%s '%s'>" % (type(self).__name__, self.name)


# --- registry ----------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Class decorator: register ``cls`` under its Caffe type name ``cls.type``."""
    if not cls.type:
        raise TypeError("%s has no Caffe type name" % cls.__name__)
    if cls.type in _REGISTRY and _REGISTRY[cls.type] is not cls:
        raise TypeError("Layer type %s already registered." % cls.type)
    _REGISTRY[cls.type] = cls
    return cls
