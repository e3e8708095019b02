r"""Public test helpers: the numeric gradient checker every layer is tested with.

Caffe: include/caffe/test/test_gradient_check_util.hpp; Chainer: chainer/gradient_check.py.  The
objective is :math:`E = \sum_t \sum r_t \cdot y_t` over the checked tops, with fixed random upstream
weights :math:`r_t` (seeded), so the top diffs are :math:`r_t`.  A plain :math:`\tfrac12 \lVert y
\rVert^2` would be blind to normalising layers: for :math:`y = x - \bar x` its top diff :math:`y`
already has zero mean, so a backward that drops :math:`-\overline{\partial y}` still passes.  Each
analytic gradient is compared with the centred difference :math:`(E(x + h) - E(x - h)) / 2h`,
within ``threshold · max(|a|, |n|, 1)``.  Unlike Caffe, the layer runs in float64, so the check is
about the maths, not float32 round-off.

Diffs are pre-filled with noise before backward, which checks Caffe's two rules: bottom diffs are
overwritten (``=``), parameter diffs accumulate (``+=``, the gradient is ``diff - noise``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from caffelite.blob import Blob
from caffelite.common import set_random_seed
from caffelite.layer import Layer
from caffelite.layer_factory import create_layer
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text

__all__ = ["check_gradient", "make_layer", "GradientCheckError"]


class GradientCheckError(AssertionError):
    """An analytic gradient that disagrees with the numeric one."""


def make_layer(spec, phase: int = caffe_pb2.TRAIN) -> Layer:
    """A layer from a LayerParameter, its text (``'type: "ReLU" relu_param {...}'``) or a Layer."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, str):
        spec = parse_text(spec, caffe_pb2.LayerParameter(), "<layer spec>")
    param = caffe_pb2.LayerParameter()
    param.CopyFrom(spec)
    if not param.name:
        param.name = param.type.lower() or "layer"
    if not param.HasField("phase"):
        param.phase = phase
    return create_layer(param)


def _blobs(values, dtype) -> list[Blob]:
    out = []
    for v in values:
        if isinstance(v, Blob):
            out.append(Blob(data=np.array(v.data), dtype=dtype))
        else:
            out.append(Blob(data=np.asarray(v, dtype=dtype), dtype=dtype))
    return out


def check_gradient(layer, bottom: Sequence, num_top: int = 1, *, check_bottom: Sequence[int] | None = None,
                   check_params: bool = True, top_indices: Sequence[int] | None = None,
                   stepsize: float = 1e-3, threshold: float = 1e-4, kink: float = 0.0,
                   kink_range: float = -1.0, seed: int = 1701, dtype=np.float64,
                   phase: int = caffe_pb2.TRAIN) -> dict:
    r"""Check a layer's backward against centred differences of its forward.

    Parameters
    ----------
    layer : Layer, LayerParameter or str
        The layer, or its parameters (a text LayerParameter is fine).
    bottom : sequence of arrays or Blobs
        Input values (copied; the layer runs in ``dtype``).
    num_top : int
        How many tops the layer has.
    check_bottom : indices of bottoms to check (default: every bottom the layer allows a
        gradient for, i.e. not labels or index inputs).
    check_params : also check the parameter gradients.
    top_indices : tops that enter the objective (default all; loss layers' second tops excluded
        by passing ``[0]``).
    stepsize, threshold : the centred-difference step and the relative tolerance.
    kink, kink_range : skip inputs with :math:`|x - kink| \le kink\_range` (non-smooth points,
        e.g. ReLU at 0), as Caffe's checker does.
    seed : the random seed set before every forward, so stochastic layers are repeatable; it also
        draws the upstream weights and the noise the diffs start from.

    Returns
    -------
    dict with the number of values checked and the largest error relative to its tolerance.
    Raises GradientCheckError naming the first mismatching value.
    """
    layer = make_layer(layer, phase)
    bottoms = _blobs(bottom, dtype)
    tops = [Blob(dtype=dtype) for _ in range(num_top)]
    set_random_seed(seed)
    layer.run_setup(bottoms, tops)
    for b in layer.blobs:
        b.astype(dtype)
    tops_used = list(range(num_top)) if top_indices is None else list(top_indices)
    if check_bottom is None:
        check_bottom = [i for i in range(len(bottoms)) if layer.allow_force_backward(i)]

    objective_weights: list[np.ndarray] = []

    def objective() -> float:
        set_random_seed(seed)
        layer.run_forward(bottoms, tops)
        return sum(float(np.sum(tops[t].data.astype(np.float64) * objective_weights[k]))
                   for k, t in enumerate(tops_used))

    # analytic gradient: top diffs = the upstream weights; every other diff starts as noise
    set_random_seed(seed)
    layer.run_forward(bottoms, tops)
    rng = np.random.default_rng((seed, 0x5EED))  # a stream of its own: inputs are often drawn from `seed`
    objective_weights.extend(rng.standard_normal(tops[t].shape) for t in tops_used)
    for b in bottoms:
        b.diff[...] = rng.standard_normal(b.shape)
    noise = []
    for p in layer.blobs:
        p.diff[...] = rng.standard_normal(p.shape)
        noise.append(p.diff.astype(np.float64))
    for t in range(num_top):  # set last: a top may view its bottom's diff (Reshape, Flatten)
        tops[t].diff[...] = objective_weights[tops_used.index(t)] if t in tops_used else 0
    propagate = [i in check_bottom for i in range(len(bottoms))]
    layer.param_propagate_down = [bool(check_params)] * len(layer.blobs)
    layer.run_backward(tops, propagate, bottoms)
    targets = [("bottom", i, bottoms[i]) for i in check_bottom]
    if check_params:
        targets += [("param", i, p) for i, p in enumerate(layer.blobs)]
    # bottom diffs are overwritten; parameter diffs accumulate onto what was there
    analytic = {(kind, i): blob.diff.astype(np.float64) - (noise[i] if kind == "param" else 0)
                for kind, i, blob in targets}
    rule = {"bottom": "bottom diffs are overwritten (=), so the noise they started from must be gone",
            "param": "parameter diffs accumulate (+=) onto the noise they started from"}

    checked, worst = 0, 0.0
    for kind, i, blob in targets:
        flat = blob.data.reshape(-1)
        grad = analytic[(kind, i)].reshape(-1)
        for j in range(flat.size):
            x = float(flat[j])
            if kink_range >= 0 and abs(x - kink) <= kink_range:
                continue
            flat[j] = x + stepsize
            plus = objective()
            flat[j] = x - stepsize
            minus = objective()
            flat[j] = x
            numeric = (plus - minus) / (2 * stepsize)
            computed = float(grad[j])
            scale = max(abs(computed), abs(numeric), 1.0)
            err = abs(computed - numeric) / (threshold * scale)
            worst = max(worst, err)
            checked += 1
            if err > 1:
                raise GradientCheckError(
                    "%s layer '%s': gradient of %s %d at flat index %d (value %g): analytic %.8g, numeric %.8g "
                    "(objective Σ r·y with seeded random r; %s)"
                    % (layer.layer_type(), layer.name, kind, i, j, x, computed, numeric, rule[kind]))
    objective()  # leave the layer in its unperturbed state
    return {"checked": checked, "worst": worst}
