r"""Pooling (MAX, AVE, STOCHASTIC); its window machinery is shared with SPP (spp.py).

Caffe: src/caffe/layers/{pooling,spp}_layer.cpp (and pooling_layer.cu for STOCHASTIC, which Caffe
has on the GPU only).  Every pass is a loop over the kernel taps (a handful) of whole-batch strided
slices, or two passes of separable window sums; never a loop over pixels.

Pooling geometry, per spatial axis (input :math:`i`, kernel :math:`k`, stride :math:`s`, pad :math:`p`):

.. math:: o = \left\lceil \frac{i + 2p - k}{s} \right\rceil + 1 \ (\text{CEIL; FLOOR: } \lfloor\cdot\rfloor),
          \quad o \mathrel{-}= 1 \text{ if } p > 0 \text{ and } (o-1)s \ge i + p

(the last window must start inside the image or its leading padding).  Window :math:`[a, b)`:
:math:`a = o_x s - p`, :math:`b = \min(a + k, i + p)`; the average divides by :math:`(b - a)` (the padded
size), over the window clipped to the image.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from caffelite.common import rng
from caffelite.compute.parallel import Tuner, batch_parts, map_parts, value_parts
from caffelite.errors import LayerError, ShapeError
from caffelite.layer import TRAIN, Layer, register_layer
from caffelite.proto import caffe_pb2

_P = caffe_pb2.PoolingParameter
# MAX pooling with argmax runs ~4 passes per tap over its running maximum: on one thread, in blocks of
# images whose planes take about this many bytes, so the passes stay in cache (benchmarks/README.md).
MAX_BLOCK_BYTES = 1 << 20
FLT_MIN = float(np.finfo(np.float32).tiny)  # Caffe's STOCHASTIC test-time guard against 0/0

def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool = True) -> int:
    """Caffe's pooled output size along one axis (see the module docstring)."""
    q = (size + 2 * pad - kernel) / stride
    out = int(math.ceil(q) if ceil_mode else math.floor(q)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window_sum(a: np.ndarray, kernel, stride, out_shape, lead) -> np.ndarray:
    """Sums over every pooling window of ``a`` (N, C, H, W), zero outside; separable: kh + kw slice adds.

    ``lead`` is the leading padding per axis.  Returns (N, C, oh, ow).
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_shape
    ap = _pad_to(a, lead, (oh - 1) * sh + kh, (ow - 1) * sw + kw, 0.0)
    rows = ap[:, :, 0:(oh - 1) * sh + 1:sh].copy()
    for i in range(1, kh):
        rows += ap[:, :, i:i + (oh - 1) * sh + 1:sh]
    out = rows[..., 0:(ow - 1) * sw + 1:sw].copy()
    for j in range(1, kw):
        out += rows[..., j:j + (ow - 1) * sw + 1:sw]
    return out


def _window_max(a: np.ndarray, kernel, stride, out_shape, lead) -> np.ndarray:
    """Maxima over every pooling window of ``a`` (N, C, H, W), -inf outside (Caffe clips windows to the
    image); separable like :func:`_window_sum`.  Returns (N, C, oh, ow), at least -FLT_MAX: Caffe's
    running maximum starts there, so a window wholly outside the image gives -FLT_MAX, not -inf."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_shape
    ap = _pad_to(a, lead, (oh - 1) * sh + kh, (ow - 1) * sw + kw, -np.inf)
    rows = ap[:, :, 0:(oh - 1) * sh + 1:sh].copy()
    for i in range(1, kh):
        np.maximum(rows, ap[:, :, i:i + (oh - 1) * sh + 1:sh], out=rows)
    out = rows[..., 0:(ow - 1) * sw + 1:sw].copy()
    for j in range(1, kw):
        np.maximum(out, rows[..., j:j + (ow - 1) * sw + 1:sw], out=out)
    np.maximum(out, np.finfo(out.dtype).min, out=out)
    return out


def _window_scatter(g: np.ndarray, kernel, stride, in_shape, lead) -> np.ndarray:
    """The adjoint of :func:`_window_sum`: each window's value added to all its pixels; (N, C, H, W)."""
    (kh, kw), (sh, sw), (h, w), (ph, pw) = kernel, stride, in_shape, lead
    n, c, oh, ow = g.shape
    lh, lw = max((oh - 1) * sh + kh, ph + h), max((ow - 1) * sw + kw, pw + w)
    rows = np.zeros((n, c, oh, lw), g.dtype)
    for j in range(kw):
        rows[..., j:j + (ow - 1) * sw + 1:sw] += g
    acc = np.zeros((n, c, lh, lw), g.dtype)
    for i in range(kh):
        acc[:, :, i:i + (oh - 1) * sh + 1:sh] += rows
    return acc[:, :, ph:ph + h, pw:pw + w]


def _pad_to(a: np.ndarray, lead, lh: int, lw: int, value: float) -> np.ndarray:
    """``a`` (N, C, H, W) placed at offset ``lead`` in an array of at least lh × lw filled with ``value``."""
    n, c, h, w = a.shape
    ph, pw = lead
    if ph == 0 and pw == 0 and lh <= h and lw <= w:
        return a
    out = np.full((n, c, max(lh, ph + h), max(lw, pw + w)), value, a.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = a
    return out


def _scatter_to_index(dy: np.ndarray, idx: np.ndarray, in_shape, overlap: bool) -> np.ndarray:
    """(N, C, H, W) gradient: dy added at flat per-plane index ``idx`` (same shape as dy; -1 = none)."""
    n, c, h, w = in_shape
    plane = h * w
    flat = idx.reshape(n * c, -1) + (np.arange(n * c, dtype=np.int64) * plane)[:, None]
    dy = dy.reshape(n * c, -1)
    if idx.size and idx.min() < 0:
        keep = idx.reshape(n * c, -1) >= 0
        flat, dy = flat[keep], dy[keep]
    if overlap:  # windows share pixels: accumulate (in window order, as Caffe's loop does)
        dx = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=n * c * plane).astype(dy.dtype)
    else:
        dx = np.zeros(n * c * plane, dy.dtype)
        dx[flat.ravel()] = dy.ravel()
    return dx.reshape(in_shape)


class _Phases:
    r"""A padded input split by stride phase, so that every kernel tap is one contiguous run.

    Pixel (r, q) of the padded input goes to plane (r mod s_h, q mod s_w) at (r div s_h, q div s_w).
    Tap (i, j) of output (y, x) reads plane (i mod s_h, j mod s_w) at (y + i div s_h, x + j div s_w):
    with the output rows laid at the planes' width :math:`W_q`, the whole tap is the run of
    :math:`o_h W_q` values from offset :math:`(i \operatorname{div} s_h) W_q + j \operatorname{div} s_w`.
    The :math:`W_q - o_w` extra columns per row are garbage, dropped at the end (as WideColumns in
    vision.py).  Numpy then works on long contiguous runs instead of short strided rows.
    """

    def __init__(self, in_shape, kernel, stride, pad, out):
        (h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = in_shape, kernel, stride, pad, out
        self.stride, self.out = stride, out
        lh, lw = max((oh - 1) * sh + kh, ph + h), max((ow - 1) * sw + kw, pw + w)
        self.hq, self.wq = -(-lh // sh), -(-lw // sw)
        self.run = oh * self.wq
        self.taps = [(i % sh, j % sw, (i // sh) * self.wq + j // sw) for i, j in np.ndindex(kh, kw)]
        self.length = max(off for _, _, off in self.taps) + self.run
        self.copies = []  # (a, b, input rows, input cols, plane rows, plane cols) per phase
        for a, b in np.ndindex(sh, sw):
            h0, w0 = (a - ph) % sh, (b - pw) % sw
            nh, nw = len(range(h0, h, sh)), len(range(w0, w, sw))
            if nh and nw:
                q0, p0 = (ph + h0) // sh, (pw + w0) // sw
                self.copies.append((a, b, slice(h0, h, sh), slice(w0, w, sw), slice(q0, q0 + nh), slice(p0, p0 + nw)))

    def split(self, x: np.ndarray, fill: float) -> np.ndarray:
        """Planes (s_h, s_w, N, C, length) of ``x`` (N, C, H, W), padded with ``fill``."""
        n, c = x.shape[:2]
        sh, sw = self.stride
        planes = np.empty((sh, sw, n, c, max(self.length, self.hq * self.wq)), x.dtype)
        planes[..., self.hq * self.wq:] = fill
        filled = set()
        for a, b, rows, cols, prow, pcol in self.copies:
            grid = self._grid(planes[a, b])
            grid[:, :, prow, pcol] = x[:, :, rows, cols]
            # only the border around the copied block needs the padding value
            grid[:, :, :prow.start] = fill
            grid[:, :, prow.stop:] = fill
            grid[:, :, prow, :pcol.start] = fill
            grid[:, :, prow, pcol.stop:] = fill
            filled.add((a, b))
        for a, b in np.ndindex(sh, sw):
            if (a, b) not in filled:  # a phase holding no input pixel (kernel larger than the input)
                planes[a, b] = fill
        return planes

    def _grid(self, plane: np.ndarray) -> np.ndarray:
        """One plane (N, C, length) as its (N, C, H_q, W_q) grid (a view)."""
        return plane[:, :, :self.hq * self.wq].reshape(plane.shape[:2] + (self.hq, self.wq))

    def tap_views(self, planes: np.ndarray) -> list[np.ndarray]:
        """Every tap (row-major) as an (N, C, o_h W_q) view of the planes."""
        return [planes[a, b, :, :, off:off + self.run] for a, b, off in self.taps]

    def merge(self, planes: np.ndarray, out: np.ndarray) -> None:
        """The inverse of ``split``: the input-pixel part of the planes, into ``out`` (N, C, H, W)."""
        for a, b, rows, cols, prow, pcol in self.copies:
            out[:, :, rows, cols] = self._grid(planes[a, b])[:, :, prow, pcol]

    def valid(self, wide: np.ndarray) -> np.ndarray:
        """(N, C, o_h W_q) → the (N, C, o_h, o_w) outputs, dropping the garbage columns (a view)."""
        return wide.reshape(wide.shape[:2] + (self.out[0], self.wq))[..., :self.out[1]]


class Pool2d:
    """One 2-D pooling geometry and method; the maths shared by Pooling and SPP.

    ``forward`` returns the pooled array and keeps what ``backward`` needs (argmax indices, ...).
    """

    def __init__(self, method, kernel, stride, pad, ceil_mode=True, global_pooling=False):
        self.method, self.kernel, self.stride, self.pad = method, tuple(kernel), tuple(stride), tuple(pad)
        self.ceil_mode, self.global_pooling = ceil_mode, global_pooling
        self.idx = self.tap = None
        self.blocked = True  # MAX with argmax in blocks of images (see MAX_BLOCK_BYTES)

    def out_shape(self, in_shape) -> tuple[int, int]:
        out = tuple(pooled_size(i, k, s, p, self.ceil_mode)
                    for i, k, s, p in zip(in_shape, self.kernel, self.stride, self.pad))
        if min(out) <= 0:
            raise ShapeError("pooled output %s is empty (input %s, kernel %s, stride %s, pad %s)"
                             % (list(out), list(in_shape), list(self.kernel), list(self.stride), list(self.pad)))
        return out

    def _whole_image(self, in_shape, out_shape) -> bool:
        return (out_shape == (1, 1) and not any(self.pad)
                and self.kernel[0] >= in_shape[0] and self.kernel[1] >= in_shape[1])

    def _divisor(self, in_shape, out_shape, dtype) -> np.ndarray:
        """AVE's per-window divisor: the window clipped to the padded image (i + p), outer product of axes."""
        sizes = []
        for i, k, s, p, o in zip(in_shape, self.kernel, self.stride, self.pad, out_shape):
            start = np.arange(o) * s - p
            sizes.append(np.minimum(start + k, i + p) - start)
        return np.outer(sizes[0], sizes[1]).astype(dtype)

    def forward(self, x: np.ndarray, train: bool = True, track: bool = True):
        """The pooled array; ``track=False``: MAX keeps no argmax (nothing will go backward: 1 pass per tap, not 4)."""
        n, c, h, w = x.shape
        out_shape = self.out_shape((h, w))
        self.in_shape, self.out = x.shape, out_shape
        if self.method == _P.MAX:
            return self._max(x, out_shape, track)
        if self.method == _P.AVE:
            if self._whole_image((h, w), out_shape):
                return x.mean(axis=(2, 3), keepdims=True)
            s = _window_sum(x, self.kernel, self.stride, out_shape, self.pad)
            s /= self._divisor((h, w), out_shape, x.dtype)
            return s
        if self.method == _P.STOCHASTIC:
            return self._stochastic_train(x, out_shape) if train else self._stochastic_test(x, out_shape)
        raise LayerError("Unknown pooling method %d." % self.method, field="pooling_param.pool")

    def _tap_dtype(self):
        return np.int8 if self.kernel[0] * self.kernel[1] < 128 else np.int32

    def _max(self, x, out_shape, track=True):
        n, c, h, w = x.shape
        self.tap = None
        if not track:  # the maximum alone is separable: kh + kw passes instead of kh · kw
            return _window_max(x, self.kernel, self.stride, out_shape, self.pad)
        if self._whole_image((h, w), out_shape):
            flat = x.reshape(n, c, h * w)
            self.idx = flat.argmax(axis=2).reshape(n, c, 1, 1)
            return flat.max(axis=2).reshape(n, c, 1, 1)
        # Caffe starts from -FLT_MAX and keeps the first strict maximum in row-major window order; -inf padding
        # never wins, so the clipped windows come out the same.  Branch-free updates: masked copies are slow.
        ph = self.phases = _Phases((h, w), self.kernel, self.stride, self.pad, out_shape)
        tap = np.zeros((n, c, ph.run), self._tap_dtype())
        blocks = self._blocks(n, c, x.itemsize)
        out = np.empty((n, c) + out_shape, x.dtype) if len(blocks) > 1 else None
        for b in blocks:
            shape = (b.stop - b.start, c, ph.run)
            best = np.full(shape, np.finfo(x.dtype).min, x.dtype)  # fresh arrays: reused scratch measured slower
            hit = np.empty(shape, bool)
            step = np.empty(shape, tap.dtype)
            tap_b = tap[b]
            for t, v in enumerate(ph.tap_views(ph.split(x[b], -np.inf))):
                np.greater(v, best, out=hit)
                np.maximum(best, v, out=best)
                # tap <- t where hit: the taps so far are all below t, so a maximum with t·hit does it
                np.multiply(hit.view(np.int8), tap.dtype.type(t), out=step)
                np.maximum(tap_b, step, out=tap_b)
            if out is None:  # one block: its view (the caller copies it into the top)
                out = ph.valid(best)
            else:
                out[b] = ph.valid(best)
        self.tap, self.idx = tap, None
        return out

    def _blocks(self, n: int, c: int, itemsize: int) -> list[slice]:
        """Image ranges whose stride-phase planes take about MAX_BLOCK_BYTES (all in one unless ``blocked``)."""
        if not self.blocked:
            return [slice(0, n)]
        ph = self.phases
        per_image = self.stride[0] * self.stride[1] * c * max(ph.length, ph.hq * ph.wq) * itemsize
        step = max(1, MAX_BLOCK_BYTES // per_image)
        return [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def argmax_index(self) -> np.ndarray:
        """MAX/STOCHASTIC: each output's chosen pixel as its index h·W + w in the plane (Caffe's mask)."""
        if self.idx is None:
            kw, (sh, sw), (oh, ow) = self.kernel[1], self.stride, self.out
            ph, pw = self.pad if self.method == _P.MAX else (0, 0)
            tap = self.phases.valid(self.tap).astype(np.int64)
            row = (np.arange(oh) * sh - ph)[:, None] + tap // kw
            col = (np.arange(ow) * sw - pw)[None, :] + tap % kw
            self.idx = row * self.in_shape[3] + col
        return self.idx

    def _stochastic_train(self, x, out_shape):
        self.phases = _Phases(x.shape[2:], self.kernel, self.stride, (0, 0), out_shape)
        taps = self.phases.tap_views(self.phases.split(x, 0.0))
        shape = (x.shape[0], x.shape[1], self.phases.run)
        total = np.zeros(shape, x.dtype)
        for v in taps:
            total += v
        thres = (rng().random((x.shape[0], x.shape[1]) + out_shape) * self.phases.valid(total)).astype(x.dtype)
        thres_wide = np.zeros(shape, x.dtype)
        self.phases.valid(thres_wide)[...] = thres
        cum = np.zeros(shape, x.dtype)
        tap = np.zeros(shape, self._tap_dtype())
        out = np.zeros(shape, x.dtype)
        hit = np.empty(shape, bool)
        found = np.zeros(shape, bool)
        for t, v in enumerate(taps):  # the first tap whose running sum reaches u * total
            cum += v
            np.greater_equal(cum, thres_wide, out=hit)
            hit &= ~found
            found |= hit
            tap += hit * tap.dtype.type(t)
            out += v * hit
        self.tap, self.idx = tap, None
        return self.phases.valid(out)

    def _stochastic_test(self, x, out_shape):
        self.x = x
        self.den = _window_sum(x, self.kernel, self.stride, out_shape, (0, 0)) + FLT_MIN
        self.y = _window_sum(x * x, self.kernel, self.stride, out_shape, (0, 0)) / self.den
        self.idx = None
        return self.y

    def backward(self, dy: np.ndarray, train: bool = True, idx: np.ndarray | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Gradient w.r.t. the input of the last forward, written into ``out`` when given (and returned).

        ``idx`` overrides the stored argmax (MAX's mask top).
        """
        n, c, h, w = self.in_shape
        if out is not None and self.method == _P.MAX and idx is None and self.tap is not None:
            self._tap_backward(dy, out)
            return out
        dx = self._backward(dy, train, idx)
        if out is None:
            return dx
        out[...] = dx
        return out

    def _backward(self, dy, train, idx):
        n, c, h, w = self.in_shape
        if self.method == _P.AVE:
            if self._whole_image((h, w), self.out):
                return np.broadcast_to(dy / (h * w), self.in_shape).astype(dy.dtype)
            g = dy / self._divisor((h, w), self.out, dy.dtype)
            return _window_scatter(g, self.kernel, self.stride, (h, w), self.pad)
        if self.method == _P.STOCHASTIC and not train:
            # d(Σx²/Σx)/dx_i = (2 x_i - y) / Σx over every window holding x_i
            a = dy / self.den
            return (2 * self.x * _window_scatter(a, self.kernel, self.stride, (h, w), (0, 0))
                    - _window_scatter(a * self.y, self.kernel, self.stride, (h, w), (0, 0)))
        if idx is not None or self.tap is None:  # Caffe's mask top, or the whole-image argmax
            overlap = any(k > s for k, s in zip(self.kernel, self.stride))
            return _scatter_to_index(dy, self.argmax_index() if idx is None else idx, self.in_shape, overlap)
        return self._tap_backward(dy, np.empty(self.in_shape, dy.dtype))

    def _tap_backward(self, dy, dx):
        """Route each output's gradient to its chosen tap: one contiguous add per tap, on the stride phases."""
        n, c = self.in_shape[:2]
        ph = self.phases
        for b in self._blocks(n, c, dy.itemsize):
            tap = self.tap[b]
            dy_wide = np.zeros(tap.shape, dy.dtype)
            ph.valid(dy_wide)[...] = dy[b]  # zero in the garbage columns: they add nothing
            acc = np.zeros((self.stride[0], self.stride[1], b.stop - b.start, c, max(ph.length, ph.hq * ph.wq)),
                           dy.dtype)
            sel = np.empty(tap.shape, bool)
            routed = np.empty(tap.shape, dy.dtype)
            for t, view in enumerate(ph.tap_views(acc)):
                np.equal(tap, t, out=sel)
                view += np.multiply(dy_wide, sel, out=routed)
            ph.merge(acc, dx[b])
        return dx


def pooling_setup(p, layer_type: str = "Pooling") -> tuple:
    """Read a PoolingParameter as Caffe's PoolingLayer::LayerSetUp does: (kernel or None, stride, pad)."""
    f = "pooling_param."
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise LayerError("With Global_pooling: true Filter size cannot specified", field=f + "kernel_size")
    else:
        if p.HasField("kernel_size") == (p.HasField("kernel_h") and p.HasField("kernel_w")):
            if p.HasField("kernel_size"):
                raise LayerError("Filter size is kernel_size OR kernel_h and kernel_w; not both",
                                 field=f + "kernel_size")
            raise LayerError("For non-square filters both kernel_h and kernel_w are required.",
                             field=f + "kernel_h")
    if (p.HasField("pad") and (p.HasField("pad_h") or p.HasField("pad_w"))
            or (p.HasField("pad_h") != p.HasField("pad_w"))):
        raise LayerError("pad is pad OR pad_h and pad_w are required.", field=f + "pad")
    if (p.HasField("stride") and (p.HasField("stride_h") or p.HasField("stride_w"))
            or (p.HasField("stride_h") != p.HasField("stride_w"))):
        raise LayerError("Stride is stride OR stride_h and stride_w are required.", field=f + "stride")
    kernel = None
    if not p.global_pooling:
        kernel = (p.kernel_size, p.kernel_size) if p.HasField("kernel_size") else (p.kernel_h, p.kernel_w)
        if min(kernel) <= 0:
            raise LayerError("Filter dimensions cannot be zero. (kernel %s)" % list(kernel), field=f + "kernel_size")
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    if min(stride) <= 0:
        raise LayerError("Stride dimensions cannot be zero. (stride %s)" % list(stride), field=f + "stride")
    if p.global_pooling and (any(pad) or stride != (1, 1)):
        raise LayerError("With Global_pooling: true; only pad = 0 and stride = 1 (pad %s, stride %s)"
                         % (list(pad), list(stride)), field=f + "global_pooling")
    if any(pad):
        if p.pool not in (_P.AVE, _P.MAX):
            raise LayerError("Padding implemented only for average and max pooling.", field=f + "pad")
        if kernel is not None and (pad[0] >= kernel[0] or pad[1] >= kernel[1]):
            raise LayerError("pad must be smaller than kernel (pad %s, kernel %s)" % (list(pad), list(kernel)),
                             field=f + "pad")
    return kernel, stride, pad


def check_4d(blob, what="Input") -> None:
    if blob.num_axes != 4:
        raise ShapeError("%s must have 4 axes, corresponding to (num, channels, height, width) (got shape %s)"
                         % (what, list(blob.shape)))


@register_layer
class PoolingLayer(Layer):
    r"""2-D max, average or stochastic pooling (Caffe's geometry; see the module docstring).

    - MAX: :math:`y = \max_{window} x`, the first maximum in row-major order; an optional second top
      holds its index :math:`h W + w` in the plane, as floats.  The gradient goes to that pixel.
    - AVE: :math:`y = \sum_{window \cap image} x / ((b_h - a_h)(b_w - a_w))` (the padded window size).
    - STOCHASTIC (Caffe: GPU only): TRAIN picks pixel :math:`j` of the window with probability
      :math:`x_j / \sum x` (activations non-negative) and outputs :math:`x_j`; TEST outputs
      :math:`\sum x^2 / (\epsilon + \sum x)`, :math:`\epsilon` = FLT_MIN.

    Caffe: src/caffe/layers/pooling_layer.cpp (and pooling_layer.cu for STOCHASTIC).
    """

    type = "Pooling"
    exact_bottoms = 1
    min_tops = 1

    def max_top_blobs(self):
        return 2 if self.layer_param.pooling_param.pool == _P.MAX else 1

    def setup(self, bottom, top):
        p = self.layer_param.pooling_param
        self.kernel, stride, pad = pooling_setup(p)
        self.pool = Pool2d(p.pool, self.kernel or (1, 1), stride, pad, p.round_mode == _P.CEIL, p.global_pooling)

    def reshape(self, bottom, top):
        check_4d(bottom[0])
        n, c, h, w = bottom[0].shape
        if self.pool.global_pooling:
            self.pool.kernel = (h, w)
        self.pool.out = self.pool.out_shape((h, w))
        for t in top:
            t.reshape((n, c) + self.pool.out)
        # parts of the batch pooled in parallel, each with its own state; STOCHASTIC draws in one piece
        self.parts = batch_parts(n, bottom[0].count) if self.pool.method != _P.STOCHASTIC else [slice(0, n)]
        self.pools = [self.pool] + [copy.copy(self.pool) for _ in self.parts[1:]]
        for pool in self.pools:  # blocks pay on one thread; two threads running small blocks contend (GIL)
            pool.blocked = len(self.parts) == 1
        if getattr(self, "tuned_shape", None) != bottom[0].shape:  # forward, backward: parts in threads when they pay
            self.tuners, self.tuned_shape = [Tuner(), Tuner()], bottom[0].shape

    def forward(self, bottom, top):
        train = self.phase == TRAIN
        x, y, mask = bottom[0].data, top[0].data, top[1].data if len(top) > 1 else None

        track = self.need_backward or mask is not None
        p = self.pool
        if not track and p.method == _P.MAX and len(self.parts) == 1:  # batch 1: channel ranges, no state
            def channels(cs):
                y[:, cs] = _window_max(x[:, cs], p.kernel, p.stride, p.out, p.pad)
            map_parts(channels, value_parts(x.shape[1], x.size // x.shape[1]), self.tuners[0])
            return

        def part(k):
            pool, n = self.pools[k], self.parts[k]
            y[n] = pool.forward(x[n], train, track)
            if mask is not None:
                mask[n] = pool.argmax_index()
        map_parts(part, range(len(self.parts)), self.tuners[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        train = self.phase == TRAIN
        dy, dx = top[0].diff, bottom[0].diff  # here, not in the threads: a blob allocates its diff lazily

        def part(k):
            pool, n = self.pools[k], self.parts[k]
            idx = top[1].data[n].astype(np.int64) if len(top) > 1 else None  # Caffe reads the mask top
            pool.backward(dy[n], train, idx, out=dx[n])
        map_parts(part, range(len(self.parts)), self.tuners[1])
