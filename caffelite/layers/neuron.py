r"""Neuron layers: elementwise functions, one bottom and one top of the same shape (in-place allowed).

Caffe: include/caffe/layers/neuron_layer.hpp and the ``*_layer.cpp`` of each type below.
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.blob import Blob
from caffelite.common import rng
from caffelite.compute.parallel import map_parts, value_parts
from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import TRAIN, Layer, register_layer
from caffelite.proto import caffe_pb2


class NeuronLayer(Layer):
    """Base of elementwise layers: one bottom, one top shaped like it (Caffe's NeuronLayer)."""

    exact_bottoms = 1
    exact_tops = 1

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)


@register_layer
class ReLULayer(NeuronLayer):
    r"""Rectified linear unit, leaky when ``negative_slope`` = :math:`\nu` is non-zero.

    .. math:: y = \max(0, x) + \nu \min(0, x), \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,([x > 0] + \nu [x \le 0])

    Caffe: src/caffe/layers/relu_layer.cpp.  In place, ``x`` is read back from ``y``, whose sign
    is the same for :math:`\nu \ge 0`.
    """

    type = "ReLU"

    def forward(self, bottom, top):
        x, y = bottom[0].data.reshape(-1), top[0].data.reshape(-1)
        slope = self.layer_param.relu_param.negative_slope

        def part(s):
            if slope:
                np.copyto(y[s], np.where(x[s] > 0, x[s], x[s] * slope))
            else:
                np.maximum(x[s], 0, out=y[s])
        map_parts(part, value_parts(x.size, 1), self.tuner("forward", x.size))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x, dy = bottom[0].data, top[0].diff
        slope = self.layer_param.relu_param.negative_slope
        if slope:
            np.copyto(bottom[0].diff, np.where(x > 0, dy, dy * slope))
        else:
            np.multiply(dy, x > 0, out=bottom[0].diff)


@register_layer
class SigmoidLayer(NeuronLayer):
    r"""Logistic sigmoid.

    .. math:: y = \frac{1}{1 + e^{-x}} = \tfrac12 \tanh(\tfrac x2) + \tfrac12, \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, y (1 - y)

    Caffe: src/caffe/layers/sigmoid_layer.cpp (the tanh form, which never overflows).
    """

    type = "Sigmoid"

    def forward(self, bottom, top):
        y = top[0].data
        np.multiply(bottom[0].data, 0.5, out=y)
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0].data
            np.multiply(top[0].diff, y * (1 - y), out=bottom[0].diff)


