r"""Vision layers built on im2col (caffelite/compute/im2col.py): Convolution, Im2col; Deconvolution in deconvolution.py.

Caffe: src/caffe/layers/{base_conv,conv,deconv,im2col}_layer.cpp.

Convolution is one matrix product per group for a chunk of images at a time (as many as fill
``CHUNK_BYTES`` of columns: large, cache-friendly products, no per-image loop).  With the bottom
unrolled into columns :math:`X_{col} \in \mathbb{R}^{(C k_1 \cdots k_d) \times (N o_1 \cdots o_d)}`
(row = channel and kernel tap, column = image and output position):

.. math:: Y_g = W_g X_{col,g} + b, \qquad
          \frac{\partial E}{\partial W_g} \mathrel{+}= \frac{\partial E}{\partial Y_g} X_{col,g}^\top,
          \qquad \frac{\partial E}{\partial X_{col,g}} = W_g^\top \frac{\partial E}{\partial Y_g}

and col2im adds the column gradients back, one slice per kernel tap (for stride-1 layers where it is
cheaper, the input gradient is instead the stride-1 convolution of the zero-padded top gradient
with the flipped kernel: same numbers, one more product instead of the taps' adds).  Output sizes:

.. math:: o = \left\lfloor \frac{i + 2p - (d(k-1)+1)}{s} \right\rfloor + 1 \ \text{(convolution)},
          \qquad o = s(i-1) + d(k-1) + 1 - 2p \ \text{(deconvolution)}
"""

from __future__ import annotations

import math

import numpy as np

from caffelite.blob import Blob
from caffelite.compute import parallel, winograd
from caffelite.compute.depthwise import depthwise
from caffelite.compute.im2col import ConvGeometry, Patches, WideColumns, Workspace, deconv_out_size
from caffelite.errors import LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer

# Columns are built for about this many bytes of images at a time (at least one image): the buffers stay
# in cache and below malloc's mmap threshold instead of a fresh, page-faulting multi-MB array per call.
CHUNK_BYTES = 4 << 20
# One image's wide columns above this size are built and multiplied in bands of output rows (see reshape).
BAND_BYTES = 4 << 20
# Stride-1 convolutions use WideColumns (long contiguous runs); False forces the exact im2col.
WIDE = True
# The forward uses the wide columns only where they are at most this much wider than the exact ones (big
# images): the garbage columns cost products, and the exact copy won on small ones (benchmarks/README.md);
# or where one image's exact columns would exceed EXACT_MAX_BYTES (the wide ones then go in bands).
WIDE_FORWARD_MAX = 1.08
EXACT_MAX_BYTES = 32 << 20
# Layers that run backward (training), 2-D, one group, undilated, on exact columns, with patch runs
# (kernel width x channels) of at least PATCH_RUN values: forward and weight gradient on channels-last
# patches (compute/im2col.py Patches; benchmarks/README.md).  False: never.
PATCHES = True
PATCH_RUN = 32
# 3x3 stride-1 layers of a net that never runs their backward use Winograd F(2x2, 3x3) where it measured
# faster than im2col (benchmarks/README.md): both channel counts at least WINOGRAD_CHANNELS and outputs of
# WINOGRAD_SIDES pixels a side.  False: never.
WINOGRAD = True
WINOGRAD_CHANNELS = 96
WINOGRAD_SIDES = range(24, 33)


