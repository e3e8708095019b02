"""Layers whose data is in memory, not in files: Input, DummyData and MemoryData.

Caffe: src/caffe/layers/{input,dummy_data,memory_data}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer
from caffelite.layers.base_data import DataLayerBase, check_batch_size
from caffelite.proto import caffe_pb2


@register_layer
class InputLayer(Layer):
    """Declares the net's inputs: each top gets a shape from ``input_param.shape``.

    The shape is given 0 times (tops shaped later by the user), once (every top), or once per top.
    The user fills the data; forward and backward do nothing.
    """

    type = "Input"
    empty_backward = True
    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom, top):
        shapes = self.layer_param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise LayerError("input_param.shape must be specified either 0, 1 or N times "
                             "(N = %d tops, %d shapes given)" % (len(top), len(shapes)), field="input_param.shape")
        for i, blob in enumerate(top):
            if shapes:
                blob.reshape(tuple(shapes[0 if len(shapes) == 1 else i].dim))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register_layer
class DummyDataLayer(Layer):
    """Tops filled by fillers: constant ones once at setup, random ones at every forward.

    Shapes come from ``shape`` (once, or once per top) or the legacy ``num``/``channels``/
    ``height``/``width`` lists; fillers from ``data_filler`` (0, 1 or one per top; default constant 0).
    """

    type = "DummyData"
    empty_backward = True
    provides_data = True
    exact_bottoms = 0
    min_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.dummy_data_param
        n = len(top)
        nf = len(p.data_filler)
        if nf not in (0, 1, n):
            raise LayerError("Number of data fillers must be 0, 1 or equal to the number of tops: %d; "
                             "you specified %d data fillers." % (n, nf), field="dummy_data_param.data_filler")
        legacy = len(p.num) or len(p.channels) or len(p.height) or len(p.width)
        if legacy:
            if len(p.shape):
                raise LayerError("Both shape and legacy fields were specified", field="dummy_data_param.shape")
            for field in ("num", "channels", "height", "width"):
                k = len(getattr(p, field))
                if k not in (1, n):
                    raise LayerError("Must specify '%s' once, or once per top blob (%d); specified %d."
                                     % (field, n, k), field="dummy_data_param." + field)
        elif len(p.shape) not in (1, n):
            raise LayerError("Must specify 'shape' once, or once per top blob (%d); specified %d."
                             % (n, len(p.shape)), field="dummy_data_param.shape")
        if nf <= 1:
            fillers = [p.data_filler[0] if nf else caffe_pb2.FillerParameter(type="constant", value=0)]
        else:
            fillers = list(p.data_filler)
        self._fillers = fillers
        self._refill = [f.type != "constant" for f in fillers]
        for i, blob in enumerate(top):
            if legacy:
                def pick(values, i=i):
                    return values[0 if len(values) == 1 else i]
                blob.reshape(pick(p.num), pick(p.channels), pick(p.height), pick(p.width))
            else:
                blob.reshape(tuple(p.shape[0 if len(p.shape) == 1 else i].dim))
            f = fillers[i if len(fillers) > 1 else 0]
            if f.type == "constant":  # filled once; random fillers refill at every forward
                fill(blob, f)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        for i, blob in enumerate(top):
            k = i if len(self._fillers) > 1 else 0
            if self._refill[k]:
                fill(blob, self._fillers[k])

    def backward(self, top, propagate_down, bottom):
        pass


@register_layer
class MemoryDataLayer(DataLayerBase):
    r"""Serves batches from arrays the user hands over with ``net.set_input_arrays(data, labels)``.

    Top 0: ``batch_size`` x ``channels`` x ``height`` x ``width``; top 1: the ``batch_size``
    labels.  Each forward serves the next ``batch_size`` rows and wraps around.  The arrays are
    not transformed (Caffe's Reset() ignores ``transform_param`` too).

    Caffe: src/caffe/layers/memory_data_layer.cpp, python/caffe/_caffe.cpp (``set_input_arrays``).
    """

    type = "MemoryData"
    exact_tops = 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size, self.channels, self.height, self.width = \
            p.batch_size, p.channels, p.height, p.width
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise LayerError("batch_size, channels, height, and width must be specified and positive in "
                             "memory_data_param (got %d, %d, %d, %d)"
                             % (self.batch_size, self.channels, self.height, self.width),
                             field="memory_data_param")
        self._data: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self.n = 0
        self.pos = 0
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def reset(self, data: np.ndarray, labels: np.ndarray, n: int | None = None) -> None:
        """Caffe's MemoryDataLayer::Reset: serve ``data`` (N x C x H x W) and ``labels`` (N) from row 0."""
        n = len(data) if n is None else int(n)
        if n % self.batch_size:
            raise ShapeError("n must be a multiple of batch size (n = %d, batch_size = %d)" % (n, self.batch_size),
                             field="memory_data_param.batch_size")
        self._data = np.asarray(data).reshape(n, self.channels, self.height, self.width)
        self._labels = np.asarray(labels).reshape(n)
        self.n = n
        self.pos = 0

    def set_batch_size(self, new_size: int) -> None:
        """Caffe's MemoryDataLayer::set_batch_size (not allowed once arrays are set)."""
        if self._data is not None:
            raise LayerError("Can't change batch_size until current data is consumed.",
                             field="memory_data_param.batch_size")
        self.batch_size = check_batch_size(new_size, "memory_data_param.batch_size")

    def forward(self, bottom, top):
        if self._data is None:
            raise LayerError("MemoryDataLayer needs to be initialized by calling Reset "
                             "(net.set_input_arrays(data, labels))")
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)
        rows = slice(self.pos, self.pos + self.batch_size)
        top[0].data[...] = self._data[rows]
        top[1].data[...] = self._labels[rows]
        self.pos = (self.pos + self.batch_size) % self.n

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's ``Net.set_input_arrays``, with its checks and messages (Net calls it on its first layer).

        ``data``: C-contiguous float32 N x C x H x W; ``labels``: float32 N (or N x 1 x 1 x 1);
        N a multiple of ``batch_size``.  Caffe: python/caffe/_caffe.cpp.
        """
        labels = np.asarray(labels)
        if labels.ndim == 1:  # pycaffe accepts 1-D labels and makes them N x 1 x 1 x 1
            labels = np.ascontiguousarray(labels[:, None, None, None])
        for name, arr, dims in (("data array", np.asarray(data), (self.channels, self.height, self.width)),
                                ("labels array", labels, (1, 1, 1))):
            if not arr.flags["C_CONTIGUOUS"]:
                raise ShapeError("%s must be C contiguous" % name)
            if arr.ndim != 4:
                raise ShapeError("%s must be 4-d (got shape %s)" % (name, list(arr.shape)))
            if arr.dtype != np.float32:
                raise ShapeError("%s must be float32 (got %s)" % (name, arr.dtype))
            for axis, what in ((1, "channels"), (2, "height"), (3, "width")):
                if arr.shape[axis] != dims[axis - 1]:
                    raise ShapeError("%s has wrong %s (got %d, expected %d)"
                                     % (name, "number of channels" if what == "channels" else what,
                                        arr.shape[axis], dims[axis - 1]))
        data = np.asarray(data)
        if data.shape[0] != labels.shape[0]:
            raise ShapeError("data and labels must have the same first dimension (%d vs %d)"
                             % (data.shape[0], labels.shape[0]))
        if data.shape[0] % self.batch_size:
            raise ShapeError("first dimensions of input arrays must be a multiple of batch size "
                             "(%d rows, batch_size %d)" % (data.shape[0], self.batch_size))
        self.reset(data, labels, data.shape[0])
