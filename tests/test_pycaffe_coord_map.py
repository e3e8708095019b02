"""caffe.coord_map (caffelite.pycaffe.coord_map) on NetSpec tops, and crop() checked on a real net."""

from __future__ import annotations

import numpy as np
import pytest

import caffelite
from caffelite.net_spec import NetSpec
from caffelite.net_spec import layers as L
from caffelite.net_spec import params as P
from caffelite.pycaffe.coord_map import (
    AxisMismatchException,
    CropError,
    UnconnectedTopsError,
    UndefinedMapException,
    compose,
    conv_params,
    coord_map,
    coord_map_from_to,
    crop,
    inverse,
)


def conv_pool_deconv(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0):
    """data -> conv -> max pool -> deconv (kernel twice its stride), plus a second input."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.aux = L.Input(shape=dict(dim=[2, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool, pad=0)
    dks = [2 * s for s in dstride] if isinstance(dstride, list) else 2 * dstride
    n.deconv = L.Deconvolution(n.pool, num_output=10, kernel_size=dks, stride=dstride, pad=dpad)
    return n


def _expected_conv_pool_deconv(ks, stride, pad, pool, dstride, dpad):
    """The map deconv -> data by composing the three layers' (a, b) by hand, in NumPy."""
    ks, stride, pad = (np.array(v, ndmin=1, dtype=float) for v in (ks, stride, pad))
    maps = [(1 / stride, (pad - (ks - 1) / 2) / stride),            # conv
            (np.array([1 / pool]), np.array([-(pool - 1) / 2 / pool])),  # pool
            (np.array(dstride, ndmin=1, dtype=float),                    # deconv
             (2 * np.array(dstride, ndmin=1) - 1) / 2 - dpad)]
    a, b = np.ones(1), np.zeros(1)
    for a2, b2 in maps:  # y_deconv = a x_data + b
        a, b = a2 * a, a2 * b + b2
    return 1 / a, -b / a  # data coordinates from deconv coordinates


@pytest.mark.parametrize("kw", [dict(), dict(pool=4, dstride=4), dict(pad=3), dict(dpad=2), dict(pad=5, dpad=5),
                                dict(ks=5, stride=2, pad=10)])
def test_conv_pool_deconv_matches_hand_composition(kw):
    args = dict(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0) | kw
    n = conv_pool_deconv(**args)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    want_a, want_b = _expected_conv_pool_deconv(**args)
    assert ax == 1
    np.testing.assert_allclose(a, want_a)
    np.testing.assert_allclose(b, want_b)


def test_identity_and_shift_by_one():
    n = conv_pool_deconv()
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert (ax, a, b) == (1, 1, 0)
    n = conv_pool_deconv(pool=4, dstride=4)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert (ax, a, b) == (1, 1, -1)


def test_padding_shifts_opposite_ways():
    _, a0, b0 = coord_map_from_to(*(lambda n: (n.deconv, n.data))(conv_pool_deconv()))
    for pad in (1, 4, 7):
        _, a, b = coord_map_from_to(*(lambda n: (n.deconv, n.data))(conv_pool_deconv(pad=pad)))
        assert a == a0 and b == b0 - pad
        _, a, b = coord_map_from_to(*(lambda n: (n.deconv, n.data))(conv_pool_deconv(dpad=pad)))
        assert a == a0 and b == b0 + pad
        _, a, b = coord_map_from_to(*(lambda n: (n.deconv, n.data))(conv_pool_deconv(pad=pad, dpad=pad)))
        assert a == a0 and b == b0


def test_pass_through_layers_are_identity():
    n = conv_pool_deconv()
    base = coord_map_from_to(n.deconv, n.data)
    n.relu = L.ReLU(n.deconv)
    n.bn = L.BatchNorm(n.relu)
    n.conv1x1 = L.Convolution(n.bn, num_output=10, kernel_size=1, stride=1, pad=0)
    for top in (n.relu, n.bn, n.conv1x1):
        assert coord_map_from_to(top, n.data) == base


def test_multiple_bottoms_map_alike():
    n = conv_pool_deconv()
    n.conv_data, n.conv_aux = L.Convolution(n.data, n.aux, ntop=2, num_output=10, kernel_size=5, stride=2, pad=0)
    assert coord_map_from_to(n.conv_data, n.data) == coord_map_from_to(n.conv_aux, n.aux)


def test_anisotropic_is_its_isotropic_parts():
    n3 = conv_pool_deconv(ks=3, stride=1, pad=0)
    n5 = conv_pool_deconv(ks=5, stride=2, pad=10)
    n35 = conv_pool_deconv(ks=[3, 5], stride=[1, 2], pad=[0, 10])
    _, a3, b3 = coord_map_from_to(n3.deconv, n3.data)
    _, a5, b5 = coord_map_from_to(n5.deconv, n5.data)
    _, a35, b35 = coord_map_from_to(n35.deconv, n35.data)
    assert (a35[0], b35[0], a35[1], b35[1]) == (a3[0], b3[0], a5[0], b5[0])