def image_chunks(num: int, per_image: int) -> list[tuple[int, int]]:
    """Image ranges whose columns take about CHUNK_BYTES (at least one image each)."""
    step = max(1, min(num, CHUNK_BYTES // max(per_image, 1)))
    parts = -(-num // step)  # as many chunks, balanced (for the threads)
    bounds = [num * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _filled(blob: Blob, filler) -> Blob:
    """``fill``, except that a new blob is already zero: deploy nets (no filler: constant 0) then build
    without touching their weights' memory (ResNet-152: 60M values)."""
    if filler.type == "constant" and filler.value == 0 and filler.sparse == -1:
        return blob
    return fill(blob, filler)


def to_rows(a: np.ndarray) -> np.ndarray:
    """(N, C, P) as (C, N·P): a copy only when N > 1."""
    n, c, p = a.shape
    return a.reshape(c, p) if n == 1 else a.transpose(1, 0, 2).reshape(c, n * p)


def from_rows(rows: np.ndarray, out: np.ndarray) -> None:
    """Write (C, N·P) into ``out`` (N, C, P)."""
    n, c, p = out.shape
    out[...] = rows.reshape(c, n, p).transpose(1, 0, 2)


# --- Convolution / Deconvolution ----------------------------------------------------------------
class BaseConvolution(Layer):
    """Shared setup of Convolution and Deconvolution (Caffe's BaseConvolutionLayer)."""

    min_bottoms = 1
    min_tops = 1
    equal_bottoms_tops = True

    reverse = False  # Deconvolution: the weights map outputs to inputs

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


def convolution_reference(x, w, b, stride, pad, dilation, group: int = 1, dy=None):
    r"""Convolution's formula in plain NumPy, one kernel tap at a time: the reference that the layer's
    chunked, threaded im2col products and its four backward paths are tested against.

    ``x`` (N, C, *spatial), ``w`` (O, C/group, *kernel), ``b`` (O) or None; ``stride``, ``pad``,
    ``dilation`` one value per spatial axis.  Returns ``y``, and with the top gradient ``dy`` also
    ``(dx, dw, db)``: for each tap :math:`\mathbf{k}` the input window it reads is a strided slice
    :math:`X_{\mathbf{k}}` of the zero-padded input, and per group

    .. math:: Y \mathrel{+}= W_{\mathbf{k}} X_{\mathbf{k}}, \quad
              \frac{\partial E}{\partial W_{\mathbf{k}}} = \sum \frac{\partial E}{\partial Y} X_{\mathbf{k}}^\top,
              \quad \frac{\partial E}{\partial X_{\mathbf{k}}} \mathrel{+}=
              W_{\mathbf{k}}^\top \frac{\partial E}{\partial Y}
    """
    n, c = x.shape[:2]
    o, kernel = w.shape[0], w.shape[2:]
    go, gi = o // group, c // group
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in pad])
    out = tuple((i + 2 * q - d * (k - 1) - 1) // s + 1
                for i, k, s, q, d in zip(x.shape[2:], kernel, stride, pad, dilation))
    y = np.zeros((n, o) + out, np.result_type(x, w))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for tap in np.ndindex(*kernel):
        window = (slice(None), slice(None)) + tuple(
            slice(d * t, d * t + s * (m - 1) + 1, s) for t, d, s, m in zip(tap, dilation, stride, out))
        xs = xp[window]  # (N, C, *out): the input value each output position meets at this tap
        for g in range(group):
            rows, chans = slice(g * go, (g + 1) * go), slice(g * gi, (g + 1) * gi)
            wk = w[(rows, slice(None)) + tap]  # (O/g, C/g)
            y[:, rows] += np.einsum("oc,nc...->no...", wk, xs[:, chans])
            if dy is not None:
                summed = [0] + list(range(2, x.ndim))  # over images and output positions
                dw[(rows, slice(None)) + tap] += np.tensordot(dy[:, rows], xs[:, chans], (summed, summed))
                dxp[(window[0], chans) + window[2:]] += np.einsum("oc,no...->nc...", wk, dy[:, rows])
    if b is not None:
        y += b.reshape((o,) + (1,) * len(kernel))
    if dy is None:
        return y
    dx = dxp[(slice(None), slice(None)) + tuple(slice(q, q + i) for q, i in zip(pad, x.shape[2:]))]
    db = dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))
    return y, dx, dw, db


