r"""im2col and col2im: convolution as matrix products, and the convolution geometry Caffe reads.

Caffe: src/caffe/util/im2col.cpp, src/caffe/layers/base_conv_layer.cpp (LayerSetUp's parameter checks).

The columns of images :math:`x` (N, C, *spatial) are a
:math:`(C k_1 \cdots k_d) \times (N o_1 \cdots o_d)` matrix: row = channel and kernel tap (Caffe's
weight layout), column = image and output position, built from one strided view (no pixel loop).
col2im is its adjoint: the column values added back at their pixels, one strided slice per tap.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
from numpy.lib.stride_tricks import as_strided

from caffelite.blob import Blob
from caffelite.errors import LayerError, ShapeError

# --- scratch arrays -------------------------------------------------------------------------------
# Scratch memory shared by every workspace, one flat array per (role, dtype, thread): layers run one
# after the other, so they need only the biggest, not the sum.  Weak: freed with the last workspace.
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Workspace:
    """Scratch arrays kept from one call to the next (per role, dtype and thread).

    A fresh multi-MB array per call costs its page faults every time (malloc hands big blocks back to
    the system).  Plain scratch (overwritten at every
    use, valid until the next ``get`` of the same role) is shared with the other workspaces.
    ``zeros=True`` arrays belong to this workspace, one per shape, zero when created: callers use that
    for padding they never write (it stays zero).  Worker threads get their own arrays, so chunks in
    threads never share one; roles used at the same time must differ.
    """

    def __init__(self):
        self._arrays: dict = {}

    def get(self, role: str, shape, dtype, zeros: bool = False) -> np.ndarray:
        dtype, thread = np.dtype(dtype), threading.get_ident()
        if zeros:
            key = (role, tuple(shape), dtype, thread)
            a = self._arrays.get(key)
            if a is None:
                a = self._arrays[key] = np.zeros(shape, dtype)
            return a
        size = math.prod(shape)
        key = (role, dtype, thread)
        a = self._arrays.get(key)
        if a is None or a.size < size:
            a = _SHARED.get(key)
            if a is None or a.size < size:
                a = _SHARED[key] = np.empty(size, dtype)
            self._arrays[key] = a  # held here while this workspace lives
        return a[:size].reshape(shape)


def padded_scratch(ws: Workspace, role: str, x: np.ndarray, shape, lead) -> np.ndarray:
    """Shared scratch of ``shape`` (N, C, *padded) holding ``x`` (N, C, *spatial) at offset ``lead`` per
    spatial axis and zeros everywhere else.  Shared with every layer (a TEST net needs the biggest, not
    the sum), so the border is zeroed again at every call: a slab per side and axis, not the whole array."""
    xp = ws.get(role, shape, x.dtype)
    padded_scratch_into(xp, x, lead)
    return xp


def padded_scratch_into(xp: np.ndarray, x: np.ndarray, lead) -> None:
    """``xp`` (N, C, *padded) = ``x`` at offset ``lead``, zero elsewhere (the border written, not the whole)."""
    for axis, (p, size) in enumerate(zip(lead, x.shape[2:]), start=2):
        before = (slice(None),) * axis
        xp[before + (slice(0, p),)] = 0
        xp[before + (slice(p + size, None),)] = 0
    xp[(Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(x.shape[2:], lead))] = x


# --- im2col / col2im ----------------------------------------------------------------------------
def conv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Caffe's convolution output size along one axis."""
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def deconv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Caffe's deconvolution output size along one axis (the inverse of :func:`conv_out_size`)."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def _padded(x: np.ndarray, pad, ws: Workspace | None = None) -> np.ndarray:
    """``x`` (N, C, *spatial) with ``pad`` zeros on both sides of each spatial axis."""
    if not any(pad):
        return x
    shape = x.shape[:2] + tuple(s + 2 * p for s, p in zip(x.shape[2:], pad))
    if ws is not None:
        return padded_scratch(ws, "im2col.pad", x, shape, pad)
    xp = np.zeros(shape, x.dtype)
    xp[(Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(x.shape[2:], pad))] = x
    return xp


def im2col(x: np.ndarray, kernel, stride, pad, dilation, out_shape, ws: Workspace | None = None) -> np.ndarray:
    """Columns of ``x`` (N, C, *spatial): shape (C·∏kernel, N·∏out), rows ordered (c, k_1..k_d).

    Row order matches Caffe's col buffer (and so the weight layout); columns run over images, then
    output positions, so one matrix product covers the batch.  ``ws``: scratch arrays to reuse.
    """
    n, c = x.shape[:2]
    xp = _padded(x, pad, ws)
    sp = xp.strides[2:]
    shape = (c,) + tuple(kernel) + (n,) + tuple(out_shape)
    strides = ((xp.strides[1],) + tuple(d * s for d, s in zip(dilation, sp)) + (xp.strides[0],)
               + tuple(st * s for st, s in zip(stride, sp)))
    cols = np.empty(shape, x.dtype) if ws is None else ws.get("im2col.cols", shape, x.dtype)
    np.copyto(cols, as_strided(xp, shape, strides, writeable=False))
    return cols.reshape(c * math.prod(kernel), n * math.prod(out_shape))


