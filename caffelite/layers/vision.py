r"""Vision layers built on im2col: Convolution, Deconvolution, Im2col, and Crop.

Caffe: src/caffe/layers/{base_conv,conv,deconv,im2col,crop}_layer.cpp, src/caffe/util/im2col.cpp.

Convolution is one matrix product per group over the whole batch.  With the bottom unrolled into
columns :math:`X_{col} \in \mathbb{R}^{(C k_1 \cdots k_d) \times (N o_1 \cdots o_d)}` (row = channel
and kernel tap, column = image and output position; built from a strided view, no pixel loop):

.. math:: Y_g = W_g X_{col,g} + b, \qquad
          \frac{\partial E}{\partial W_g} \mathrel{+}= \frac{\partial E}{\partial Y_g} X_{col,g}^\top,
          \qquad \frac{\partial E}{\partial X_{col,g}} = W_g^\top \frac{\partial E}{\partial Y_g}

and col2im adds the column gradients back, one strided slice per kernel tap.  Output sizes:

.. math:: o = \left\lfloor \frac{i + 2p - (d(k-1)+1)}{s} \right\rfloor + 1 \ \text{(convolution)},
          \qquad o = s(i-1) + d(k-1) + 1 - 2p \ \text{(deconvolution)}
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from caffelite.blob import Blob
from caffelite.errors import BackwardError, LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer

# Columns are built for about this many bytes of images at a time (at least one image): the buffers stay
# in cache and below malloc's mmap threshold instead of a fresh, page-faulting multi-MB array per call
# (measured: 1 MiB beats 4, 16 and 64 MiB and whole-batch columns on LeNet, CIFAR10 and AlexNet layers).
CHUNK_BYTES = 1 << 20
# Stride-1 convolutions use WideColumns (long contiguous runs); False forces the exact im2col.
WIDE = True


# --- im2col / col2im ----------------------------------------------------------------------------
def conv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Caffe's convolution output size along one axis."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def deconv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Caffe's deconvolution output size along one axis (the inverse of :func:`conv_out_size`)."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _padded(x: np.ndarray, pad) -> np.ndarray:
    """``x`` (N, C, *spatial) with ``pad`` zeros on both sides of each spatial axis."""
    if not any(pad):
        return x
    shape = x.shape[:2] + tuple(s + 2 * p for s, p in zip(x.shape[2:], pad))
    xp = np.zeros(shape, x.dtype)
    xp[(Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(x.shape[2:], pad))] = x
    return xp


def im2col(x: np.ndarray, kernel, stride, pad, dilation, out_shape) -> np.ndarray:
    """Columns of ``x`` (N, C, *spatial): shape (C·∏kernel, N·∏out), rows ordered (c, k_1..k_d).

    Row order matches Caffe's col buffer (and so the weight layout); columns run over images, then
    output positions, so one matrix product covers the batch.
    """
    n, c = x.shape[:2]
    xp = _padded(x, pad)
    sp = xp.strides[2:]
    shape = (c,) + tuple(kernel) + (n,) + tuple(out_shape)
    strides = ((xp.strides[1],) + tuple(d * s for d, s in zip(dilation, sp)) + (xp.strides[0],)
               + tuple(st * s for st, s in zip(stride, sp)))
    cols = np.empty(shape, x.dtype)
    np.copyto(cols, as_strided(xp, shape, strides, writeable=False))
    return cols.reshape(c * math.prod(kernel), n * math.prod(out_shape))


def col2im(cols: np.ndarray, out: np.ndarray, kernel, stride, pad, dilation) -> None:
    """Write into ``out`` (N, C, *spatial) the sum of the columns back at their pixels (im2col's adjoint).

    Loops over the kernel taps (a handful), each one strided slice add over the whole batch.
    """
    n, c = out.shape[:2]
    out_shape = tuple(conv_out_size(s, k, st, p, d)
                      for s, k, st, p, d in zip(out.shape[2:], kernel, stride, pad, dilation))
    c_k = cols.reshape((c,) + tuple(kernel) + (n,) + out_shape)
    if any(pad):
        acc = np.zeros(out.shape[:2] + tuple(s + 2 * p for s, p in zip(out.shape[2:], pad)), out.dtype)
    else:
        acc = out
        acc[...] = 0
    for tap in np.ndindex(*kernel):
        window = tuple(slice(t * d, t * d + st * (o - 1) + 1, st)
                       for t, d, st, o in zip(tap, dilation, stride, out_shape))
        acc[(slice(None), slice(None)) + window] += c_k[(slice(None),) + tap].swapaxes(0, 1)
    if acc is not out:
        out[...] = acc[(Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(out.shape[2:], pad))]


class WideColumns:
    r"""im2col for stride-1 convolutions, "wide": output rows keep the padded width.

    Flattening the padded spatial axes, tap :math:`\mathbf{k}` reads one contiguous run of
    :math:`L = o_1 P_2 \cdots P_d` values starting at :math:`\sum_a d_a k_a \cdot \mathrm{stride}_a`, so the
    copy (and col2im's add) is one long run per (channel, tap, image) instead of one short run per output
    row.  The :math:`P_a - o_a` extra columns of every row are garbage: forward drops them, backward feeds
    them zero gradients, so they add nothing.
    """

    def __init__(self, spatial, kernel, pad, dilation):
        self.spatial, self.kernel, self.pad, self.dilation = tuple(spatial), tuple(kernel), tuple(pad), tuple(dilation)
        self.padded = tuple(s + 2 * p for s, p in zip(spatial, pad))
        self.out = tuple(p - d * (k - 1) for p, k, d in zip(self.padded, kernel, dilation))
        flat = [math.prod(self.padded[a + 1:]) for a in range(len(self.padded))]
        self.offsets = [sum(t * d * f for t, d, f in zip(tap, dilation, flat)) for tap in np.ndindex(*kernel)]
        self.plane = math.prod(self.padded)
        self.run = self.out[0] * math.prod(self.padded[1:])
        self.slack = max(self.offsets) + self.run - self.plane  # reads past the plane's end (garbage columns)
        self.interior = (Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(spatial, pad))
        self.valid = (Ellipsis,) + tuple(slice(0, o) for o in self.out[1:])

    def _buffer(self, n: int, c: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        buf = np.zeros((n, c, self.plane + max(self.slack, 0)), dtype)
        return buf, buf[:, :, :self.plane].reshape((n, c) + self.padded)

    def cols(self, x: np.ndarray) -> np.ndarray:
        """(C·∏k, N·L) columns of ``x`` (N, C, *spatial)."""
        n, c = x.shape[:2]
        buf, view = self._buffer(n, c, x.dtype)
        view[self.interior] = x
        s = buf.strides
        shape = (c,) + self.kernel + (n, self.run)
        tap_strides = tuple(d * f * s[2] for d, f in zip(
            self.dilation, [math.prod(self.padded[a + 1:]) for a in range(len(self.padded))]))
        cols = np.empty(shape, x.dtype)
        np.copyto(cols, as_strided(buf, shape, (s[1],) + tap_strides + (s[0], s[2]), writeable=False))
        return cols.reshape(-1, n * self.run)

    def to_output(self, rows: np.ndarray, out: np.ndarray) -> None:
        """(O, N·L) wide products into ``out`` (N, O, *out), dropping the garbage columns."""
        o, n = rows.shape[0], out.shape[0]
        wide = rows.reshape((o, n, self.out[0]) + self.padded[1:])
        out[...] = np.moveaxis(wide[self.valid], 0, 1)

    def from_output(self, dy: np.ndarray) -> np.ndarray:
        """``dy`` (N, O, *out) as wide rows (O, N·L), zero in the garbage columns."""
        n, o = dy.shape[:2]
        wide = np.zeros((o, n, self.out[0]) + self.padded[1:], dy.dtype)
        wide[self.valid] = np.moveaxis(dy, 0, 1)
        return wide.reshape(o, n * self.run)

    def col2im(self, cols: np.ndarray, out: np.ndarray) -> None:
        """Add wide columns (C·∏k, N·L) back into ``out`` (N, C, *spatial) (overwritten)."""
        n, c = out.shape[:2]
        buf, view = self._buffer(n, c, out.dtype)
        c_k = cols.reshape(c, len(self.offsets), n, self.run)
        for t, off in enumerate(self.offsets):
            buf[:, :, off:off + self.run] += c_k[:, t].swapaxes(0, 1)
        out[...] = view[self.interior]


# --- parameters -----------------------------------------------------------------------------------
def _per_axis(p, name: str, n: int, default: int | None, what: str) -> tuple[int, ...]:
    """A repeated ConvolutionParameter field (or its ``_h``/``_w`` pair) as one value per spatial axis."""
    h, w = name + "_h", name + "_w"
    field = "kernel_size" if name == "kernel" else name
    values = list(getattr(p, field))
    if p.HasField(h) or p.HasField(w):
        if n != 2:
            raise LayerError("%s & %s can only be used for 2D convolution. (%d spatial axes)" % (h, w, n),
                             field="convolution_param.%s" % h)
        if values:
            raise LayerError("Either %s or %s/w should be specified; not both." % (field, name),
                             field="convolution_param.%s" % field)
        return getattr(p, h), getattr(p, w)
    if len(values) == 0 and default is not None:
        return (default,) * n
    if len(values) not in (1, n):
        raise LayerError("%s must be specified once, or once per spatial dimension (%s specified %d times; "
                         "%d spatial dims)." % (field, field, len(values), n), field="convolution_param.%s" % field)
    return tuple(values) * n if len(values) == 1 else tuple(values)


class ConvGeometry:
    """Kernel, stride, pad and dilation per spatial axis, as Caffe's BaseConvolutionLayer reads them."""

    def __init__(self, p, bottom: Blob):
        self.channel_axis = bottom.canonical_axis_index(p.axis)
        self.num_axes = bottom.num_axes
        n = self.num_spatial = bottom.num_axes - self.channel_axis - 1
        self.kernel = _per_axis(p, "kernel", n, None, "kernel")
        if any(k <= 0 for k in self.kernel):
            raise LayerError("Filter dimensions must be nonzero. (kernel %s)" % list(self.kernel),
                             field="convolution_param.kernel_size")
        self.stride = _per_axis(p, "stride", n, 1, "stride")
        if any(s <= 0 for s in self.stride):
            raise LayerError("Stride dimensions must be nonzero. (stride %s)" % list(self.stride),
                             field="convolution_param.stride")
        self.pad = _per_axis(p, "pad", n, 0, "pad")
        dil = list(p.dilation)
        if len(dil) not in (0, 1, n):
            raise LayerError("dilation must be specified once, or once per spatial dimension (dilation specified "
                             "%d times; %d spatial dims)." % (len(dil), n), field="convolution_param.dilation")
        self.dilation = tuple(dil) * n if len(dil) == 1 else (tuple(dil) or (1,) * n)
        self.is_1x1 = all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) and not any(self.pad)

    def check_axes(self, bottom: Blob) -> None:
        if bottom.num_axes != self.num_axes:
            raise ShapeError("bottom num_axes may not change. (was %d, now %s)"
                             % (self.num_axes, list(bottom.shape)))

    def out_shape(self, in_shape) -> tuple[int, ...]:
        """Convolution output spatial shape; an input smaller than the kernel is an error."""
        out = []
        for axis, (i, k, s, p, d) in enumerate(zip(in_shape, self.kernel, self.stride, self.pad, self.dilation)):
            extent = d * (k - 1) + 1
            if i + 2 * p < extent:
                raise ShapeError("kernel extent %d (kernel %d, dilation %d) is larger than the padded input %d "
                                 "(size %d + 2 x pad %d) on spatial axis %d" % (extent, k, d, i + 2 * p, i, p, axis))
            out.append(conv_out_size(i, k, s, p, d))
        return tuple(out)

    def cols(self, x: np.ndarray, out_shape) -> np.ndarray:
        return im2col(x, self.kernel, self.stride, self.pad, self.dilation, out_shape)

    def col2im(self, cols: np.ndarray, out: np.ndarray) -> None:
        col2im(cols, out, self.kernel, self.stride, self.pad, self.dilation)


def _filled(blob: Blob, filler) -> Blob:
    """``fill``, except that a new blob is already zero: deploy nets (no filler: constant 0) then build
    without touching their weights' memory (ResNet-152: 60M values)."""
    if filler.type == "constant" and filler.value == 0 and filler.sparse == -1:
        return blob
    return fill(blob, filler)


def _to_rows(a: np.ndarray) -> np.ndarray:
    """(N, C, P) as (C, N·P): a copy only when N > 1."""
    n, c, p = a.shape
    return a.reshape(c, p) if n == 1 else a.transpose(1, 0, 2).reshape(c, n * p)


def _from_rows(rows: np.ndarray, out: np.ndarray) -> None:
    """Write (C, N·P) into ``out`` (N, C, P)."""
    n, c, p = out.shape
    out[...] = rows.reshape(c, n, p).transpose(1, 0, 2)


# --- Convolution / Deconvolution ----------------------------------------------------------------
class _BaseConvolution(Layer):
    """Shared setup of Convolution and Deconvolution (Caffe's BaseConvolutionLayer)."""

    reverse = False  # Deconvolution: the weights map outputs to inputs

    def min_bottom_blobs(self):
        return 1

    def min_top_blobs(self):
        return 1

    def equal_num_bottom_top_blobs(self):
        return True

    def setup(self, bottom, top):
        p = self.layer_param.convolution_param
        g = self.geom = ConvGeometry(p, bottom[0])
        self.channels = bottom[0].shape[g.channel_axis]
        self.num_output = p.num_output
        if self.num_output <= 0:
            raise LayerError("num_output must be > 0 (got %d)" % self.num_output, field="convolution_param.num_output")
        self.group = p.group
        if self.group <= 0 or self.channels % self.group:
            raise LayerError("channels (%d) must be a multiple of group (%d)" % (self.channels, self.group),
                             field="convolution_param.group")
        if self.num_output % self.group:
            raise LayerError("Number of output should be multiples of group. (num_output %d, group %d)"
                             % (self.num_output, self.group), field="convolution_param.num_output")
        out_c, in_c = ((self.channels, self.num_output) if self.reverse else (self.num_output, self.channels))
        weight_shape = (out_c, in_c // self.group) + g.kernel
        self.bias_term = p.bias_term
        if self.blobs:
            if len(self.blobs) != 1 + self.bias_term:
                raise LayerError("Incorrect number of weight blobs. (expected %d, got %d)"
                                 % (1 + self.bias_term, len(self.blobs)))
            if self.blobs[0].shape != weight_shape:
                raise LayerError("Incorrect weight shape: expected shape %s; instead, shape was %s"
                                 % (Blob(weight_shape).shape_string(), self.blobs[0].shape_string()))
            if self.bias_term and self.blobs[1].shape != (self.num_output,):
                raise LayerError("Incorrect bias shape: expected shape %d (%d); instead, shape was %s"
                                 % (self.num_output, self.num_output, self.blobs[1].shape_string()))
        else:
            self.blobs = [_filled(Blob(weight_shape), p.weight_filler)]
            if self.bias_term:
                self.blobs.append(_filled(Blob(self.num_output), p.bias_filler))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        g = self.geom
        g.check_axes(bottom[0])
        ax = g.channel_axis
        if bottom[0].shape[ax] != self.channels:
            raise ShapeError("Input size incompatible with convolution kernel. (bottom %s has %d channels on axis "
                             "%d; the layer was set up for %d)" % (list(bottom[0].shape), bottom[0].shape[ax], ax,
                                                                  self.channels))
        for b in bottom[1:]:
            if b.shape != bottom[0].shape:
                raise ShapeError("All inputs must have the same shape. (%s vs %s)"
                                 % (list(bottom[0].shape), list(b.shape)))
        self.num = bottom[0].count_range(0, ax)
        self.in_spatial = bottom[0].shape[ax + 1:]
        if self.reverse:
            self.out_spatial = tuple(deconv_out_size(i, k, s, p, d) for i, k, s, p, d in zip(
                self.in_spatial, g.kernel, g.stride, g.pad, g.dilation))
            if any(o <= 0 for o in self.out_spatial):
                raise ShapeError("deconvolution output shape %s is not positive (input %s, kernel %s, stride %s, "
                                 "pad %s)" % (list(self.out_spatial), list(self.in_spatial), list(g.kernel),
                                              list(g.stride), list(g.pad)))
        else:
            self.out_spatial = g.out_shape(self.in_spatial)
        shape = bottom[0].shape[:ax] + (self.num_output,) + self.out_spatial
        for t in top:
            t.reshape(shape)

    def _w(self, which: str = "data") -> np.ndarray:
        """The weights as (out_c, in_c/group · ∏kernel)."""
        w = getattr(self.blobs[0], which)
        return w.reshape(w.shape[0], -1)

    def _nd(self, a: np.ndarray, channels: int, spatial) -> np.ndarray:
        """A blob array as (N, C, *spatial) whatever the channel axis."""
        return a.reshape((self.num, channels) + tuple(spatial))


@register_layer
class ConvolutionLayer(_BaseConvolution):
    r"""N-D convolution with groups, dilation, stride and zero padding (Caffe's im2col + GEMM).

    Weights :math:`(C_{out}, C_{in}/g, k_1, \ldots, k_d)`, bias :math:`(C_{out})`;
    :math:`y_{n,o,\mathbf{x}} = b_o + \sum_{c \in g(o)} \sum_{\mathbf{k}} w_{o,c,\mathbf{k}}\,
    x_{n,c,\mathbf{s}\mathbf{x} - \mathbf{p} + \mathbf{d}\mathbf{k}}` (zero outside the input), with
    :math:`o = \lfloor (i + 2p - d(k-1) - 1)/s \rfloor + 1` per spatial axis.

    Caffe: src/caffe/layers/conv_layer.cpp (and base_conv_layer.cpp).
    """

    type = "Convolution"

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        g = self.geom
        self.wide = None
        if WIDE and not g.is_1x1 and all(s == 1 for s in g.stride):
            self.wide = WideColumns(self.in_spatial, g.kernel, g.pad, g.dilation)
        run = self.wide.run if self.wide else math.prod(self.out_spatial)
        per_image = self.channels * math.prod(g.kernel) * run * bottom[0].data.itemsize
        step = max(1, min(self.num, CHUNK_BYTES // max(per_image, 1)))
        self.chunks = [(n0, min(n0 + step, self.num)) for n0 in range(0, self.num, step)]

    def _cols(self, x: np.ndarray) -> np.ndarray:
        """Columns (C·∏k, n·L) of the images ``x`` (n, C, *spatial)."""
        if self.wide is not None:
            return self.wide.cols(x)
        if self.geom.is_1x1:
            return _to_rows(x.reshape(x.shape[0], self.channels, -1))
        return self.geom.cols(x, self.out_spatial)

    def _grouped(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, ta: bool = False) -> np.ndarray:
        """out_g = a_g @ b_g per group (a_g^T with ``ta``); a's rows are split by output channels."""
        go = self.num_output // self.group
        kb = b.shape[0] // self.group
        ko = out.shape[0] // self.group
        for g in range(self.group):
            ag = a[g * go:(g + 1) * go]
            np.matmul(ag.T if ta else ag, b[g * kb:(g + 1) * kb], out=out[g * ko:(g + 1) * ko])
        return out

    def forward(self, bottom, top):
        w = self._w()
        for b, t in zip(bottom, top):
            x = self._nd(b.data, self.channels, self.in_spatial)
            y = self._nd(t.data, self.num_output, self.out_spatial)
            y3 = y.reshape(self.num, self.num_output, -1)
            if self.geom.is_1x1 and self.group == 1:  # no im2col: one product per image, straight into top
                np.matmul(w, x.reshape(self.num, self.channels, -1), out=y3)
            else:
                for n0, n1 in self.chunks:
                    cols = self._cols(x[n0:n1])
                    rows = self._grouped(w, cols, np.empty((self.num_output, cols.shape[1]), x.dtype))
                    if self.wide is not None:
                        self.wide.to_output(rows, y[n0:n1])
                    else:
                        _from_rows(rows, y3[n0:n1])
            if self.bias_term:
                y3 += self.blobs[1].data[:, None]

    def backward(self, top, propagate_down, bottom):
        w = self._w()
        kdim, go = w.shape[1], self.num_output // self.group
        need_w = self.param_propagate_down_at(0)
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy_nd = self._nd(t.diff, self.num_output, self.out_spatial)
            dy3 = dy_nd.reshape(self.num, self.num_output, -1)
            if self.bias_term and self.param_propagate_down_at(1):
                self.blobs[1].diff += dy3.sum(axis=(0, 2))
            if not (need_w or propagate_down[i]):
                continue
            x = self._nd(b.data, self.channels, self.in_spatial)
            if self.geom.is_1x1 and self.group == 1:
                x3 = x.reshape(self.num, self.channels, -1)
                if need_w:
                    self.blobs[0].diff.reshape(w.shape)[...] += np.tensordot(dy3, x3, axes=([0, 2], [0, 2]))
                if propagate_down[i]:
                    np.matmul(w.T, dy3, out=b.diff.reshape(x3.shape))
                continue
            dw = self._w("diff")
            dx = self._nd(b.diff, self.channels, self.in_spatial)
            for n0, n1 in self.chunks:
                dy = self.wide.from_output(dy_nd[n0:n1]) if self.wide is not None else _to_rows(dy3[n0:n1])
                if need_w:
                    cols = self._cols(x[n0:n1])
                    for g in range(self.group):
                        dw[g * go:(g + 1) * go] += dy[g * go:(g + 1) * go] @ cols[g * kdim:(g + 1) * kdim].T
                    del cols
                if propagate_down[i]:
                    dcols = self._grouped(w, dy, np.empty((kdim * self.group, dy.shape[1]), dy.dtype), ta=True)
                    if self.wide is not None:
                        self.wide.col2im(dcols, dx[n0:n1])
                    elif self.geom.is_1x1:
                        _from_rows(dcols, dx[n0:n1].reshape(n1 - n0, self.channels, -1))
                    else:
                        self.geom.col2im(dcols, dx[n0:n1])


@register_layer
class DeconvolutionLayer(_BaseConvolution):
    r"""Transposed convolution: the forward pass is Convolution's backward pass w.r.t. its input.

    Weights :math:`(C_{in}, C_{out}/g, k_1, \ldots, k_d)` (Caffe's layout: the bottom's channels
    first); :math:`Y = \mathrm{col2im}(W_g^\top X_g) + b`, with output size
    :math:`o = s(i-1) + d(k-1) + 1 - 2p` per spatial axis.

    Caffe: src/caffe/layers/deconv_layer.cpp.
    """

    type = "Deconvolution"
    reverse = True

    def forward(self, bottom, top):
        w = self._w()
        kdim, gi = w.shape[1], self.channels // self.group
        for b, t in zip(bottom, top):
            x = _to_rows(b.data.reshape(self.num, self.channels, -1))
            cols = np.empty((kdim * self.group, x.shape[1]), x.dtype)
            for g in range(self.group):
                np.matmul(w[g * gi:(g + 1) * gi].T, x[g * gi:(g + 1) * gi], out=cols[g * kdim:(g + 1) * kdim])
            y = self._nd(t.data, self.num_output, self.out_spatial)
            self.geom.col2im(cols, y)
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
            dcols = self.geom.cols(dy, self.in_spatial)
            if need_w:
                x = _to_rows(b.data.reshape(self.num, self.channels, -1))
                dw = self._w("diff")
                for g in range(self.group):
                    dw[g * gi:(g + 1) * gi] += x[g * gi:(g + 1) * gi] @ dcols[g * kdim:(g + 1) * kdim].T
            if propagate_down[i]:
                dx = np.empty((self.channels, dcols.shape[1]), dcols.dtype)
                for g in range(self.group):
                    np.matmul(w[g * gi:(g + 1) * gi], dcols[g * kdim:(g + 1) * kdim], out=dx[g * gi:(g + 1) * gi])
                _from_rows(dx, b.diff.reshape(self.num, self.channels, -1))


@register_layer
class Im2colLayer(Layer):
    r"""The im2col unrolling as a layer: top channel :math:`c \prod k + \mathbf{k}` at output position
    :math:`\mathbf{x}` holds :math:`x_{c, \mathbf{s}\mathbf{x} - \mathbf{p} + \mathbf{d}\mathbf{k}}` (0 in the
    padding); backward is col2im (the adjoint: gradients of overlapping windows add up).

    Caffe: src/caffe/layers/im2col_layer.cpp.
    """

    type = "Im2col"

    def exact_num_bottom_blobs(self):
        return 1

    def exact_num_top_blobs(self):
        return 1

    def setup(self, bottom, top):
        self.geom = ConvGeometry(self.layer_param.convolution_param, bottom[0])

    def reshape(self, bottom, top):
        g = self.geom
        g.check_axes(bottom[0])
        ax = g.channel_axis
        self.num = bottom[0].count_range(0, ax)
        self.channels = bottom[0].shape[ax]
        self.in_spatial = bottom[0].shape[ax + 1:]
        self.out_spatial = g.out_shape(self.in_spatial)
        self.kdim = self.channels * math.prod(g.kernel)
        top[0].reshape(bottom[0].shape[:ax] + (self.kdim,) + self.out_spatial)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape((self.num, self.channels) + self.in_spatial)
        cols = self.geom.cols(x, self.out_spatial)
        _from_rows(cols, top[0].data.reshape(self.num, self.kdim, -1))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        cols = _to_rows(top[0].diff.reshape(self.num, self.kdim, -1))
        self.geom.col2im(cols, bottom[0].diff.reshape((self.num, self.channels) + self.in_spatial))


# --- Crop -------------------------------------------------------------------------------------------
@register_layer
class CropLayer(Layer):
    r"""Crop bottom[0] to bottom[1]'s shape on the axes from ``axis`` on:
    :math:`y_{\mathbf{i}} = x_{\mathbf{i} + \mathbf{o}}`, offsets :math:`\mathbf{o}` (0 before ``axis``;
    one ``offset`` for every cropped axis, or one each).  bottom[1] gives only a shape: no gradient.

    Caffe: src/caffe/layers/crop_layer.cpp.
    """

    type = "Crop"

    def exact_num_bottom_blobs(self):
        return 2

    def exact_num_top_blobs(self):
        return 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        p = self.layer_param.crop_param
        nd = bottom[0].num_axes
        start = bottom[0].canonical_axis_index(p.axis)
        offsets = list(p.offset)
        if len(offsets) > 1 and start + len(offsets) != nd:
            raise LayerError("number of offset values specified must be equal to the number of dimensions following "
                             "axis. (axis %d, %d offsets, %d axes)" % (start, len(offsets), nd),
                             field="crop_param.offset")
        if bottom[1].num_axes != nd:
            raise ShapeError("Crop bottoms must have the same number of axes (%s vs %s)"
                             % (list(bottom[0].shape), list(bottom[1].shape)))
        shape, self.offsets = list(bottom[0].shape), [0] * nd
        for i in range(start, nd):
            off = offsets[0] if len(offsets) == 1 else (offsets[i - start] if offsets else 0)
            if bottom[0].shape[i] - off < bottom[1].shape[i]:
                raise ShapeError("invalid crop parameters in dimension: %d (input %d, offset %d, crop size %d)"
                                 % (i, bottom[0].shape[i], off, bottom[1].shape[i]), field="crop_param.offset")
            shape[i], self.offsets[i] = bottom[1].shape[i], off
        top[0].reshape(shape)
        self.window = tuple(slice(o, o + s) for o, s in zip(self.offsets, shape))

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[self.window]

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise BackwardError("Crop Layer cannot backpropagate to its second input (it gives only a shape).")
        if propagate_down[0]:
            dx = bottom[0].diff
            dx[...] = 0
            dx[self.window] = top[0].diff
