"""Gradient rows for the neuron layers beyond ReLU/Sigmoid/TanH (those are in foundation)."""

import numpy as np

from tests.gradient_cases import GradCase

KINK = {"kink_range": 0.01}


def _away_from(x, points, margin=0.05):
    """Move values within ``margin`` of any of ``points`` (non-smooth places) out of the way."""
    x = np.array(x, dtype=float)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return x


CASES = [
    GradCase("prelu", 'type: "PReLU"', lambda r: [r.normal(size=(2, 3, 2, 2))], options=KINK),
    GradCase("prelu_filler", 'type: "PReLU" prelu_param { filler { type: "uniform" min: -0.5 max: 0.5 } }',
             lambda r: [r.normal(size=(2, 4, 3))], options=KINK),
    GradCase("prelu_shared", 'type: "PReLU" prelu_param { channel_shared: true }',
             lambda r: [r.normal(size=(3, 2, 2))], options=KINK),
    GradCase("elu", 'type: "ELU"', lambda r: [r.normal(size=(3, 4))], options=KINK),
    GradCase("elu_alpha", 'type: "ELU" elu_param { alpha: 0.5 }', lambda r: [r.normal(size=(3, 4))], options=KINK),
    GradCase("absval", 'type: "AbsVal"', lambda r: [r.normal(size=(3, 4))], options=KINK),
    GradCase("bnll", 'type: "BNLL"', lambda r: [r.normal(scale=3, size=(3, 4))]),
    GradCase("power_square", 'type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }',
             lambda r: [r.normal(size=(3, 4))]),
    GradCase("power_sqrt", 'type: "Power" power_param { power: 0.5 scale: 2 shift: 0.1 }',
             lambda r: [r.uniform(0.5, 2, size=(3, 4))]),
    GradCase("power_cube_noshift", 'type: "Power" power_param { power: 3 scale: 1.5 }',
             lambda r: [_away_from(r.normal(size=(3, 4)), [0.0])]),
    GradCase("power_linear", 'type: "Power" power_param { power: 1 scale: -2 shift: 3 }',
             lambda r: [r.normal(size=(3, 4))]),
    GradCase("power_zero_scale", 'type: "Power" power_param { power: 2 scale: 0 shift: 3 }',
             lambda r: [r.normal(size=(3, 4))]),
    GradCase("power_zero_power", 'type: "Power" power_param { power: 0 }', lambda r: [r.normal(size=(3, 4))]),
    GradCase("exp", 'type: "Exp"', lambda r: [r.normal(size=(3, 4))]),
    GradCase("exp_base2", 'type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', lambda r: [r.normal(size=(3, 4))]),
    GradCase("log", 'type: "Log"', lambda r: [r.uniform(0.5, 3, size=(3, 4))]),
    GradCase("log_base10", 'type: "Log" log_param { base: 10 scale: 2 shift: 1 }',
             lambda r: [r.uniform(0.5, 3, size=(3, 4))]),
    GradCase("dropout_train", 'type: "Dropout" dropout_param { dropout_ratio: 0.3 }',
             lambda r: [r.normal(size=(4, 5))]),
    GradCase("dropout_test", 'type: "Dropout" phase: TEST', lambda r: [r.normal(size=(4, 5))]),
    GradCase("clip", 'type: "Clip" clip_param { min: -0.5 max: 0.7 }',
             lambda r: [_away_from(r.normal(size=(4, 5)), [-0.5, 0.7])]),
    GradCase("swish", 'type: "Swish"', lambda r: [r.normal(size=(3, 4))]),
    GradCase("swish_beta", 'type: "Swish" swish_param { beta: 1.5 }', lambda r: [r.normal(size=(3, 4))]),
]