def col2im(cols: np.ndarray, out: np.ndarray, kernel, stride, pad, dilation, ws: Workspace | None = None) -> None:
    """Write into ``out`` (N, C, *spatial) the sum of the columns back at their pixels (im2col's adjoint).

    Loops over the kernel taps (a handful), each one strided slice add over the whole batch.
    """
    n, c = out.shape[:2]
    out_shape = tuple(conv_out_size(s, k, st, p, d)
                      for s, k, st, p, d in zip(out.shape[2:], kernel, stride, pad, dilation))
    c_k = cols.reshape((c,) + tuple(kernel) + (n,) + out_shape)
    if any(pad):
        shape = out.shape[:2] + tuple(s + 2 * p for s, p in zip(out.shape[2:], pad))
        if ws is None:
            acc = np.zeros(shape, out.dtype)
        else:
            acc = ws.get("col2im.acc", shape, out.dtype)
            acc[...] = 0
    else:
        acc = out
        acc[...] = 0
    for tap in np.ndindex(*kernel):
        window = tuple(slice(t * d, t * d + st * (o - 1) + 1, st)
                       for t, d, st, o in zip(tap, dilation, stride, out_shape))
        acc[(slice(None), slice(None)) + window] += c_k[(slice(None),) + tap].swapaxes(0, 1)
    if acc is not out:
        out[...] = acc[(Ellipsis,) + tuple(slice(p, p + s) for s, p in zip(out.shape[2:], pad))]


