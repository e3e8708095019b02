r"""Blob plumbing the net inserts or the user adds: Split (one blob to many consumers) and Silence
(blobs consumed by nobody).

Caffe: src/caffe/layers/split_layer.cpp, src/caffe/layers/silence_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import LayerError
from caffelite.layer import Layer, register_layer


@register_layer
class SplitLayer(Layer):
    r"""Copies one bottom to several tops (sharing its data); the net inserts it for fan-out.

    .. math:: y_k = x, \qquad \frac{\partial E}{\partial x} = \sum_k \frac{\partial E}{\partial y_k}

    Caffe: src/caffe/layers/split_layer.cpp.
    """

    type = "Split"
    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom, top):
        for i, t in enumerate(top):
            if t is bottom[0]:
                raise LayerError("Split Layer does not allow in-place computation. (top %d)" % i, field="top")
            t.alias(bottom[0])

    def forward(self, bottom, top):
        for t in top:  # the bottom may have been reallocated since reshape
            if t.data is not bottom[0].data:
                t.alias(bottom[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        if len(top) == 1:
            np.copyto(dx, top[0].diff)
            return
        np.add(top[0].diff, top[1].diff, out=dx)
        for t in top[2:]:
            dx += t.diff


@register_layer
class SilenceLayer(Layer):
    """Consumes bottoms so they are not net outputs; backward writes zero gradients.

    Caffe: src/caffe/layers/silence_layer.cpp.
    """

    type = "Silence"
    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for pd, b in zip(propagate_down, bottom):
            if pd:
                b.diff[...] = 0
