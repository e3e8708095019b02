"""Layers that produce blobs without bottoms: Input and DummyData.

Caffe: src/caffe/layers/input_layer.cpp, src/caffe/layers/dummy_data_layer.cpp.
Layers that read datasets from files live in caffelite/layers/data_files.py.
"""

from __future__ import annotations

from caffelite.errors import LayerError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer
from caffelite.proto import caffe_pb2


@register_layer
class InputLayer(Layer):
    """Declares the net's inputs: each top gets a shape from ``input_param.shape``.

    The shape is given 0 times (tops shaped later by the user), once (every top), or once per top.
    The user fills the data; forward and backward do nothing.
    """

    type = "Input"
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