@register_layer
class ConvolutionLayer(BaseConvolution):
    r"""N-D convolution with groups, dilation, stride and zero padding (Caffe's im2col + GEMM).

    Weights :math:`(C_{out}, C_{in}/g, k_1, \ldots, k_d)`, bias :math:`(C_{out})`;
    :math:`y_{n,o,\mathbf{x}} = b_o + \sum_{c \in g(o)} \sum_{\mathbf{k}} w_{o,c,\mathbf{k}}\,
    x_{n,c,\mathbf{s}\mathbf{x} - \mathbf{p} + \mathbf{d}\mathbf{k}}` (zero outside the input), with
    :math:`o = \lfloor (i + 2p - d(k-1) - 1)/s \rfloor + 1` per spatial axis.

    Forward and backward run im2col products over image chunks in worker threads, with four ways to the
    input gradient (direct 1x1, flipped-kernel convolution, wide-column col2im, col2im):
    :func:`convolution_reference` is the formula written plainly, and the tests compare them.

    Caffe: src/caffe/layers/conv_layer.cpp (and base_conv_layer.cpp).
    """

    type = "Convolution"
    weight_param = "convolution_param"

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if getattr(self, "_planned", None) == (self.num, self.in_spatial, bottom[0].data.itemsize):
            return  # same shapes as last time: keep the column plans
        self._planned = (self.num, self.in_spatial, bottom[0].data.itemsize)
        g = self.geom
        # scratch arrays of the products (and of the columns: g.ws, self.wide.ws), new for new shapes
        self.ws = g.ws = Workspace()
        self.tuners = {}  # role -> parallel.Tuner: threads or not, timed for these shapes
        self.depthwise = self.group == self.channels == self.num_output and not g.is_1x1
        self.winograd_fits = (len(g.kernel) == 2 and g.kernel == (3, 3) and g.stride == (1, 1) and g.dilation == (1, 1)
                              and self.group == 1 and min(self.channels, self.num_output) >= WINOGRAD_CHANNELS
                              and all(o in WINOGRAD_SIDES for o in self.out_spatial))
        self.wide = self.back = None
        # the input gradient as a stride-1 convolution of the top diff padded so, with the flipped kernel
        back_pad = tuple(d * (k - 1) - p for k, p, d in zip(g.kernel, g.pad, g.dilation))
        if WIDE and not g.is_1x1 and all(s == 1 for s in g.stride):
            self.wide = WideColumns(self.in_spatial, g.kernel, g.pad, g.dilation)
            # on wide columns when they are no bigger than col2im's (then it is the faster path)
            if min(back_pad) >= 0:
                back = WideColumns(self.out_spatial, g.kernel, back_pad, g.dilation, role="back")
                if self.num_output * back.run <= self.channels * self.wide.run:
                    self.back = back
        run = self.wide.run if self.wide else math.prod(self.out_spatial)
        self.col_count = self.num * self.channels * math.prod(g.kernel) * run  # values in all the columns
        per_image = self.col_count // self.num * bottom[0].data.itemsize
        self.chunks = image_chunks(self.num, per_image)
        # the same products either way (each output's sum runs over the same kernel taps in the same order)
        exact = math.prod(self.out_spatial)
        self.fwd_wide = self.wide if self.wide is not None and (
            self.wide.run <= WIDE_FORWARD_MAX * exact or per_image * exact // self.wide.run > EXACT_MAX_BYTES) else None
        # their sums run over (kernel row, kernel column, channel): other roundings than im2col's, so the
        # forward takes them only where the net trains (need_backward: a deploy net keeps its numbers)
        self.patches = None
        if (PATCHES and self.fwd_wide is None and len(g.kernel) == 2 and self.group == 1
                and not g.is_1x1 and g.dilation == (1, 1) and g.kernel[1] * self.channels >= PATCH_RUN
                and g.channel_axis == 1):
            self.patches = Patches(self.in_spatial, g.kernel, g.stride, g.pad, self.out_spatial)
        # the input gradient as the flipped-kernel convolution of the top diff, on its patches too, where it
        # has no more positions than the forward ("same" padding; a "valid" layer's full-padded top diff
        # would cost more products than col2im's); whatever the outputs / channels ratio: patch copies are fast
        self.back_patches = None
        if (self.patches is not None and g.stride == (1, 1) and min(back_pad) >= 0
                and math.prod(self.in_spatial) <= math.prod(self.out_spatial)
                and g.kernel[1] * self.num_output >= PATCH_RUN):
            self.back_patches = Patches(self.out_spatial, g.kernel, (1, 1), back_pad, self.in_spatial)
        # Forward of an image whose wide columns exceed BAND_BYTES: bands of output rows, the columns of one
        # band at a time (FCN-8s's conv1_2 at 500x500: 1.1 GB of columns in one piece, 4 MB in bands); the
        # bands, copy and product, in threads when they pay.
        # A single image whose product parallel.tiles cuts by columns goes in as many bands instead: the same
        # products, and the column copies in the threads too.
        self.bands = None
        rows_out = self.wide.out[0] if self.wide is not None else 0
        if self.fwd_wide is not None and per_image > BAND_BYTES:
            step = max(1, BAND_BYTES * rows_out // per_image)
            self.bands = [(r, min(r + step, rows_out)) for r in range(0, rows_out, step)]
        elif self.fwd_wide is not None and self.num == 1 and self.group == 1:
            tiles = parallel.tiles(self.num_output, self.col_count // self.wide.run, self.wide.run)
            if len(tiles) > 1 and tiles[0][0] == slice(None):
                self.bands = [(s.start, s.stop) for s in parallel.even_parts(rows_out, min(len(tiles), rows_out))]

    def _cols(self, x: np.ndarray, forward: bool = False) -> np.ndarray:
        """Columns (C·∏k, n·L) of the images ``x`` (n, C, *spatial); wide ones if the pass uses them."""
        wide = self.fwd_wide if forward else self.wide
        if wide is not None:
            return wide.cols(x)
        if self.geom.is_1x1:
            return to_rows(x.reshape(x.shape[0], self.channels, -1))
        return self.geom.cols(x, self.out_spatial)

    def _tuner(self, role: str) -> parallel.Tuner:
        t = self.tuners.get(role)
        if t is None:
            t = self.tuners[role] = parallel.Tuner()
        return t

    def _grouped(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, ta: bool = False) -> np.ndarray:
        """out_g = a_g @ b_g per group (a_g^T with ``ta``); a's rows are split by output channels.  One group:
        the product's tiles (parallel.tiles), several: the groups, in threads when they pay."""
        go = self.num_output // self.group
        kb = b.shape[0] // self.group
        ko = out.shape[0] // self.group
        role = "grouped.T" if ta else "grouped"
        if self.group == 1:
            parallel.matmul(a.T if ta else a, b, out, self._tuner(role))
            return out

        def group(g):
            ag = a[g * go:(g + 1) * go]
            np.matmul(ag.T if ta else ag, b[g * kb:(g + 1) * kb], out=out[g * ko:(g + 1) * ko])
        if out.size >= parallel.TILE_MIN // 8:
            parallel.map_parts(group, range(self.group), self._tuner(role))
        else:
            for g in range(self.group):
                group(g)
        return out

    def _mapimage_chunks(self, fn, role: str) -> list:
        """``fn`` on every image chunk; for big layers in worker threads (when they pay), over a one-thread BLAS.
        Forward and backward have a tuner each (``role``): their timings are not comparable."""
        if self.col_count < parallel.PARALLEL_MIN or len(self.chunks) < 2:
            return [fn(chunk) for chunk in self.chunks]
        with parallel.single_threaded_blas():
            return parallel.map_parts(fn, self.chunks, self._tuner(role))

    def forward(self, bottom, top):
        w = self._w()
        bias = self.blobs[1].data[:, None] if self.bias_term else None
        # the weights in the patches' column order, once a pass
        wp = Patches.weights(self.blobs[0].data) if self.patches is not None and self.need_backward else None
        for b, t in zip(bottom, top):
            x = self._nd(b.data, self.channels, self.in_spatial)
            y = self._nd(t.data, self.num_output, self.out_spatial)
            y3 = y.reshape(self.num, self.num_output, -1)
            if self.geom.is_1x1 and self.group == 1:  # no im2col: one product per image, straight into top
                x3 = x.reshape(self.num, self.channels, -1)
                parts = [(i, t) for i in range(self.num) for t in parallel.tiles(*w.shape, x3.shape[2])]

                def tile(part, x3=x3, y3=y3):
                    i, (rows, cols) = part
                    np.matmul(w[rows], x3[i][:, cols], out=y3[i][rows, cols])
                    if bias is not None:
                        y3[i][rows, cols] += bias[rows]
                with parallel.single_threaded_blas():
                    parallel.map_parts(tile, parts, self._tuner("1x1"))
            elif WINOGRAD and self.winograd_fits and not self.need_backward:
                winograd.conv3x3(x, self._winograd_weights(), self.geom.pad, y, self.ws, self._tuner("winograd"))
                if bias is not None:
                    y3 += bias
            elif self.depthwise:
                g = self.geom
                depthwise(x, w.reshape((self.channels,) + g.kernel), self.blobs[1].data if self.bias_term else None,
                          g.stride, g.pad, g.dilation, y, self.ws, self._tuner("depthwise"))
            else:
                def chunk(span, x=x, y=y, y3=y3):
                    n0, n1 = span
                    if self.bands is not None:
                        planes = self.wide.planes(x[n0:n1])

                        def band(rows_range):
                            r0, r1 = rows_range
                            cols = self.wide.band(planes, r0, r1)
                            rows = self.ws.get("rows", (self.num_output, cols.shape[1]), x.dtype)
                            if self.group == 1:  # one product per band (the bands are the parts)
                                np.matmul(w, cols, out=rows)
                            else:
                                self._grouped(w, cols, rows)
                            if bias is not None:
                                rows += bias
                            self.wide.to_output(rows, y[n0:n1], r0, r1)
                        parallel.map_parts(band, self.bands, self._tuner("bands"))
                        return
                    if wp is not None:
                        self._patches_forward(wp, bias, x[n0:n1], y[n0:n1])
                        return
                    cols = self._cols(x[n0:n1], forward=True)
                    rows = self._grouped(w, cols, self.ws.get("rows", (self.num_output, cols.shape[1]), x.dtype))
                    if bias is not None:  # here, while the products are in cache
                        rows += bias
                    if self.fwd_wide is not None:
                        self.fwd_wide.to_output(rows, y[n0:n1])
                    else:
                        from_rows(rows, y3[n0:n1])
                self._mapimage_chunks(chunk, "forward")

    def _patches_forward(self, wp, bias, x, y) -> None:
        """Images ``x`` (n, C, H, W) into ``y`` (n, O, o_1, o_2) as channels-last patches @ ``wp``^T (the
        weights in the patches' column order)."""
        cols = self.patches.cols(x)
        rows = self.ws.get("patch_out", (cols.shape[0], self.num_output), x.dtype)
        np.matmul(cols, wp.T, out=rows)
        if bias is not None:
            rows += bias[:, 0]
        y[...] = rows.reshape((x.shape[0],) + self.out_spatial + (self.num_output,)).transpose(0, 3, 1, 2)

    def _winograd_weights(self) -> np.ndarray:
        """The transformed weights, computed again whenever the weights differ from those they came from
        (a user may write new weights into the blob at any time)."""
        w = self.blobs[0].data
        cached = getattr(self, "_winograd", None)
        if cached is None or cached[0].dtype != w.dtype or not np.array_equal(cached[0], w):
            cached = self._winograd = (w.copy(), winograd.transform_weights(w))
        return cached[1]

    def backward(self, top, propagate_down, bottom):
        w = self._w()
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
            dw = self._w("diff")  # read the diffs here, not in the threads: blobs allocate them lazily
            dx = self._nd(b.diff, self.channels, self.in_spatial) if propagate_down[i] else None
            # the weights the input gradient takes, once a pass: flipped (in the patches' order for back_patches),
            # or the forward's in the patches' order for the patch gradients
            w_back = wp = None
            if propagate_down[i] and self.back_patches is not None:
                w_back = Patches.weights(self._flipped(w).reshape((self.channels, self.num_output) + self.geom.kernel))
            elif propagate_down[i] and self.back is not None:
                w_back = self._flipped(w)
            elif propagate_down[i] and self.patches is not None:
                wp = Patches.weights(self.blobs[0].data)

            def chunk(span, x=x, dy_nd=dy_nd, dy3=dy3, dx=dx, w_back=w_back, wp=wp):
                return self._backward_chunk(span, w, x, dy_nd, dy3, dx, w_back, wp, need_w)
            for partial in self._mapimage_chunks(chunk, "backward"):  # summed in chunk order: same numbers as serial
                if partial is not None:
                    dw += partial

    def _backward_chunk(self, span, w, x, dy_nd, dy3, dx, w_back, wp, need_w):
        """Images n0:n1: write their input gradient into ``dx`` (if any), return their weight gradient.
        ``w_back``: flipped weights (the input gradient as a convolution); ``wp``: the weights in the patches'
        order (the input gradient as patch gradients)."""
        n0, n1 = span
        kdim, go = w.shape[1], self.num_output // self.group
        partial = None
        dy_rows = self._dy_rows(dy_nd[n0:n1]) if self.patches is not None and (need_w or wp is not None) else None
        if need_w:
            if self.patches is not None:  # dW in patch order = dY (one row per position)^T @ patches
                cols = self.patches.cols(x[n0:n1])
                partial = Patches.weights_back(dy_rows.T @ cols, self.blobs[0].shape)
            else:
                partial = self._weight_gradient(x[n0:n1], dy_nd[n0:n1], dy3[n0:n1], w.shape, kdim, go)
        if dx is None:
            return partial
        if w_back is not None and self.back_patches is not None:
            cols = self.back_patches.cols(dy_nd[n0:n1])
            rows = self.ws.get("back_rows", (cols.shape[0], self.channels), dy_nd.dtype)
            np.matmul(cols, w_back.T, out=rows)
            dx[n0:n1] = rows.reshape((n1 - n0,) + self.in_spatial + (self.channels,)).transpose(0, 3, 1, 2)
            return partial
        if wp is not None:  # patch gradients dY W (patch order), added back
            rows = self.ws.get("dpatches", (dy_nd[n0:n1].size // self.num_output, kdim), dy_nd.dtype)
            np.matmul(dy_rows, wp, out=rows)
            self.patches.col2im(rows, dx[n0:n1])
            return partial
        if w_back is not None:
            back_cols = self.back.cols(dy_nd[n0:n1])
            ci, kb = self.channels // self.group, back_cols.shape[0] // self.group
            rows = self.ws.get("back_rows", (self.channels, back_cols.shape[1]), dy_nd.dtype)
            for g in range(self.group):
                np.matmul(w_back[g * ci:(g + 1) * ci], back_cols[g * kb:(g + 1) * kb], out=rows[g * ci:(g + 1) * ci])
            self.back.to_output(rows, dx[n0:n1])
            return partial
        dy = self.wide.from_output(dy_nd[n0:n1]) if self.wide is not None else to_rows(dy3[n0:n1])
        dcols = self._grouped(w, dy, self.ws.get("dcols", (kdim * self.group, dy.shape[1]), dy.dtype), ta=True)
        if self.wide is not None:
            self.wide.col2im(dcols, dx[n0:n1])
        elif self.geom.is_1x1:
            from_rows(dcols, dx[n0:n1].reshape(n1 - n0, self.channels, -1))
        else:
            self.geom.col2im(dcols, dx[n0:n1])
        return partial

    def _dy_rows(self, dy: np.ndarray) -> np.ndarray:
        """The top diff of some images (n, O, o_1, o_2) as rows (n·o_1·o_2, O), the patches' order (scratch)."""
        rows = self.ws.get("dy_t", (dy.size // self.num_output, self.num_output), dy.dtype)
        rows.reshape((dy.shape[0],) + self.out_spatial + (self.num_output,))[...] = np.moveaxis(dy, 1, -1)
        return rows

    def _weight_gradient(self, x, dy_nd, dy3, shape, kdim, go) -> np.ndarray:
        """The images' dW_g = dY_g X_g^T over the forward's columns (no garbage columns unless it has them);
        when the images are long next to the outputs, as (X_g dY_g^T)^T, both operands row-major: a faster
        GEMM than the transposed one, worth the copy of dY (not with few positions)."""
        cols = self._cols(x, forward=True)
        dy = self.fwd_wide.from_output(dy_nd) if self.fwd_wide is not None else to_rows(dy3)
        partial = np.empty(shape, cols.dtype)
        if dy.shape[1] >= 8 * go:
            dy_t = self.ws.get("dy_t", dy.shape[::-1], dy.dtype)
            dy_t[...] = dy.T
            for g in range(self.group):
                partial[g * go:(g + 1) * go] = (cols[g * kdim:(g + 1) * kdim] @ dy_t[:, g * go:(g + 1) * go]).T
        else:
            for g in range(self.group):
                np.matmul(dy[g * go:(g + 1) * go], cols[g * kdim:(g + 1) * kdim].T, out=partial[g * go:(g + 1) * go])
        return partial

    def _flipped(self, w: np.ndarray) -> np.ndarray:
        """Weights for the input gradient: per group (C/g, O/g·∏k), kernel flipped on every spatial axis."""
        g, k = self.group, self.geom.kernel
        go, gi = self.num_output // g, self.channels // g
        wf = w.reshape((g, go, gi) + k)[(slice(None),) * 3 + (slice(None, None, -1),) * len(k)]
        return np.ascontiguousarray(wf.swapaxes(1, 2)).reshape(self.channels, go * math.prod(k))


@register_layer
class Im2colLayer(Layer):
    r"""The im2col unrolling as a layer: top channel :math:`c \prod k + \mathbf{k}` at output position
    :math:`\mathbf{x}` holds :math:`x_{c, \mathbf{s}\mathbf{x} - \mathbf{p} + \mathbf{d}\mathbf{k}}` (0 in the
    padding); backward is col2im (the adjoint: gradients of overlapping windows add up).

    Caffe: src/caffe/layers/im2col_layer.cpp.
    """

    type = "Im2col"
    exact_bottoms = 1
    exact_tops = 1

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
        from_rows(cols, top[0].data.reshape(self.num, self.kdim, -1))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        cols = to_rows(top[0].diff.reshape(self.num, self.kdim, -1))
        self.geom.col2im(cols, bottom[0].diff.reshape((self.num, self.channels) + self.in_spatial))