@register_layer
class TanHLayer(NeuronLayer):
    r"""Hyperbolic tangent.

    .. math:: y = \tanh x, \qquad \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}(1 - y^2)

    Caffe: src/caffe/layers/tanh_layer.cpp.
    """

    type = "TanH"

    def forward(self, bottom, top):
        np.tanh(bottom[0].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            y = top[0].data
            np.multiply(top[0].diff, 1 - y * y, out=bottom[0].diff)


def _channel_view(a: np.ndarray) -> np.ndarray:
    """``a`` as (num, channels, rest): PReLU's slope runs along axis 1."""
    return a.reshape(a.shape[0], a.shape[1], -1)


@register_layer
class PReLULayer(NeuronLayer):
    r"""Parametric ReLU: a learned negative slope :math:`a_c` per channel (or one, ``channel_shared``).

    .. math:: y = \max(0, x) + a_c \min(0, x), \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}([x > 0] + a_c [x \le 0]),
              \qquad \frac{\partial E}{\partial a_c} \mathrel{+}= \sum_{i \in c}
              \frac{\partial E}{\partial y_i} x_i [x_i \le 0]

    The slopes start at ``prelu_param.filler`` (constant 0.25 when unset); a shared slope is a
    blob of shape ``()``.  In place, the bottom is copied before forward (Caffe's ``bottom_memory_``)
    because backward needs :math:`x`, which :math:`y` does not determine when a slope is 0 or negative.

    Caffe: src/caffe/layers/prelu_layer.cpp.
    """

    type = "PReLU"

    def _check_axes(self, bottom):
        if bottom[0].num_axes < 2:
            raise ShapeError("Number of axes of bottom blob must be >=2. (bottom shape %s)"
                             % bottom[0].shape_string())

    def setup(self, bottom, top):
        self._check_axes(bottom)
        p = self.layer_param.prelu_param
        self.channel_shared = p.channel_shared
        channels = bottom[0].shape[1]
        if not self.blobs:
            slope = Blob(()) if self.channel_shared else Blob(channels)
            if p.HasField("filler"):
                filler = p.filler
            else:
                filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
            self.blobs = [fill(slope, filler)]
        expected = 1 if self.channel_shared else channels
        if self.blobs[0].count != expected:
            raise LayerError("Negative slope size is inconsistent with prototxt config "
                             "(%d slopes, expected %d)" % (self.blobs[0].count, expected),
                             field="prelu_param.channel_shared")
        self.param_propagate_down = [True]

    def reshape(self, bottom, top):
        self._check_axes(bottom)
        super().reshape(bottom, top)

    def _slope(self) -> np.ndarray:
        """The slopes broadcast against the (num, channels, rest) view."""
        return self.blobs[0].data.reshape(1, -1, 1)  # (1, 1, 1) when shared

    def forward(self, bottom, top):
        x = _channel_view(bottom[0].data)
        if top[0] is bottom[0]:
            self.bottom_memory = x.copy()
        np.copyto(_channel_view(top[0].data), np.maximum(x, 0) + self._slope() * np.minimum(x, 0))

    def backward(self, top, propagate_down, bottom):
        x = self.bottom_memory if top[0] is bottom[0] else _channel_view(bottom[0].data)
        dy = _channel_view(top[0].diff)
        neg = x <= 0
        # the slope gradient first: in place, writing the bottom diff overwrites the top diff
        if self.param_propagate_down_at(0):
            g = (dy * x * neg).sum(axis=(0, 2))
            self.blobs[0].diff[...] += g.sum() if self.channel_shared else g
        if propagate_down[0]:
            np.copyto(_channel_view(bottom[0].diff), dy * np.where(neg, self._slope(), 1.0))


@register_layer
class ELULayer(NeuronLayer):
    r"""Exponential linear unit.

    .. math:: y = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases}, \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
              \begin{cases} 1 & x > 0 \\ y + \alpha & x \le 0 \end{cases}

    Caffe: src/caffe/layers/elu_layer.cpp.
    """

    type = "ELU"

    def forward(self, bottom, top):
        x = bottom[0].data
        alpha = self.layer_param.elu_param.alpha
        np.copyto(top[0].data, np.maximum(x, 0) + alpha * np.expm1(np.minimum(x, 0)))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, y, dy = bottom[0].data, top[0].data, top[0].diff
            alpha = self.layer_param.elu_param.alpha
            np.copyto(bottom[0].diff, dy * np.where(x > 0, 1.0, y + alpha))


@register_layer
class AbsValLayer(NeuronLayer):
    r"""Absolute value.

    .. math:: y = |x|, \qquad \frac{\partial E}{\partial x} = \operatorname{sign}(x)\,
              \frac{\partial E}{\partial y} \quad (\operatorname{sign} 0 = 0)

    Caffe: src/caffe/layers/absval_layer.cpp (no in-place computation).
    """

    type = "AbsVal"

    def setup(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError("AbsVal Layer does not allow in-place computation.", field="top")

    def forward(self, bottom, top):
        np.abs(bottom[0].data, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            np.multiply(top[0].diff, np.sign(bottom[0].data), out=bottom[0].diff)


@register_layer
class BNLLLayer(NeuronLayer):
    r"""Binomial normal log-likelihood (softplus), computed without overflow.

    .. math:: y = \log(1 + e^{x}), \qquad \frac{\partial E}{\partial x} =
              \frac{\partial E}{\partial y} \frac{e^{\min(x, 50)}}{1 + e^{\min(x, 50)}}

    Caffe: src/caffe/layers/bnll_layer.cpp (``kBNLL_THRESHOLD`` = 50 in backward).
    """

    type = "BNLL"

    def forward(self, bottom, top):
        x = bottom[0].data
        # x + log(1 + e^-x) for x > 0, log(1 + e^x) otherwise: both arguments of exp are <= 0
        np.copyto(top[0].data, np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            e = np.exp(np.minimum(bottom[0].data, 50.0))
            np.multiply(top[0].diff, e / (e + 1), out=bottom[0].diff)


@register_layer
class PowerLayer(NeuronLayer):
    r"""Power of an affine function of the input.

    .. math:: y = (s x + t)^p, \qquad \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,
              p s (s x + t)^{p-1}

    With :math:`p s = 0` the output is the constant :math:`t^p` (1 when :math:`p = 0`) and the
    gradient 0.  Backward follows Caffe's cases: :math:`p = 1` gives :math:`p s`; :math:`p = 2`
    gives :math:`2 s (s x + t)`; :math:`t = 0` gives :math:`p y / x` (NaN at :math:`x = 0`, as in
    Caffe); otherwise :math:`p s\,y / (s x + t)`.

    Caffe: src/caffe/layers/power_layer.cpp.
    """

    type = "Power"

    def setup(self, bottom, top):
        p = self.layer_param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def forward(self, bottom, top):
        y = top[0].data
        if self.diff_scale == 0:
            y[...] = 1.0 if self.power == 0 else self.shift ** self.power
            return
        with np.errstate(invalid="ignore", divide="ignore"):  # Caffe returns NaN/inf here too
            np.copyto(y, np.power(self.scale * bottom[0].data + self.shift, self.power))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].diff
        if self.diff_scale == 0:
            dx[...] = 0.0
            return
        if self.power == 1:
            np.multiply(top[0].diff, self.diff_scale, out=dx)
            return
        x, y = bottom[0].data, top[0].data
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.power == 2:
                g = self.diff_scale * (self.scale * x + self.shift)
            elif self.shift == 0:
                g = self.power * (y / x)
            else:
                g = self.diff_scale * (y / (self.scale * x + self.shift))
            np.multiply(top[0].diff, g, out=dx)


def _log_base(base: float, what: str) -> float:
    """Natural log of ``base`` (-1 meaning e), with Caffe's checks."""
    if base == -1:
        return 1.0
    if not base > 0:
        raise LayerError("base must be strictly positive. (%s_param.base = %g)" % (what, base),
                         field="%s_param.base" % what)
    value = math.log(base)
    if math.isinf(value):
        raise LayerError("Inf result: log(base) = log(%g) = %g" % (base, value), field="%s_param.base" % what)
    return value


@register_layer
class ExpLayer(NeuronLayer):
    r"""Exponential with base :math:`b` (``base`` -1 means e), input scale :math:`s` and shift :math:`t`.

    .. math:: y = b^{s x + t} = b^t\, e^{(s \ln b) x}, \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, y\, s \ln b

    Caffe: src/caffe/layers/exp_layer.cpp.
    """

    type = "Exp"

    def setup(self, bottom, top):
        p = self.layer_param.exp_param
        log_base = _log_base(p.base, "exp")
        self.inner_scale = log_base * p.scale
        if p.shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = math.exp(p.shift) if p.base == -1 else float(p.base) ** p.shift

    def forward(self, bottom, top):
        y = top[0].data
        np.multiply(bottom[0].data, self.inner_scale, out=y)
        np.exp(y, out=y)
        if self.outer_scale != 1:
            y *= self.outer_scale

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            np.multiply(top[0].diff, top[0].data * self.inner_scale, out=bottom[0].diff)


@register_layer
class LogLayer(NeuronLayer):
    r"""Logarithm with base :math:`b` (``base`` -1 means e) of :math:`s x + t`.

    .. math:: y = \log_b(s x + t), \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\, \frac{s}{(s x + t) \ln b}

    Caffe: src/caffe/layers/log_layer.cpp.
    """

    type = "Log"

    def setup(self, bottom, top):
        p = self.layer_param.log_param
        log_base = _log_base(p.base, "log")
        self.base_scale = 1.0 / log_base
        self.input_scale, self.input_shift = float(p.scale), float(p.shift)
        self.backward_num_scale = self.input_scale / log_base

    def _affine(self, x):
        return self.input_scale * x + self.input_shift if (self.input_scale != 1 or self.input_shift) else x

    def forward(self, bottom, top):
        y = top[0].data
        with np.errstate(invalid="ignore", divide="ignore"):  # log of <= 0 gives NaN/-inf, as in Caffe
            np.log(self._affine(bottom[0].data), out=y)
        if self.base_scale != 1:
            y *= self.base_scale

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            with np.errstate(divide="ignore"):
                g = self.backward_num_scale / self._affine(bottom[0].data)
            np.multiply(top[0].diff, g, out=bottom[0].diff)


@register_layer
class ThresholdLayer(NeuronLayer):
    r"""Step function: :math:`y = [x > \theta]` with :math:`\theta` = ``threshold_param.threshold``.

    Caffe: src/caffe/layers/threshold_layer.cpp (forward only).
    """

    type = "Threshold"
    has_backward = False

    def forward(self, bottom, top):
        theta = self.layer_param.threshold_param.threshold
        np.greater(bottom[0].data, theta, out=top[0].data, casting="unsafe")


@register_layer
class DropoutLayer(NeuronLayer):
    r"""Dropout with ratio :math:`r`: in TRAIN each value is kept when a uniform draw
    :math:`u > r`, and kept values are scaled so the expectation is unchanged; TEST is the identity.

    .. math:: \text{TRAIN: } y = \frac{m \odot x}{1 - r},\ m = [u > r], \qquad
              \frac{\partial E}{\partial x} = \frac{m}{1 - r} \odot \frac{\partial E}{\partial y}

    The mask comes from :func:`caffelite.common.rng`, so ``set_random_seed`` makes it repeatable.
    Forks with ``scale_train: false`` scale at TEST by :math:`1 - r` instead; that field is honoured
    when the schema has it (BVLC's has not).

    Caffe: src/caffe/layers/dropout_layer.cpp.
    """

    type = "Dropout"

    def setup(self, bottom, top):
        p = self.layer_param.dropout_param
        self.threshold = float(p.dropout_ratio)
        if not 0.0 <= self.threshold < 1.0:
            raise LayerError("dropout_ratio must be in [0, 1) (got %g)" % self.threshold,
                             field="dropout_param.dropout_ratio")
        self.scale = 1.0 / (1.0 - self.threshold)
        self.scale_train = getattr(p, "scale_train", True)

    def _train_scale(self) -> float:
        return self.scale if self.scale_train else 1.0

    def forward(self, bottom, top):

        x, y = bottom[0].data, top[0].data
        if self.phase == TRAIN:
            self.mask = rng().random(x.shape) > self.threshold
            np.multiply(x, self.mask * self._train_scale(), out=y)
        elif self.scale_train:
            if y is not x:
                np.copyto(y, x)
        else:
            np.multiply(x, 1.0 - self.threshold, out=y)

    def backward(self, top, propagate_down, bottom):

        if not propagate_down[0]:
            return
        dy, dx = top[0].diff, bottom[0].diff
        if self.phase == TRAIN:
            np.multiply(dy, self.mask * self._train_scale(), out=dx)
        elif self.scale_train:
            if dx is not dy:
                np.copyto(dx, dy)
        else:
            np.multiply(dy, 1.0 - self.threshold, out=dx)


@register_layer
class ClipLayer(NeuronLayer):
    r"""Clip to :math:`[a, b]` (``clip_param.min``, ``max``).

    .. math:: y = \max(a, \min(x, b)), \qquad
              \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,[a \le x \le b]

    Caffe: src/caffe/layers/clip_layer.cpp (the gradient passes at both bounds).
    """

    type = "Clip"

    def setup(self, bottom, top):
        p = self.layer_param.clip_param
        for name in ("min", "max"):
            if not p.HasField(name):
                raise LayerError("clip_param.%s must be set" % name, field="clip_param.%s" % name)

    def forward(self, bottom, top):
        p = self.layer_param.clip_param
        np.copyto(top[0].data, np.maximum(p.min, np.minimum(bottom[0].data, p.max)))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            p = self.layer_param.clip_param
            x = bottom[0].data
            np.multiply(top[0].diff, (x >= p.min) & (x <= p.max), out=bottom[0].diff)


@register_layer
class SwishLayer(NeuronLayer):
    r"""Swish: :math:`y = x\,\sigma(\beta x)` with :math:`\sigma(z) = \tfrac12\tanh(\tfrac z2) + \tfrac12`.

    .. math:: \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
              \left(\beta y + \sigma(\beta x)(1 - \beta y)\right)

    Caffe: src/caffe/layers/swish_layer.cpp (its internal Sigmoid layer's output is kept for backward).
    """

    type = "Swish"

    def forward(self, bottom, top):
        beta = self.layer_param.swish_param.beta
        x = bottom[0].data
        s = np.tanh(x * (0.5 * beta))
        s *= 0.5
        s += 0.5
        self.sigmoid = s
        np.multiply(x, s, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            beta = self.layer_param.swish_param.beta
            by = beta * top[0].data
            np.multiply(top[0].diff, by + self.sigmoid * (1 - by), out=bottom[0].diff)
