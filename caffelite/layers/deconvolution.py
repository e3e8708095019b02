r"""Deconvolution: Convolution's backward pass w.r.t. its input, as a layer.

Caffe: src/caffe/layers/deconv_layer.cpp.  Shares BaseConvolution (geometry, weights, columns) with
Convolution in vision.py; output size :math:`o = s(i-1) + d(k-1) + 1 - 2p` per spatial axis.
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.compute import parallel
from caffelite.layer import register_layer
from caffelite.layers.vision import BaseConvolution, from_rows, image_chunks, to_rows


@register_layer
class DeconvolutionLayer(BaseConvolution):
    r"""Transposed convolution: the forward pass is Convolution's backward pass w.r.t. its input.

    Weights :math:`(C_{in}, C_{out}/g, k_1, \ldots, k_d)` (Caffe's layout: the bottom's channels
    first); :math:`Y = \mathrm{col2im}(W_g^\top X_g) + b`, with output size
    :math:`o = s(i-1) + d(k-1) + 1 - 2p` per spatial axis.

    Caffe: src/caffe/layers/deconv_layer.cpp.
    """

    type = "Deconvolution"
    weight_param = "convolution_param"
    reverse = True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        per_image = self.num_output * math.prod(self.geom.kernel) * math.prod(self.in_spatial) * 4
        self.chunks = image_chunks(self.num, per_image)
        if getattr(self, "tuned_shape", None) != bottom[0].shape:
            self.tuner_forward, self.tuned_shape = parallel.Tuner(), bottom[0].shape

    def forward(self, bottom, top):
        w = self._w()
        kdim, gi = w.shape[1], self.channels // self.group
        for b, t in zip(bottom, top):
            x3 = b.data.reshape(self.num, self.channels, -1)
            y = self._nd(t.data, self.num_output, self.out_spatial)
            for n0, n1 in self.chunks:
                x = to_rows(x3[n0:n1])
                cols = np.empty((kdim * self.group, x.shape[1]), x.dtype)
                if self.group == 1:  # the product's tiles, in threads when they pay
                    parallel.matmul(w.T, x, cols, self.tuner_forward)
                else:
                    for g in range(self.group):
                        np.matmul(w[g * gi:(g + 1) * gi].T, x[g * gi:(g + 1) * gi],
                                  out=cols[g * kdim:(g + 1) * kdim])
                self.geom.col2im(cols, y[n0:n1])
            if self.bias_term:
                y.reshape(self.num, self.num_output, -1)[...] += self.blobs[1].data[:, None]

    def backward(self, top, propagate_down, bottom):
        w = self._w()
        kdim, gi = w.shape[1], self.channels // self.group
        need_w = self.param_propagate_down_at(0)
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = self._nd(t.diff, self.num_output, self.out_spatial)
            if self.bias_term and self.param_propagate_down_at(1):
                self.blobs[1].diff += dy.reshape(self.num, self.num_output, -1).sum(axis=(0, 2))
            if not (need_w or propagate_down[i]):
                continue
            x3 = b.data.reshape(self.num, self.channels, -1)
            dx3 = b.diff.reshape(self.num, self.channels, -1)
            dw = self._w("diff")
            for n0, n1 in self.chunks:
                dcols = self.geom.cols(dy[n0:n1], self.in_spatial)
                if need_w:
                    x = to_rows(x3[n0:n1])
                    for g in range(self.group):
                        dw[g * gi:(g + 1) * gi] += x[g * gi:(g + 1) * gi] @ dcols[g * kdim:(g + 1) * kdim].T
                if propagate_down[i]:
                    dx = np.empty((self.channels, dcols.shape[1]), dcols.dtype)
                    for g in range(self.group):
                        np.matmul(w[g * gi:(g + 1) * gi], dcols[g * kdim:(g + 1) * kdim],
                                  out=dx[g * gi:(g + 1) * gi])
                    from_rows(dx, dx3[n0:n1])
