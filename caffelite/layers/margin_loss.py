r"""Margin losses: HingeLoss (one-vs-all L1/L2 hinge) and ContrastiveLoss (Siamese pairs).

Caffe: src/caffe/layers/hinge_loss_layer.cpp, src/caffe/layers/contrastive_loss_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import LayerError, ShapeError
from caffelite.layer import register_layer
from caffelite.layers.loss import LossLayer, read_labels, scalar_diff
from caffelite.proto import caffe_pb2

# Caffe's kLOG_THRESHOLD (loss_layer.hpp): the floor under probabilities before a log.


@register_layer
class HingeLossLayer(LossLayer):
    r"""One-versus-all hinge loss for :math:`K`-way classification (L1 or squared L2).

    With :math:`\delta_{n,k} = 1` for the true class :math:`l_n` and :math:`-1` otherwise, and the
    margins :math:`m_{n,k} = \max(0, 1 - \delta_{n,k} x_{n,k})`:

    .. math:: E_{L1} = \frac{1}{N} \sum_{n,k} m_{n,k}, \qquad E_{L2} = \frac{1}{N} \sum_{n,k} m_{n,k}^2

    .. math:: \frac{\partial E_{L1}}{\partial x_{n,k}} = -\frac{w}{N}\,\delta_{n,k}\,\operatorname{sign}(m_{n,k}),
              \qquad \frac{\partial E_{L2}}{\partial x_{n,k}} = -\frac{2w}{N}\,\delta_{n,k}\,m_{n,k}

    At the kink (:math:`m = 0`) the gradient is 0, as Caffe's ``caffe_cpu_sign``.  The labels get
    no gradient.

    Caffe: src/caffe/layers/hinge_loss_layer.cpp.
    """

    type = "HingeLoss"

    def setup(self, bottom, top):
        super().setup(bottom, top)
        self.norm = self.layer_param.hinge_loss_param.norm
        if self.norm not in (caffe_pb2.HingeLossParameter.L1, caffe_pb2.HingeLossParameter.L2):
            raise LayerError("Unknown Norm: %d" % self.norm, field="hinge_loss_param.norm")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = bottom[0].num
        self.dim = bottom[0].count // self.num if self.num else 0

    def forward(self, bottom, top):
        labels = read_labels(bottom[1].data.reshape(-1)[:self.num], self.dim, None, (self.num,))
        sign = np.ones((self.num, self.dim), dtype=bottom[0].data.dtype)  # -delta
        sign[np.arange(self.num), labels] = -1
        margins = np.maximum(0, 1 + sign * bottom[0].data.reshape(self.num, self.dim))
        self._sign, self._margins = sign, margins
        if self.norm == caffe_pb2.HingeLossParameter.L1:
            loss = margins.sum(dtype=np.float64)
        else:
            loss = np.sum(margins * margins, dtype=np.float64)
        top[0].data[...] = float(loss) / self.num

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down)
        if not propagate_down[0]:
            return
        dx = bottom[0].diff.reshape(self.num, self.dim)
        if self.norm == caffe_pb2.HingeLossParameter.L1:
            np.sign(self._margins, out=dx)
            scale = scalar_diff(top) / self.num
        else:
            np.copyto(dx, self._margins)
            scale = 2.0 * scalar_diff(top) / self.num
        dx *= self._sign * scale


@register_layer
class ContrastiveLossLayer(LossLayer):
    r"""Contrastive loss of pairs :math:`(a_n, b_n)` with similarity labels :math:`y_n` (Siamese nets).

    With :math:`d_n = \lVert a_n - b_n \rVert` and margin :math:`m`:

    .. math:: E = \frac{1}{2N} \sum_n \begin{cases} d_n^2 & y_n \ne 0 \\
              \max(m - d_n, 0)^2 & y_n = 0 \end{cases}
              \quad\left(\text{legacy\_version: } \max(m - d_n^2, 0) \text{ for } y_n = 0\right)

    .. math:: \frac{\partial E}{\partial a_n} = -\frac{\partial E}{\partial b_n} = \frac{w}{N}
              \begin{cases} a_n - b_n & y_n \ne 0 \\
              -\frac{m - d_n}{d_n + 10^{-4}}\,(a_n - b_n)\,[m > d_n] & y_n = 0 \\
              -(a_n - b_n)\,[m > d_n^2] & y_n = 0,\ \text{legacy} \end{cases}

    The :math:`10^{-4}` keeps the gradient finite at :math:`d = 0`; it is Caffe's.  :math:`y` is
    read as an integer (non-zero: similar) and gets no gradient.

    Caffe: src/caffe/layers/contrastive_loss_layer.cpp.
    """

    type = "ContrastiveLoss"
    exact_bottoms = 3
    label_bottom = 2  # the similarity labels (bottoms 0 and 1 are the pair's features)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def setup(self, bottom, top):
        super().setup(bottom, top)
        p = self.layer_param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = p.legacy_version

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        if a.num_axes > 4 or b.num_axes > 4 or y.num_axes > 4 or a.channels != b.channels \
                or (a.height, a.width, b.height, b.width) != (1, 1, 1, 1):
            raise ShapeError("ContrastiveLoss needs two N x C (x 1 x 1) feature blobs of equal C; got %s and %s"
                             % (a.shape_string(), b.shape_string()))
        if (y.channels, y.height, y.width) != (1, 1, 1) or y.num != a.num:
            raise ShapeError("ContrastiveLoss needs one similarity label per pair: got %s for %d pairs"
                             % (y.shape_string(), a.num))

    def forward(self, bottom, top):
        n = bottom[0].num
        self._diff = (bottom[0].data - bottom[1].data.reshape(bottom[0].shape)).reshape(n, -1)
        self._dist_sq = np.einsum("nc,nc->n", self._diff, self._diff)
        self._similar = np.trunc(bottom[2].data.reshape(n)) != 0
        if self.legacy:
            dissimilar = np.maximum(self.margin - self._dist_sq, 0)
        else:
            dissimilar = np.maximum(self.margin - np.sqrt(self._dist_sq), 0) ** 2
        loss = np.where(self._similar, self._dist_sq, dissimilar).sum(dtype=np.float64)
        top[0].data[...] = float(loss) / n / 2.0

    def backward(self, top, propagate_down, bottom):
        self.check_no_label_gradient(propagate_down, 2, "similarity label")
        n = bottom[0].num
        if self.legacy:
            beta = -(self.margin - self._dist_sq > 0).astype(self._diff.dtype)
        else:
            dist = np.sqrt(self._dist_sq)
            beta = -(self.margin - dist) / (dist + 1e-4) * (self.margin - dist > 0)
        coeff = np.where(self._similar, 1.0, beta)[:, None]
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = sign * scalar_diff(top) / n
                np.multiply(coeff * alpha, self._diff, out=bottom[i].diff.reshape(n, -1))
