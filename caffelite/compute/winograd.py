r"""3x3 stride-1 convolution as Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2015).

Every 2x2 block of outputs comes from a 4x4 tile :math:`d` of the padded input (tiles overlap by 2):

.. math:: Y = A^\top \Big[ \sum_c (G g_{o,c} G^\top) \odot (B^\top d_c B) \Big] A, \qquad
          B^\top = \begin{bmatrix} 1&0&-1&0 \\ 0&1&1&0 \\ 0&-1&1&0 \\ 0&1&0&-1 \end{bmatrix},\
          G = \begin{bmatrix} 1&0&0 \\ \frac12&\frac12&\frac12 \\ \frac12&-\frac12&\frac12 \\ 0&0&1
              \end{bmatrix},\
          A^\top = \begin{bmatrix} 1&1&1&0 \\ 0&1&-1&-1 \end{bmatrix}

so the sum over channels is 16 matrix products :math:`U_{ab} V_{ab}` of (O, C) by (C, tiles): 4
multiply-adds per output and channel instead of im2col's 9, with transforms of a few elementwise
passes (adds only: every constant is 1 or 1/2) in place of im2col's 9-fold copy.  The numbers differ
from the direct sum by float32 rounding only (the tests hold it to the reference).  Where it wins:
benchmarks/README.md; the layer keeps im2col elsewhere.
"""

from __future__ import annotations

import numpy as np

from caffelite.compute import parallel
from caffelite.compute.im2col import Workspace, padded_scratch_into

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def transform_weights(w: np.ndarray) -> np.ndarray:
    """U = G g G^T for every (output, input) channel pair of ``w`` (O, C, 3, 3): shape (16, O, C)."""
    u = np.einsum("ai,ocij,bj->aboc", _G, w.astype(np.float64), _G)  # exact products, rounded once
    return np.ascontiguousarray(u.reshape(16, w.shape[0], w.shape[1]).astype(w.dtype))


def _bt(d0, d1, d2, d3, out: list) -> None:
    """B^T applied along one axis: (d0 - d2, d1 + d2, d2 - d1, d1 - d3) into the four arrays of ``out``."""
    np.subtract(d0, d2, out=out[0])
    np.add(d1, d2, out=out[1])
    np.subtract(d2, d1, out=out[2])
    np.subtract(d1, d3, out=out[3])


BAND_BYTES = 1 << 20  # transformed input tiles per band (cache-sized): the bands run one after the other


def bands(c: int, n: int, th: int, tw: int, itemsize: int) -> list[slice]:
    """Tile-row ranges whose transformed tiles take about BAND_BYTES: a function of the shape only."""
    per_row = 16 * c * n * tw * itemsize
    count = max(1, min(th, round(per_row * th / BAND_BYTES)))
    return parallel.even_parts(th, count)


def conv3x3(x: np.ndarray, u: np.ndarray, pad: tuple[int, int], out: np.ndarray, ws: Workspace,
            tuner: parallel.Tuner | None = None) -> None:
    """``out`` (N, O, OH, OW) = the 3x3 stride-1 convolution of ``x`` (N, C, H, W) padded by ``pad``,
    with the transformed weights ``u`` = :func:`transform_weights` (no bias).  Bands of tile rows
    (:func:`bands`) go through transform, products and inverse transform while in cache, in threads
    when ``tuner`` says so."""
    n, c, h, w = x.shape
    o, oh, ow = out.shape[1:]
    th, tw = -(-oh // 2), -(-ow // 2)
    hp, wp = 2 * th + 2, 2 * tw + 2
    dt = x.dtype
    xp = ws.get("winograd.pad", (c, n, hp, wp), dt)  # shared scratch: channels first, the tiles' layout
    padded_scratch_into(xp, x.swapaxes(0, 1), pad)

    def band(rows: slice) -> None:
        bh = rows.stop - rows.start
        # B^T along the rows (tile rows start every 2 pixels), then along the columns
        r = ws.get("winograd.rows", (4, c, n, bh, wp), dt)
        _bt(*(xp[:, :, 2 * rows.start + i:2 * rows.stop + i:2] for i in range(4)), r)
        v = ws.get("winograd.v", (4, 4, c, n, bh, tw), dt)
        for a in range(4):
            _bt(*(r[a][..., j:j + 2 * tw:2] for j in range(4)), v[a])
        m = ws.get("winograd.m", (16, o, n * bh * tw), dt)
        np.matmul(u, v.reshape(16, c, n * bh * tw), out=m)
        # A^T along both axes: rows (m0 + m1 + m2, m1 - m2 - m3), then the same along the columns
        m = m.reshape(4, 4, o, n, bh, tw)
        p = ws.get("winograd.p", (2, 4, o, n, bh, tw), dt)
        np.add(m[0], m[1], out=p[0])
        p[0] += m[2]
        np.subtract(m[1], m[2], out=p[1])
        p[1] -= m[3]
        y = ws.get("winograd.y", (o, n, 2 * bh, 2 * tw), dt)
        for a in range(2):
            y0, y1 = y[:, :, a::2, 0::2], y[:, :, a::2, 1::2]
            np.add(p[a, 0], p[a, 1], out=y0)
            y0 += p[a, 2]
            np.subtract(p[a, 1], p[a, 2], out=y1)
            y1 -= p[a, 3]
        r0, r1 = 2 * rows.start, min(2 * rows.stop, oh)
        out[:, :, r0:r1] = y[:, :, :r1 - r0, :ow].swapaxes(0, 1)
    with parallel.single_threaded_blas():
        parallel.map_parts(band, bands(c, n, th, tw, x.itemsize), tuner)
