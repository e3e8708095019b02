"""Gradient rows for the foundation layers."""

from tests.gradient_cases import GradCase


def _labels(rng, n, c, shape=None):
    return rng.integers(0, c, size=shape or (n,)).astype(float)


CASES = [
    GradCase("ip", 'type: "InnerProduct" inner_product_param { num_output: 3 '
                   'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" } }',
             lambda r: [r.normal(size=(2, 3, 2))]),
    GradCase("ip_transpose_axis2", 'type: "InnerProduct" inner_product_param { num_output: 4 axis: 2 '
                                   'transpose: true weight_filler { type: "gaussian" std: 0.5 } }',
             lambda r: [r.normal(size=(2, 3, 5))]),
    GradCase("softmax", 'type: "Softmax"', lambda r: [r.normal(size=(2, 4, 3))]),
    GradCase("softmax_axis_last", 'type: "Softmax" softmax_param { axis: -1 }', lambda r: [r.normal(size=(3, 5))]),
    GradCase("sml_valid", 'type: "SoftmaxWithLoss"', lambda r: [r.normal(size=(4, 5)), _labels(r, 4, 5)]),
    GradCase("sml_spatial_ignore_full",
             'type: "SoftmaxWithLoss" loss_param { ignore_label: 2 normalization: FULL }',
             lambda r: [r.normal(size=(2, 4, 3, 2)), _labels(r, 2, 4, (2, 3, 2))]),
    GradCase("sml_two_tops", 'type: "SoftmaxWithLoss" loss_param { normalize: false }',
             lambda r: [r.normal(size=(3, 4)), _labels(r, 3, 4)], num_top=2, options={"top_indices": [0]}),
    GradCase("euclidean", 'type: "EuclideanLoss"', lambda r: [r.normal(size=(3, 4)), r.normal(size=(3, 4))]),
    GradCase("relu", 'type: "ReLU"', lambda r: [r.normal(size=(3, 4))], options={"kink_range": 0.01}),
    GradCase("relu_leaky", 'type: "ReLU" relu_param { negative_slope: 0.1 }', lambda r: [r.normal(size=(3, 4))],
             options={"kink_range": 0.01}),
    GradCase("sigmoid", 'type: "Sigmoid"', lambda r: [r.normal(size=(3, 4))]),
    GradCase("tanh", 'type: "TanH"', lambda r: [r.normal(size=(3, 4))]),
    GradCase("eltwise_sum", 'type: "Eltwise" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }',
             lambda r: [r.normal(size=(2, 3)), r.normal(size=(2, 3))]),
    GradCase("eltwise_prod", 'type: "Eltwise" eltwise_param { operation: PROD }',
             lambda r: [r.normal(size=(2, 3)) for _ in range(3)]),
    GradCase("eltwise_prod_unstable", 'type: "Eltwise" eltwise_param { operation: PROD stable_prod_grad: false }',
             lambda r: [r.uniform(0.5, 2, size=(2, 3)) for _ in range(2)]),
    GradCase("eltwise_max", 'type: "Eltwise" eltwise_param { operation: MAX }',
             lambda r: [r.normal(size=(2, 3)) for _ in range(3)]),
    GradCase("split", 'type: "Split"', lambda r: [r.normal(size=(2, 3))], num_top=3),
]
