r"""Normalization layers: BatchNorm, MVN, Scale, Bias.

Caffe: src/caffe/layers/{batch_norm,mvn,scale,bias}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.compute.parallel import map_parts, value_parts
from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import TEST, Layer, register_layer
from caffelite.proto import caffe_pb2


class _OneToOne(Layer):
    exact_bottoms = 1
    exact_tops = 1


@register_layer
class BatchNormLayer(_OneToOne):
    r"""Normalizes each channel (axis 1) over the batch and spatial axes.

    .. math:: y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}

    With ``use_global_stats`` (default: true in TEST, false in TRAIN) :math:`\mu, \sigma^2` are the
    stored estimates ``blobs[0] / s`` and ``blobs[1] / s`` with the scale factor
    :math:`s` = ``blobs[2]`` (0 means both are 0).  Otherwise they are the batch statistics, and the
    stored ones are updated as moving sums with :math:`\lambda` = ``moving_average_fraction`` over
    :math:`m` = count / channels values per channel:

    .. math:: s \leftarrow \lambda s + 1, \quad b_0 \leftarrow \lambda b_0 + \mu, \quad
              b_1 \leftarrow \lambda b_1 + \tfrac{m}{m-1} \sigma^2

    Backward with batch statistics (means over all axes but the channel):

    .. math:: \frac{\partial E}{\partial x} = \frac{\frac{\partial E}{\partial y}
              - \operatorname{mean}\frac{\partial E}{\partial y}
              - \operatorname{mean}\left(\frac{\partial E}{\partial y} y\right) y}{\sqrt{\sigma^2 + \epsilon}}

    and :math:`\frac{\partial E}{\partial y} / \sqrt{\sigma^2 + \epsilon}` with global statistics.
    The statistics blobs get no gradient: setup gives each an ``lr_mult`` of 0, as Caffe does.

    Caffe: src/caffe/layers/batch_norm_layer.cpp.
    """

    type = "BatchNorm"

    def setup(self, bottom, top):
        p = self.layer_param.batch_norm_param
        self.moving_average_fraction = float(p.moving_average_fraction)
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else self.phase == TEST
        self.channels = 1 if bottom[0].num_axes == 1 else bottom[0].shape[1]
        self.eps = float(p.eps)
        if not self.blobs:
            self.blobs = [Blob(self.channels), Blob(self.channels), Blob(1)]
        self.param_propagate_down = [True] * len(self.blobs)
        # mask the statistics from the solver, as Caffe's LayerSetUp does: lr_mult 0 for each
        specs = self.layer_param.param
        for i in range(len(self.blobs)):
            if i >= len(specs):
                specs.add(lr_mult=0.0)
            elif specs[i].lr_mult != 0:
                raise LayerError("Cannot configure batch normalization statistics as layer parameters. "
                                 "(param %d has lr_mult %g)" % (i, specs[i].lr_mult), field="param.lr_mult")

    def reshape(self, bottom, top):
        if bottom[0].num_axes > 1 and bottom[0].shape[1] != self.channels:
            raise ShapeError("BatchNorm: bottom has %d channels, the layer was set up for %d (bottom %s)"
                             % (bottom[0].shape[1], self.channels, bottom[0].shape_string()))
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _view(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], self.channels, -1)

    def global_stats(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`(\mu, \sqrt{\sigma^2 + \epsilon})` from the stored estimates, as (1, C, 1) arrays of ``dtype``."""
        s = float(self.blobs[2].data.reshape(-1)[0])
        factor = 0.0 if s == 0 else 1.0 / s
        mean = (self.blobs[0].data * factor).astype(dtype)
        var = (self.blobs[1].data * factor).astype(dtype)
        return mean[None, :, None], np.sqrt(var + self.eps).astype(dtype)[None, :, None]

    def forward(self, bottom, top):
        x = self._view(bottom[0].data)
        dtype = x.dtype
        y = self._view(top[0].data)
        if self.use_global_stats:
            mean, self.std = self.global_stats(dtype)
            if not self.need_backward:  # inference: no temporaries, nothing kept; channel ranges in threads
                def part(cs):
                    np.subtract(x[:, cs], mean[:, cs], out=y[:, cs])
                    np.divide(y[:, cs], self.std[:, cs], out=y[:, cs])
                map_parts(part, value_parts(self.channels, x.size // self.channels), self.tuner("forward", x.size))
                return
            centred = x - mean
            np.divide(centred, self.std, out=y)
            self.x_norm = y.copy()  # a later in-place layer may overwrite the top
            return
        mean = x.mean(axis=(0, 2))
        centred = x - mean[None, :, None]
        var = np.square(centred).mean(axis=(0, 2))
        lam = self.moving_average_fraction
        self.blobs[2].data[...] = self.blobs[2].data * lam + 1
        self.blobs[0].data[...] = mean + lam * self.blobs[0].data
        m = bottom[0].count // self.channels
        correction = m / (m - 1) if m > 1 else 1.0
        self.blobs[1].data[...] = correction * var + lam * self.blobs[1].data
        self.std = np.sqrt(var + self.eps).astype(dtype)[None, :, None]
        np.divide(centred, self.std, out=y)
        self.x_norm = y.copy()  # a later in-place layer may overwrite the top

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = self._view(top[0].diff).copy() if top[0] is bottom[0] else self._view(top[0].diff)
        dx = self._view(bottom[0].diff)
        if self.use_global_stats:
            np.divide(dy, self.std, out=dx)
            return
        y = self.x_norm
        mean_dy = dy.mean(axis=(0, 2), keepdims=True)
        mean_dy_y = (dy * y).mean(axis=(0, 2), keepdims=True)
        np.divide(dy - mean_dy - mean_dy_y * y, self.std, out=dx)


@register_layer
class MVNLayer(_OneToOne):
    r"""Mean-variance normalization of each (num, channel) plane, or of each item when
    ``across_channels``.  With :math:`\mu, \sigma` the mean and standard deviation over that group:

    .. math:: y = x - \mu \quad\text{or, with } \texttt{normalize\_variance}, \quad
              y = \frac{x - \mu}{\sigma + \epsilon}

    (Caffe adds :math:`\epsilon` to the standard deviation, not to the variance.)  Backward, with
    means over the group:

    .. math:: \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}
              - \operatorname{mean}\frac{\partial E}{\partial y}
              \quad\text{or}\quad \frac{\frac{\partial E}{\partial y}
              - \operatorname{mean}\frac{\partial E}{\partial y}
              - \operatorname{mean}\left(\frac{\partial E}{\partial y} y\right) y}{\sigma + \epsilon}

    Caffe: src/caffe/layers/mvn_layer.cpp.
    """

    type = "MVN"

    def reshape(self, bottom, top):
        if bottom[0].num_axes > 4:
            raise ShapeError("MVN uses legacy num/channels accessors: bottom must have at most 4 axes (got %s)"
                             % bottom[0].shape_string())
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _view(self, blob: Blob, a: np.ndarray) -> np.ndarray:
        n = blob.num if self.layer_param.mvn_param.across_channels else blob.num * blob.channels
        return a.reshape(n, -1)

    def forward(self, bottom, top):
        p = self.layer_param.mvn_param
        x = self._view(bottom[0], bottom[0].data)
        y = self._view(top[0], top[0].data)
        np.subtract(x, x.mean(axis=1, keepdims=True), out=y)
        if p.normalize_variance:
            self.std = np.sqrt(np.square(y).mean(axis=1, keepdims=True)) + p.eps
            y /= self.std

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        p = self.layer_param.mvn_param
        dy = self._view(top[0], top[0].diff)
        dx = self._view(bottom[0], bottom[0].diff)
        if p.normalize_variance:
            y = self._view(top[0], top[0].data)
            g = dy - dy.mean(axis=1, keepdims=True) - (dy * y).mean(axis=1, keepdims=True) * y
            np.divide(g, self.std, out=dx)
        else:
            np.subtract(dy, dy.mean(axis=1, keepdims=True), out=dx)


def _check_operand(layer: Layer, bottom: Blob, operand: Blob, name: str) -> tuple[int, int, int]:
    """Where a Scale/Bias operand applies: (outer, operand count, inner) of bottom[0]."""
    axis = 0 if operand.num_axes == 0 else bottom.canonical_axis_index(
        getattr(layer.layer_param, "%s_param" % layer.type.lower()).axis)
    if bottom.num_axes < axis + operand.num_axes:
        raise ShapeError("%s blob's shape extends past bottom[0]'s shape when applied starting with bottom[0] "
                         "axis = %d (bottom[0] %s, %s %s)" % (name, axis, bottom.shape_string(), name,
                                                             operand.shape_string()))
    for i in range(operand.num_axes):
        if bottom.shape[axis + i] != operand.shape[i]:
            raise ShapeError("dimension mismatch between bottom[0]->shape(%d) and %s->shape(%d) (%d vs %d)"
                             % (axis + i, name, i, bottom.shape[axis + i], operand.shape[i]))
    return bottom.count_range(0, axis), operand.count, bottom.count_range(axis + operand.num_axes)


def _param_shape(layer: Layer, bottom: Blob, p, name: str) -> tuple[int, ...]:
    """Shape of a learned Scale/Bias operand: bottom[0]'s axes axis .. axis + num_axes."""
    axis = bottom.canonical_axis_index(p.axis)
    if p.num_axes < -1:
        raise LayerError("num_axes must be non-negative, or -1 to extend to the end of bottom[0] (got %d)"
                         % p.num_axes, field="%s_param.num_axes" % layer.type.lower())
    if p.num_axes >= 0 and bottom.num_axes < axis + p.num_axes:
        raise ShapeError("%s blob's shape extends past bottom[0]'s shape when applied starting with bottom[0] "
                         "axis = %d (bottom[0] %s, num_axes %d)" % (name, axis, bottom.shape_string(), p.num_axes))
    end = None if p.num_axes == -1 else axis + p.num_axes
    return tuple(bottom.shape[axis:end])


@register_layer
class BiasLayer(Layer):
    r"""Adds a bias broadcast over bottom[0]: learned (one bottom) or bottom[1] (two bottoms).

    The bias :math:`b` spans bottom[0]'s axes ``axis`` .. ``axis + num_axes`` (its own shape
    when it is bottom[1]); viewing bottom[0] as (outer, bias count, inner):

    .. math:: y_{o,j,i} = x_{o,j,i} + b_j, \qquad
              \frac{\partial E}{\partial b_j} = \sum_{o,i} \frac{\partial E}{\partial y_{o,j,i}}

    (accumulated into a learned bias).  Caffe: src/caffe/layers/bias_layer.cpp.
    """

    type = "Bias"
    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.bias_param
        if len(bottom) == 1 and not self.blobs:
            self.blobs = [fill(Blob(_param_shape(self, bottom[0], p, "bias")), p.filler)]
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        self.dims = _check_operand(self, bottom[0], bias, "bias")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        bias = bottom[1] if len(bottom) > 1 else self.blobs[0]
        outer, n, inner = self.dims
        y = top[0].data.reshape(outer, n, inner)
        np.add(bottom[0].data.reshape(outer, n, inner), bias.data.reshape(1, n, 1), out=y)

    def backward(self, top, propagate_down, bottom):
        outer, n, inner = self.dims
        dy = top[0].diff.reshape(outer, n, inner)
        if propagate_down[0] and bottom[0] is not top[0]:
            np.copyto(bottom[0].diff, top[0].diff)
        if len(bottom) > 1:
            if propagate_down[1]:
                np.sum(dy, axis=(0, 2), out=bottom[1].diff.reshape(n))
        elif self.param_propagate_down_at(0):
            self.blobs[0].diff.reshape(n)[...] += dy.sum(axis=(0, 2))


@register_layer
class ScaleLayer(Layer):
    r"""Multiplies bottom[0] by a scale broadcast over it, learned (one bottom) or bottom[1],
    optionally followed by a learned bias (``bias_term``, Caffe's internal Bias layer).

    Viewing bottom[0] as (outer, scale count, inner):

    .. math:: y_{o,j,i} = s_j x_{o,j,i} + b_j, \quad
              \frac{\partial E}{\partial x_{o,j,i}} = s_j \frac{\partial E}{\partial y_{o,j,i}}, \quad
              \frac{\partial E}{\partial s_j} = \sum_{o,i} \frac{\partial E}{\partial y_{o,j,i}} x_{o,j,i}

    The learned scale starts at ``filler`` (constant 1 when unset), the bias at ``bias_filler``.
    ``blobs`` is [scale, bias] with one bottom and [bias] with two.  In place, the bottom is
    copied before forward, since backward needs it for the scale gradient.

    Caffe: src/caffe/layers/scale_layer.cpp.
    """

    type = "Scale"
    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.scale_param
        if len(bottom) == 1 and not self.blobs:
            filler = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(type="constant", value=1.0)
            self.blobs = [fill(Blob(_param_shape(self, bottom[0], p, "scale")), filler)]
        self.bias_layer = None
        if p.bias_term:
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(self.layer_param)
            lp.type = "Bias"
            for name in ("blobs", "loss_weight", "param", "propagate_down"):
                lp.ClearField(name)
            lp.bias_param.axis = p.axis
            lp.bias_param.num_axes = bottom[1].num_axes if len(bottom) > 1 else p.num_axes
            lp.bias_param.filler.CopyFrom(p.bias_filler)
            self.bias_layer = BiasLayer(lp)
            given = self.blobs[len(self.blobs) - 1] if len(self.blobs) + len(bottom) >= 3 else None
            if given is not None:
                self.bias_layer.blobs = [given]  # loaded or given inline: skip initialization
            self.bias_layer.run_setup([top[0] if top[0] is bottom[0] else bottom[0]], [top[0]])
            if given is None:
                self.blobs.append(self.bias_layer.blobs[0])
            self.bias_param_id = len(self.blobs) - 1
        self.param_propagate_down = [True] * len(self.blobs)

    def _scale(self, bottom) -> Blob:
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def _bias(self) -> BiasLayer | None:
        """The internal Bias layer, looking at our bias blob (the net may have swapped it for a shared one)."""
        if self.bias_layer is not None:
            self.bias_layer.blobs = [self.blobs[self.bias_param_id]]
        return self.bias_layer

    def reshape(self, bottom, top):
        self.dims = _check_operand(self, bottom[0], self._scale(bottom), "scale")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)
        if self._bias() is not None:
            self.bias_layer.reshape([top[0]], [top[0]])

    def forward(self, bottom, top):
        outer, n, inner = self.dims
        x = bottom[0].data.reshape(outer, n, inner)
        if top[0] is bottom[0] and self.need_backward:  # backward reads the bottom the top overwrites
            self.bottom_memory = x.copy()
        scale, y = self._scale(bottom).data.reshape(1, n, 1), top[0].data.reshape(outer, n, inner)
        bias = self._bias().blobs[0].data.reshape(1, n, 1) if self._bias() is not None else None

        def part(cs):  # y = x·s, then y + b (the internal Bias layer's operation), channel ranges in threads
            np.multiply(x[:, cs], scale[:, cs], out=y[:, cs])
            if bias is not None:
                np.add(y[:, cs], bias[:, cs], out=y[:, cs])
        map_parts(part, value_parts(n, outer * inner), self.tuner("forward", x.size))

    def backward(self, top, propagate_down, bottom):
        outer, n, inner = self.dims
        if self._bias() is not None and self.param_propagate_down_at(self.bias_param_id):
            self.bias_layer.param_propagate_down = [True]
            self.bias_layer.backward([top[0]], [False], [top[0]])
        dy = top[0].diff.reshape(outer, n, inner)
        scale = self._scale(bottom)
        learned = len(bottom) == 1
        if (learned and self.param_propagate_down_at(0)) or (not learned and propagate_down[1]):
            x = self.bottom_memory if top[0] is bottom[0] else bottom[0].data.reshape(outer, n, inner)
            g = np.einsum("oji,oji->j", dy, x)
            if learned:
                scale.diff.reshape(n)[...] += g
            else:
                np.copyto(scale.diff.reshape(n), g)
        if propagate_down[0]:
            np.multiply(dy, scale.data.reshape(1, n, 1), out=bottom[0].diff.reshape(outer, n, inner))
