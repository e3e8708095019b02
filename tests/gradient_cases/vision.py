"""Gradient rows for the vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP, LRN, Crop."""

from caffelite.proto import caffe_pb2
from tests.gradient_cases import GradCase

GAUSS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" }'


def _conv(params, kind="Convolution"):
    return 'type: "%s" convolution_param { %s %s }' % (kind, params, GAUSS)


def _distinct(r, shape, spacing=0.05):
    """Values at least ``spacing`` apart (no ties, no near-ties: MAX pooling's kinks stay out of reach)."""
    n = 1
    for d in shape:
        n *= d
    return (r.permutation(n) * spacing - n * spacing / 2).reshape(shape)


def _pool(params):
    return 'type: "Pooling" pooling_param { %s }' % params


CASES = [
    # Convolution: stride/pad, groups + dilation, rectangular geometry, 1x1 paths, N-D, axis, shared weights
    GradCase("conv_stride_pad", _conv("num_output: 2 kernel_size: 3 pad: 1 stride: 2"),
             lambda r: [r.normal(size=(2, 3, 5, 5))]),
    GradCase("conv_stride1_pad_wide", _conv("num_output: 2 kernel_size: 3 pad: 1"),
             lambda r: [r.normal(size=(2, 2, 4, 5))]),
    GradCase("conv_group_same_pad", _conv("num_output: 4 kernel_size: 3 group: 2 pad: 1"),
             lambda r: [r.normal(size=(2, 4, 3, 4))]),
    GradCase("conv_group_dilation", _conv("num_output: 4 kernel_size: 3 group: 2 dilation: 2 pad: 1"),
             lambda r: [r.normal(size=(1, 4, 6, 6))]),
    GradCase("conv_rect", _conv("num_output: 2 kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0"),
             lambda r: [r.normal(size=(1, 2, 4, 6))]),
    GradCase("conv_1x1_nobias", _conv("num_output: 3 kernel_size: 1 bias_term: false"),
             lambda r: [r.normal(size=(2, 4, 2, 3))]),
    GradCase("conv_1x1_group", _conv("num_output: 4 kernel_size: 1 group: 2"),
             lambda r: [r.normal(size=(2, 4, 2, 2))]),
    GradCase("conv_3d_same_pad", _conv("num_output: 2 kernel_size: 3 pad: 1"),
             lambda r: [r.normal(size=(1, 2, 3, 3, 4))]),
    GradCase("conv_3d_stride", _conv("num_output: 2 kernel_size: 2 stride: 2 pad: 1"),
             lambda r: [r.normal(size=(1, 2, 3, 3, 3))]),
    GradCase("conv_3d_wide_dilation",
             _conv("num_output: 2 kernel_size: 2 kernel_size: 2 kernel_size: 1 dilation: 2 pad: 1"),
             lambda r: [r.normal(size=(1, 2, 3, 4, 3))]),
    GradCase("conv_axis2", _conv("num_output: 2 kernel_size: 2 axis: 2"),
             lambda r: [r.normal(size=(2, 2, 3, 3, 3))]),
    GradCase("conv_two_bottoms", _conv("num_output: 2 kernel_size: 2 stride: 1"),
             lambda r: [r.normal(size=(1, 2, 3, 3)), r.normal(size=(1, 2, 3, 3))], num_top=2),
    # Deconvolution
    GradCase("deconv_stride_pad", _conv("num_output: 3 kernel_size: 3 stride: 2 pad: 1", "Deconvolution"),
             lambda r: [r.normal(size=(2, 2, 3, 3))]),
    GradCase("deconv_group_rect", _conv("num_output: 4 kernel_h: 2 kernel_w: 3 stride: 2 group: 2",
                                        "Deconvolution"),
             lambda r: [r.normal(size=(1, 4, 2, 3))]),
    GradCase("deconv_3d_dilation", _conv("num_output: 2 kernel_size: 2 dilation: 2", "Deconvolution"),
             lambda r: [r.normal(size=(1, 2, 2, 2, 2))]),
    # Im2col
    GradCase("im2col", 'type: "Im2col" convolution_param { kernel_size: 3 pad: 1 stride: 2 }',
             lambda r: [r.normal(size=(2, 2, 4, 4))]),
    GradCase("im2col_dilation_rect", 'type: "Im2col" convolution_param { kernel_h: 2 kernel_w: 3 dilation: 2 }',
             lambda r: [r.normal(size=(1, 2, 4, 5))]),
    # Pooling
    GradCase("pool_max_pad", _pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"),
             lambda r: [_distinct(r, (2, 2, 5, 5))]),
    GradCase("pool_max_mask_top", _pool("pool: MAX kernel_size: 2 stride: 2"),
             lambda r: [_distinct(r, (1, 2, 5, 5))], num_top=2, options={"top_indices": [0]}),
    GradCase("pool_max_rect_floor", _pool("pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 "
                                          "round_mode: FLOOR"),
             lambda r: [_distinct(r, (1, 2, 5, 6))]),
    GradCase("pool_max_global", _pool("pool: MAX global_pooling: true"), lambda r: [_distinct(r, (2, 3, 3, 4))]),
    GradCase("pool_ave_pad", _pool("pool: AVE kernel_size: 3 stride: 2 pad: 1"),
             lambda r: [r.normal(size=(2, 2, 5, 5))]),
    GradCase("pool_ave_rect", _pool("pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 1"),
             lambda r: [r.normal(size=(1, 2, 4, 5))]),
    GradCase("pool_ave_global", _pool("pool: AVE global_pooling: true"), lambda r: [r.normal(size=(2, 3, 3, 4))]),
    GradCase("pool_stochastic_train", _pool("pool: STOCHASTIC kernel_size: 3 stride: 2"),
             lambda r: [r.uniform(0.2, 1.0, size=(1, 2, 5, 5))]),
    GradCase("pool_stochastic_test", _pool("pool: STOCHASTIC kernel_size: 2 stride: 1"),
             lambda r: [r.uniform(0.2, 1.0, size=(1, 2, 4, 4))], options={"phase": caffe_pb2.TEST}),
    # SPP
    GradCase("spp_max", 'type: "SPP" spp_param { pyramid_height: 3 pool: MAX }',
             lambda r: [_distinct(r, (1, 2, 7, 9))]),
    GradCase("spp_ave", 'type: "SPP" spp_param { pyramid_height: 2 pool: AVE }',
             lambda r: [r.normal(size=(2, 2, 5, 4))]),
    GradCase("spp_single_level", 'type: "SPP" spp_param { pyramid_height: 1 pool: AVE }',
             lambda r: [r.normal(size=(2, 2, 3, 3))]),
    # LRN
    GradCase("lrn_across", 'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }',
             lambda r: [r.normal(size=(2, 5, 2, 2))]),
    GradCase("lrn_across_k_beta", 'type: "LRN" lrn_param { local_size: 5 alpha: 2 beta: 0.6 k: 2 }',
             lambda r: [r.normal(size=(1, 7, 2, 2))]),
    GradCase("lrn_within", 'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }',
             lambda r: [r.normal(size=(2, 2, 4, 4))]),
    # Crop (no gradient to the shape input)
    GradCase("crop_per_axis", 'type: "Crop" crop_param { axis: 2 offset: 1 offset: 2 }',
             lambda r: [r.normal(size=(2, 2, 5, 6)), r.normal(size=(2, 2, 3, 3))]),
    GradCase("crop_axis1_one_offset", 'type: "Crop" crop_param { axis: 1 offset: 1 }',
             lambda r: [r.normal(size=(2, 4, 4, 4)), r.normal(size=(2, 2, 3, 2))]),
]