class Patches:
    r"""Channels-last im2col for 2-D, one-group, undilated convolutions: one row per image and output
    position, :math:`(N o_1 o_2) \times (k_1 k_2 C)`, columns ordered (kernel row, kernel column, channel).

    From the input laid channels last (N, H + 2p, W + 2p, C), a patch row is k_1 runs of k_2 C contiguous
    values (the exact im2col copies runs of o_2 values only, and small images have short rows); and the
    product :math:`P W^T` has the positions as its long side, the shape OpenBLAS runs fastest for the few
    outputs (32-64) of small training nets.
    """

    def __init__(self, spatial, kernel, stride, pad, out):
        self.spatial, self.kernel, self.stride, self.pad, self.out = (tuple(spatial), tuple(kernel), tuple(stride),
                                                                      tuple(pad), tuple(out))
        self.ws = Workspace()

    def cols(self, x: np.ndarray) -> np.ndarray:
        """(n·o_1·o_2, k_1·k_2·C) patches of ``x`` (n, C, H, W)."""
        n, c = x.shape[:2]
        (h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = self.spatial, self.kernel, self.stride, self.pad, self.out
        xt = self.ws.get("patches.nhwc", (n, h + 2 * ph, w + 2 * pw, c), x.dtype)
        padded_scratch_into(xt.transpose(0, 3, 1, 2), x, self.pad)  # zero border, interior from x
        s = xt.strides
        rows = self.ws.get("patches.rows", (n, oh, ow, kh, kw * c), x.dtype)
        np.copyto(rows, as_strided(xt, rows.shape, (s[0], sh * s[1], sw * s[2], s[1], s[3]), writeable=False))
        return rows.reshape(n * oh * ow, kh * kw * c)

    def col2im(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Write into ``out`` (n, C, H, W) the sum of the patch values ``rows`` (n·o_1·o_2, k_1·k_2·C) back at
        their pixels (:meth:`cols`'s adjoint): one strided add per kernel tap, in tap order, as col2im."""
        n, c = out.shape[:2]
        (h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = self.spatial, self.kernel, self.stride, self.pad, self.out
        acc = self.ws.get("patches.acc", (n, h + 2 * ph, w + 2 * pw, c), out.dtype)
        acc[...] = 0
        taps = rows.reshape(n, oh, ow, kh, kw, c)
        for i, j in np.ndindex(kh, kw):
            acc[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += taps[:, :, :, i, j]
        out[...] = acc[:, ph:ph + h, pw:pw + w].transpose(0, 3, 1, 2)

    @staticmethod
    def weights(w: np.ndarray) -> np.ndarray:
        """(O, C, k_1, k_2) weights as (O, k_1·k_2·C): the patches' column order."""
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)

    @staticmethod
    def weights_back(wt: np.ndarray, shape) -> np.ndarray:
        """(O, k_1·k_2·C) back to the (O, C·k_1·k_2) blob layout; ``shape`` = (O, C, k_1, k_2)."""
        o, c, kh, kw = shape
        return wt.reshape(o, kh, kw, c).transpose(0, 3, 1, 2).reshape(o, -1)


class WideColumns:
    r"""im2col for stride-1 convolutions, "wide": output rows keep the padded width.

    Flattening the padded spatial axes, tap :math:`\mathbf{k}` reads one contiguous run of
    :math:`L = o_1 P_2 \cdots P_d` values starting at :math:`\sum_a d_a k_a \cdot \mathrm{stride}_a`, so the
    copy (and col2im's add) is one long run per (channel, tap, image) instead of one short run per output
    row.  The :math:`P_a - o_a` extra columns of every row are garbage: forward drops them, backward feeds
    them zero gradients, so they add nothing.
    """

    def __init__(self, spatial, kernel, pad, dilation, role: str = "wide"):
        self.role = role  # prefix of the scratch roles: two of these may be in use at once
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
        self.ws = Workspace()

    def _buffer(self, role: str, n: int, c: int, dtype, zeros: bool) -> tuple[np.ndarray, np.ndarray]:
        """The padded planes (N, C, plane + slack) (``zeros``: zero where never written), and their N-D view."""
        buf = self.ws.get(self.role + role, (n, c, self.plane + max(self.slack, 0)), dtype, zeros)
        return buf, buf[:, :, :self.plane].reshape((n, c) + self.padded)

    def cols(self, x: np.ndarray) -> np.ndarray:
        """(C·∏k, N·L) columns of ``x`` (N, C, *spatial)."""
        return self.band(self.planes(x), 0, self.out[0])

    def planes(self, x: np.ndarray) -> np.ndarray:
        """The padded planes (N, C, plane + slack) of ``x`` (N, C, *spatial), for :meth:`band`."""
        n, c = x.shape[:2]
        buf = self.ws.get(self.role + ".planes", (n, c, self.plane + max(self.slack, 0)), x.dtype)
        buf[:, :, self.plane:] = 0  # the slack: read by the garbage columns only, but never garbage itself
        padded_scratch_into(buf[:, :, :self.plane].reshape((n, c) + self.padded), x, self.pad)
        return buf

    def band(self, buf: np.ndarray, r0: int, r1: int) -> np.ndarray:
        """(C·∏k, N·L') columns of the output rows r0:r1 (first spatial axis) from :meth:`planes`:
        a band of the columns, for layers whose whole columns would take too much memory."""
        n, c = buf.shape[:2]
        s, row = buf.strides, math.prod(self.padded[1:])
        run = (r1 - r0) * row
        shape = (c,) + self.kernel + (n, run)
        tap_strides = tuple(d * f * s[2] for d, f in zip(
            self.dilation, [math.prod(self.padded[a + 1:]) for a in range(len(self.padded))]))
        cols = self.ws.get(self.role + ".cols", shape, buf.dtype)
        np.copyto(cols, as_strided(buf[:, :, r0 * row:], shape, (s[1],) + tap_strides + (s[0], s[2]), writeable=False))
        return cols.reshape(-1, n * run)

    def to_output(self, rows: np.ndarray, out: np.ndarray, r0: int = 0, r1: int | None = None) -> None:
        """(O, N·L) wide products of the output rows r0:r1 into ``out`` (N, O, *out), dropping the garbage
        columns."""
        r1 = self.out[0] if r1 is None else r1
        o, n = rows.shape[0], out.shape[0]
        wide = rows.reshape((o, n, r1 - r0) + self.padded[1:])
        out[:, :, r0:r1] = np.moveaxis(wide[self.valid], 0, 1)

    def from_output(self, dy: np.ndarray) -> np.ndarray:
        """``dy`` (N, O, *out) as wide rows (O, N·L), zero in the garbage columns."""
        n, o = dy.shape[:2]
        wide = self.ws.get(self.role + ".from_output", (o, n, self.out[0]) + self.padded[1:], dy.dtype, zeros=True)
        wide[self.valid] = np.moveaxis(dy, 0, 1)  # the garbage columns are never written: still zero
        return wide.reshape(o, n * self.run)

    def col2im(self, cols: np.ndarray, out: np.ndarray) -> None:
        """Add wide columns (C·∏k, N·L) back into ``out`` (N, C, *spatial) (overwritten)."""
        n, c = out.shape[:2]
        buf, view = self._buffer(".col2im", n, c, out.dtype, zeros=False)
        buf[...] = 0
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
        self.ws = Workspace()

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
        """im2col with this layer's scratch arrays: the result is valid until the next call."""
        return im2col(x, self.kernel, self.stride, self.pad, self.dilation, out_shape, self.ws)

    def col2im(self, cols: np.ndarray, out: np.ndarray) -> None:
        col2im(cols, out, self.kernel, self.stride, self.pad, self.dilation, self.ws)