def test_nd_convolution():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 20, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=[3, 3, 3], stride=[1, 1, 1], pad=[0, 1, 2])
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2, pad=0)
    n.deconv = L.Deconvolution(n.pool, num_output=4, kernel_size=4, stride=2, pad=0)
    ax, a, b = coord_map_from_to(n.deconv, n.data)
    assert ax == 1 and len(a) == len(b) == 3 and np.all(a == 1)
    assert b[0] - 1 == b[1] and b[1] - 1 == b[2]


def test_nested_params_and_dilation():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 30, 30]))
    n.conv = L.Convolution(n.data, convolution_param=dict(num_output=2, kernel_size=3, dilation=2, pad=1))
    axis, stride, extent, pad = conv_params(n.conv.fn)
    assert axis == 1 and stride == 1 and extent == 5 and pad == 1  # (3 - 1) * 2 + 1
    assert coord_map(n.conv.fn) == (1, 1, -1)  # pad - (extent - 1) / 2
    n.pool = L.Pooling(n.conv, pooling_param=dict(pool=P.Pooling.AVE, kernel_size=2, stride=2))
    ax, a, b = coord_map(n.pool.fn)
    assert (ax, a, b) == (1, 0.5, -0.25)


def test_crop_of_crop_adds_the_offset():
    n = conv_pool_deconv()
    _, a, b = coord_map_from_to(n.deconv, n.data)
    for offset in (0, 3, 8):
        n.crop = L.Crop(n.deconv, n.data, axis=2, offset=offset)
        ax, a_crop, b_crop = coord_map_from_to(n.crop, n.data)
        assert ax == 1 and a_crop == a and b_crop == b + offset


def test_crop_layer_spec():
    n = conv_pool_deconv(pad=3)  # the padded conv makes the output 3 pixels larger on each side
    top = crop(n.deconv, n.data)
    assert top.fn.type_name == "Crop" and top.fn.inputs == (n.deconv, n.data)
    assert top.fn.params == {"crop_param": {"axis": 2, "offset": [3]}}


def test_crop_cuts_the_matching_window_in_a_real_net(tmp_path):
    """A padded 1x1 convolution of weight 1 shifts the input by its padding; crop() undoes the shift."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 5, 6]))
    n.conv = L.Convolution(n.data, num_output=3, kernel_size=1, pad=[2, 1], group=3, bias_term=False,
                           weight_filler=dict(type="constant", value=1))
    n.relu = L.ReLU(n.conv)
    n.crop = crop(n.relu, n.data)
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    net = caffelite.Net(str(path), caffelite.TEST)
    x = np.random.default_rng(0).uniform(0.5, 1.0, size=(2, 3, 5, 6)).astype(np.float32)
    out = net.forward(data=x)
    assert net.blobs["conv"].data.shape == (2, 3, 9, 8)
    np.testing.assert_allclose(out["crop"], x, rtol=1e-6)


def test_unconnected_tops():
    n = conv_pool_deconv()
    n.ip = L.InnerProduct(n.deconv, num_output=10)
    with pytest.raises(RuntimeError, match="Could not compute map between tops"):
        coord_map_from_to(n.ip, n.data)
    with pytest.raises(UnconnectedTopsError):
        coord_map_from_to(n.ip, n.data)
    with pytest.raises(UndefinedMapException):
        coord_map(n.ip.fn)


def test_crop_refuses_scale_mismatch_and_negative_offsets():
    n = conv_pool_deconv(pool=3, dstride=2)
    with pytest.raises(AssertionError, match="scale mismatch on crop"):
        crop(n.deconv, n.data)
    n = conv_pool_deconv(dpad=10)
    with pytest.raises(CropError, match="cannot crop negative offset"):
        crop(n.deconv, n.data)
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=2, pad=1)  # half-pixel shift
    with pytest.raises(AssertionError, match="noninteger"):
        crop(n.conv, n.data)


def test_legacy_h_w_params_are_refused():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=3)
    with pytest.raises(AssertionError, match="legacy _h/_w"):
        coord_map(n.conv.fn)


def test_compose_and_inverse_algebra():
    m1 = (1, np.array([0.5, 2.0]), np.array([1.0, -3.0]))
    m2 = (None, np.array([4.0, 0.25]), np.array([2.0, 8.0]))
    ax, a, b = compose(m1, m2)
    assert ax == 1
    x = np.array([3.0, 7.0])
    # applying the composition is applying m2, then m1
    np.testing.assert_allclose(a * x + b, m1[1] * (m2[1] * x + m2[2]) + m1[2])
    ax, ai, bi = inverse((ax, a, b))
    np.testing.assert_allclose(ai * (a * x + b) + bi, x)
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))
