"""Gradient rows for the other loss layers, the recurrent layers and the Python layer."""

import os

import numpy as np

from tests.gradient_cases import GradCase

H_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "infogain_h5.binaryproto")
FILLERS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -0.5 max: 0.5 }'


def _labels(r, c, shape):
    return r.integers(0, c, size=shape).astype(float)


def _away_from(x, points, margin=0.05):
    """Move values within ``margin`` of the non-smooth ``points`` out of the way."""
    x = np.array(x, dtype=float)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, 2 * margin, -2 * margin)
    return x


def _cont(t, n, zeros=((0, None),)):
    """Continuation indicators: 1 except at the given (t, stream) places; t = 0 is 0 for every stream,
    so each forward pass is independent of the state carried over from the previous one."""
    c = np.ones((t, n))
    for step, stream in zeros:
        c[step, slice(None) if stream is None else stream] = 0
    return c


def _contrastive(r, margin, legacy):
    a, b = r.normal(size=(6, 3)), r.normal(size=(6, 3))
    sim = np.array([1, 0, 0, 1, 0, 0], float)
    d2 = ((a - b) ** 2).sum(axis=1)
    kink = margin if legacy else margin ** 2
    far = np.abs(d2 - kink) < 0.1  # keep clear of the hinge
    b[far] *= 1.5
    return [a, b, sim]


CASES = [
    GradCase("sigmoid_ce_soft_targets", 'type: "SigmoidCrossEntropyLoss"',
             lambda r: [r.normal(scale=2, size=(3, 4)), r.uniform(size=(3, 4))]),
    GradCase("sigmoid_ce_ignore_valid",
             'type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 normalization: VALID }',
             lambda r: [r.normal(size=(4, 3)), r.integers(-1, 2, size=(4, 3)).astype(float)]),
    GradCase("infogain_source", 'type: "InfogainLoss" infogain_loss_param { source: "%s" }' % H_SOURCE,
             lambda r: [r.normal(size=(4, 5)), _labels(r, 5, (4,))]),
    GradCase("infogain_bottom_h", 'type: "InfogainLoss"',
             lambda r: [r.normal(size=(4, 5)), _labels(r, 5, (4,)), r.uniform(size=(5, 5))]),
    GradCase("infogain_axis_ignore_full",
             'type: "InfogainLoss" infogain_loss_param { axis: 1 } loss_param { ignore_label: 0 normalization: FULL }',
             lambda r: [r.normal(size=(2, 3, 4)), _labels(r, 3, (2, 4)), r.uniform(size=(3, 3))]),
    GradCase("multinomial_logistic", 'type: "MultinomialLogisticLoss"',
             lambda r: [r.uniform(0.1, 1.0, size=(4, 5)), _labels(r, 5, (4,))]),
    GradCase("hinge_l1", 'type: "HingeLoss" hinge_loss_param { norm: L1 }',
             lambda r: [_away_from(r.normal(size=(4, 5)), (-1, 1)), _labels(r, 5, (4,))]),
    GradCase("hinge_l2", 'type: "HingeLoss" hinge_loss_param { norm: L2 }',
             lambda r: [_away_from(r.normal(size=(4, 5)), (-1, 1)), _labels(r, 5, (4,))]),
    GradCase("contrastive", 'type: "ContrastiveLoss" contrastive_loss_param { margin: 2.0 }',
             lambda r: _contrastive(r, 2.0, False), options={"threshold": 1e-3}),  # Caffe's 1e-4 in d + 1e-4
    GradCase("contrastive_legacy",
             'type: "ContrastiveLoss" contrastive_loss_param { margin: 3.0 legacy_version: true }',
             lambda r: _contrastive(r, 3.0, True)),
    GradCase("rnn", 'type: "RNN" recurrent_param { num_output: 3 %s }' % FILLERS,
             lambda r: [r.normal(size=(4, 2, 3)), _cont(4, 2, ((0, None), (2, 1)))]),
    GradCase("rnn_static_expose",
             'type: "RNN" recurrent_param { num_output: 3 expose_hidden: true %s }' % FILLERS,
             lambda r: [r.normal(size=(3, 2, 2, 2)), _cont(3, 2, ((1, 0),)), r.normal(size=(2, 3)),
                        r.normal(size=(1, 2, 3))], num_top=2),
    GradCase("lstm", 'type: "LSTM" recurrent_param { num_output: 3 %s }' % FILLERS,
             lambda r: [r.normal(size=(4, 2, 3)), _cont(4, 2, ((0, None), (2, 0)))]),
    GradCase("lstm_static", 'type: "LSTM" recurrent_param { num_output: 2 %s }' % FILLERS,
             lambda r: [r.normal(size=(3, 2, 3)), _cont(3, 2), r.normal(size=(2, 2, 2))]),
    GradCase("lstm_expose_hidden", 'type: "LSTM" recurrent_param { num_output: 2 expose_hidden: true %s }' % FILLERS,
             lambda r: [r.normal(size=(3, 2, 3)), _cont(3, 2, ((1, 1),)), r.normal(size=(1, 2, 2)),
                        r.normal(size=(1, 2, 2))], num_top=3),
    GradCase("lstm_unit", 'type: "LSTMUnit"',
             lambda r: [r.normal(size=(1, 3, 4)), r.normal(size=(1, 3, 16)), np.array([[1.0, 0.0, 1.0]])],
             num_top=2),
    GradCase("python_euclidean", 'type: "Python" python_param { module: "tests.pylayers.pyloss" '
                                 'layer: "EuclideanLossLayer" }',
             lambda r: [r.normal(size=(3, 4)), r.normal(size=(3, 4))]),
]
