r"""Depthwise convolution (group = channels = outputs, MobileNet's 3x3 layers) as a direct stencil.

Each channel has its own kernel, so im2col + one tiny matrix product per group wastes its copies and
calls.  Here the output is summed tap by tap in :func:`convolution_reference`'s order,

.. math:: y_{n,c}[\mathbf{o}] = b_c + \sum_{\mathbf{k}} w_{c,\mathbf{k}}\,
          x^{pad}_{n,c}[\mathbf{s}\mathbf{o} + \mathbf{d}\mathbf{k}],

one multiply and one add over the whole tensor per tap.  In 2-D the padded input is first split by
stride phase (pixel (r, q) to plane (r mod s_h, q mod s_w) at (r div s_h, q div s_w)): every tap is then
one contiguous run of the planes with the output rows laid at the planes' width (the extra columns are
dropped at the end), long runs that NumPy streams instead of short strided rows.  Where the runs are
short next to the channel count (late layers: 512 x 14 x 14, 1024 x 7 x 7), the planes are laid channels
last instead, so that each tap is one pass with the channels as NumPy's inner loop rather than thousands
of short rows, each with its broadcast weight; the same multiplies and adds in the same order, so the same
bits.  Channel ranges (fixed by the shape) go to threads when the tuner says so.
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.compute import parallel
from caffelite.compute.im2col import Workspace, padded_scratch_into

# Channels-last planes when a tap's run (output rows x plane width) is at most this many times the channel
# count: measured in benchmarks/README.md (MobileNet's 512 x 14 x 14 layer 0.80 -> 0.54 ms, 256 x 56 x 56 slower).
CHANNELS_LAST_RUN = 2


class _Planes:
    """The 2-D stride-phase layout of one geometry: taps as (phase row, phase column, offset)."""

    def __init__(self, in_shape, kernel, stride, pad, dilation, out_shape):
        (h, w), (sh, sw), (ph, pw), (oh, ow) = in_shape, stride, pad, out_shape
        steps = [((i * dilation[0]) % sh, (j * dilation[1]) % sw, (i * dilation[0]) // sh, (j * dilation[1]) // sw)
                 for i, j in np.ndindex(*kernel)]
        self.hq = oh + max(s[2] for s in steps)
        self.wq = ow + max(s[3] for s in steps)
        self.run = oh * self.wq
        self.length = self.hq * self.wq + max(s[3] for s in steps)  # the last run reads past the grid
        self.taps = [(a, b, da * self.wq + db) for a, b, da, db in steps]
        self.copies = []  # (phase, input rows, input cols, plane rows, plane cols): input pixels only
        for a, b in np.ndindex(sh, sw):
            r0, c0 = (a - ph) % sh, (b - pw) % sw
            q0, p0 = (r0 + ph) // sh, (c0 + pw) // sw
            nh = min(len(range(r0, h, sh)), self.hq - q0)
            nw = min(len(range(c0, w, sw)), self.wq - p0)
            if nh > 0 and nw > 0:
                rows, cols = slice(r0, r0 + (nh - 1) * sh + 1, sh), slice(c0, c0 + (nw - 1) * sw + 1, sw)
                self.copies.append(((a, b), rows, cols, slice(q0, q0 + nh), slice(p0, p0 + nw)))
        self.out = (oh, ow)


def depthwise(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, pad, dilation, out: np.ndarray,
              ws: Workspace, tuner: parallel.Tuner | None = None) -> None:
    """``out`` (N, C, *o) = the depthwise convolution of ``x`` (N, C, *i) with ``w`` (C, *kernel), bias ``b``."""
    n, c = x.shape[:2]
    kernel = w.shape[1:]
    count = min(parallel.MAX_TILES, max(1, out.size * math.prod(kernel) // (parallel.TILE_MIN // 8)), c)
    parts = parallel.even_parts(c, count)
    wc = w.reshape(c, -1)
    if x.ndim == 4:
        geo = _Planes(x.shape[2:], kernel, stride, pad, dilation, out.shape[2:])
        if geo.run <= CHANNELS_LAST_RUN * c:
            part = _channels_last_part(x, wc, b, geo, stride, out, ws)
            parts = parallel.even_parts(geo.out[0], min(count, geo.out[0]))  # output rows
        else:
            part = _planes_part(x, wc, b, geo, stride, out, ws)
    else:  # 1-D, 3-D: strided windows of the zero-padded input
        padded = tuple(s + 2 * p for s, p in zip(x.shape[2:], pad))
        xp = ws.get("depthwise.pad", (n, c) + padded, x.dtype)
        windows = [tuple(slice(d * t, d * t + s * (o - 1) + 1, s) for t, d, s, o in
                         zip(tap, dilation, stride, out.shape[2:])) for tap in np.ndindex(*kernel)]
        ones = (1,) * (x.ndim - 2)

        def part(cs):
            padded_scratch_into(xp[:, cs], x[:, cs], pad)
            acc = out[:, cs]
            tmp = ws.get("depthwise.tmp", acc.shape, acc.dtype)
            for t, window in enumerate(windows):
                xs = xp[(slice(None), cs) + window]
                wk = wc[cs, t].reshape((-1,) + ones)
                if t == 0:
                    np.multiply(xs, wk, out=acc)
                else:
                    acc += np.multiply(xs, wk, out=tmp)
            if b is not None:
                acc += b[cs].reshape((-1,) + ones)
    with parallel.single_threaded_blas():
        parallel.map_parts(part, parts, tuner)


def _planes_part(x, wc, b, geo: _Planes, stride, out, ws: Workspace):
    """The work on a channel range: planes (phase row, phase column, n, c, run), each tap a run per channel."""
    n, c = x.shape[:2]
    sh, sw = stride
    planes = ws.get("depthwise.planes", (sh, sw, n, c, geo.length), x.dtype)  # shared scratch

    def part(cs):
        planes[:, :, :, cs] = 0  # the padding (a whole pass: cheaper than finding the border of each phase)
        for (a, bb), rows, cols, prow, pcol in geo.copies:
            grid = planes[a, bb, :, cs, :geo.hq * geo.wq].reshape(n, -1, geo.hq, geo.wq)
            grid[:, :, prow, pcol] = x[:, cs, rows, cols]
        k = cs.stop - cs.start
        acc = ws.get("depthwise.acc", (n, k, geo.run), x.dtype)
        tmp = ws.get("depthwise.tmp", (n, k, geo.run), x.dtype)
        for t, (a, bb, off) in enumerate(geo.taps):
            xs = planes[a, bb, :, cs, off:off + geo.run]
            if t == 0:
                np.multiply(xs, wc[cs, t, None], out=acc)
            else:
                acc += np.multiply(xs, wc[cs, t, None], out=tmp)
        valid = acc.reshape(n, k, geo.out[0], geo.wq)[..., :geo.out[1]]
        if b is not None:
            np.add(valid, b[cs].reshape(-1, 1, 1), out=out[:, cs])
        else:
            out[:, cs] = valid
    return part


def _channels_last_part(x, wc, b, geo: _Planes, stride, out, ws: Workspace):
    """The planes (phase row, phase column, n, run, c), filled here; returned: the work on a range of output
    rows, each tap one pass over whole rows of channels (channels innermost)."""
    n, c = x.shape[:2]
    sh, sw = stride
    planes = ws.get("depthwise.planes_cl", (sh, sw, n, geo.length, c), x.dtype)  # shared scratch
    planes[...] = 0
    xt = x.transpose(0, 2, 3, 1)
    for (a, bb), rows, cols, prow, pcol in geo.copies:
        planes[a, bb, :, :geo.hq * geo.wq].reshape(n, geo.hq, geo.wq, c)[:, prow, pcol] = xt[:, rows, cols]
    wt = np.ascontiguousarray(wc.T)  # (taps, c)
    oh, ow = geo.out
    acc = ws.get("depthwise.acc_cl", (n, geo.run, c), x.dtype)

    def part(rs):
        r0, r1 = rs.start * geo.wq, rs.stop * geo.wq
        tmp = ws.get("depthwise.tmp_cl", (n, r1 - r0, c), x.dtype)
        acc_r = acc[:, r0:r1]
        for t, (a, bb, off) in enumerate(geo.taps):
            xs = planes[a, bb, :, off + r0:off + r1]
            if t == 0:
                np.multiply(xs, wt[t], out=acc_r)
            else:
                acc_r += np.multiply(xs, wt[t], out=tmp)
        valid = acc_r.reshape(n, -1, geo.wq, c)[:, :, :ow].transpose(0, 3, 1, 2)
        if b is not None:
            np.add(valid, b.reshape(-1, 1, 1), out=out[:, :, rs])
        else:
            out[:, :, rs] = valid
    return part
