"""Gradient rows for the shape, normalization and indexing layers."""

import numpy as np

from caffelite.proto import caffe_pb2
from tests.gradient_cases import GradCase


def _n(*shape):
    return lambda r: [r.normal(size=shape)]


# stored statistics for BatchNorm in global mode: sums with scale factor 2
_BN_BLOBS = ('blobs { shape { dim: 3 } data: 0.2 data: -0.4 data: 1.0 } '
             'blobs { shape { dim: 3 } data: 1.0 data: 3.0 data: 0.5 } '
             'blobs { shape { dim: 1 } data: 2.0 }')

CASES = [
    # shape
    GradCase("concat_axis1", 'type: "Concat"', lambda r: [r.normal(size=(2, 3, 2)), r.normal(size=(2, 1, 2))]),
    GradCase("concat_axis0", 'type: "Concat" concat_param { axis: 0 }',
             lambda r: [r.normal(size=(1, 3)), r.normal(size=(2, 3)), r.normal(size=(3, 3))]),
    GradCase("concat_legacy_dim2", 'type: "Concat" concat_param { concat_dim: 2 }',
             lambda r: [r.normal(size=(2, 2, 1)), r.normal(size=(2, 2, 3))]),
    GradCase("concat_single", 'type: "Concat"', _n(2, 3)),
    GradCase("slice_even", 'type: "Slice"', _n(2, 4, 3), num_top=2),
    GradCase("slice_points", 'type: "Slice" slice_param { axis: -1 slice_point: 1 slice_point: 3 }',
             _n(2, 3, 5), num_top=3),
    GradCase("slice_legacy_dim0", 'type: "Slice" slice_param { slice_dim: 0 }', _n(4, 2), num_top=2),
    GradCase("flatten", 'type: "Flatten"', _n(2, 3, 2, 2)),
    GradCase("flatten_axis_range", 'type: "Flatten" flatten_param { axis: 1 end_axis: 2 }', _n(2, 3, 2, 2)),
    GradCase("reshape_infer", 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 2 } }', _n(2, 3, 4)),
    GradCase("reshape_axes", 'type: "Reshape" reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 }',
             _n(2, 3, 4, 2)),
    GradCase("tile", 'type: "Tile" tile_param { tiles: 3 }', _n(2, 3, 2)),
    GradCase("tile_axis0", 'type: "Tile" tile_param { axis: 0 tiles: 2 }', _n(2, 3)),
    # normalization
    GradCase("batchnorm_train", 'type: "BatchNorm"', _n(4, 3, 2, 2)),
    GradCase("batchnorm_train_2d", 'type: "BatchNorm" batch_norm_param { use_global_stats: false eps: 0.01 }',
             _n(5, 3)),
    GradCase("batchnorm_global", 'type: "BatchNorm" ' + _BN_BLOBS, _n(4, 3, 2),
             options={"phase": caffe_pb2.TEST, "check_params": False}),
    GradCase("mvn", 'type: "MVN"', _n(2, 3, 2, 3)),
    GradCase("mvn_across", 'type: "MVN" mvn_param { across_channels: true }', _n(2, 3, 2, 2)),
    GradCase("mvn_mean_only", 'type: "MVN" mvn_param { normalize_variance: false }', _n(2, 3, 2, 2)),
    GradCase("mvn_mean_only_across", 'type: "MVN" mvn_param { normalize_variance: false across_channels: true }',
             _n(2, 3, 4)),
    GradCase("scale_param", 'type: "Scale" scale_param { filler { type: "gaussian" } }', _n(2, 3, 2)),
    GradCase("scale_param_bias", 'type: "Scale" scale_param { bias_term: true filler { type: "gaussian" } '
                                 'bias_filler { type: "gaussian" } }', _n(2, 3, 2, 2)),
    GradCase("scale_num_axes0", 'type: "Scale" scale_param { num_axes: 0 filler { type: "constant" value: 1.5 } }',
             _n(2, 3)),
    GradCase("scale_num_axes_all", 'type: "Scale" scale_param { axis: 1 num_axes: -1 filler { type: "gaussian" } }',
             _n(2, 3, 2)),
    GradCase("scale_bottom", 'type: "Scale"', lambda r: [r.normal(size=(2, 3, 4)), r.normal(size=(3,))]),
    GradCase("scale_bottom_axis0", 'type: "Scale" scale_param { axis: 0 }',
             lambda r: [r.normal(size=(2, 3, 4)), r.normal(size=(2, 3))]),
    GradCase("scale_bottom_eltwise_bias", 'type: "Scale" scale_param { axis: 0 bias_term: true '
                                          'bias_filler { type: "gaussian" } }',
             lambda r: [r.normal(size=(2, 3)), r.normal(size=(2, 3))]),
    GradCase("bias_param", 'type: "Bias" bias_param { filler { type: "gaussian" } }', _n(2, 3, 4)),
    GradCase("bias_bottom", 'type: "Bias"', lambda r: [r.normal(size=(2, 3, 4)), r.normal(size=(3, 4))]),
    GradCase("bias_bottom_scalar", 'type: "Bias"', lambda r: [r.normal(size=(2, 3)), r.normal(size=())]),
    # indexing
    GradCase("reduction_sum", 'type: "Reduction"', _n(2, 3)),
    GradCase("reduction_asum", 'type: "Reduction" reduction_param { operation: ASUM axis: 1 coeff: -2 }',
             _n(2, 3, 2), options={"kink_range": 0.01}),
    GradCase("reduction_sumsq", 'type: "Reduction" reduction_param { operation: SUMSQ axis: -1 }', _n(2, 3, 2)),
    GradCase("reduction_mean", 'type: "Reduction" reduction_param { operation: MEAN axis: 1 coeff: 0.5 }',
             _n(2, 3, 4)),
    GradCase("embed", 'type: "Embed" embed_param { input_dim: 5 num_output: 3 weight_filler { type: "gaussian" } '
                      'bias_filler { type: "gaussian" } }',
             lambda r: [np.array([[0, 4, 2], [2, 2, 1]], dtype=float)]),
    GradCase("embed_nobias", 'type: "Embed" embed_param { input_dim: 4 num_output: 2 bias_term: false '
                             'weight_filler { type: "uniform" min: -1 max: 1 } }',
             lambda r: [np.array([3, 0, 3], dtype=float)]),
    GradCase("filter", 'type: "Filter"',
             lambda r: [r.normal(size=(5, 3)), r.normal(size=(5, 2, 2)), np.array([1, 0, 1, 1, 0], dtype=float)],
             num_top=2),
    GradCase("batch_reindex", 'type: "BatchReindex"',
             lambda r: [r.normal(size=(4, 3, 2)), np.array([3, 0, 3, 1, 1, 2], dtype=float)]),
    GradCase("parameter", 'type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } } '
                          'blobs { shape { dim: 2 dim: 3 } data: 1 data: -2 data: 0.5 data: 3 data: 0 data: -1 }',
             lambda r: []),
]
