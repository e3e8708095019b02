"""RNN, LSTM and LSTMUnit: Caffe's parameter blobs, gate order, cont semantics, carried state,
exposed hidden state, and errors; forward against a plain NumPy loop."""

import textwrap

import numpy as np
import pytest

import caffelite
from caffelite.blob import Blob
from caffelite.errors import BackwardError, LayerError, ShapeError
from caffelite.testing import make_layer

RNG = np.random.default_rng(7)
FILLERS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "uniform" min: -0.5 max: 0.5 }'


def setup(spec, *arrays, num_top=1):
    layer = make_layer(spec)
    bottom = [Blob(data=np.asarray(a, dtype=np.float64), dtype=np.float64) for a in arrays]
    top = [Blob(dtype=np.float64) for _ in range(num_top)]
    layer.run_setup(bottom, top)
    for b in layer.blobs:
        b.astype(np.float64)
    return layer, bottom, top


def forward(spec, *arrays, num_top=1):
    layer, bottom, top = setup(spec, *arrays, num_top=num_top)
    layer.run_forward(bottom, top)
    return layer, bottom, top


def sig(x):
    return 1 / (1 + np.exp(-x))


def lstm_ref(x, cont, w_xc, b_c, w_hc, h0=None, c0=None, w_static=None, x_static=None):
    """Caffe's LSTM, one element-free step at a time: gates (i, f, o, g), state scaled by cont."""
    T, N = cont.shape
    H = w_hc.shape[1]
    h = np.zeros((N, H)) if h0 is None else h0
    c = np.zeros((N, H)) if c0 is None else c0
    out = []
    for t in range(T):
        z = x[t].reshape(N, -1) @ w_xc.T + b_c + (cont[t][:, None] * h) @ w_hc.T
        if w_static is not None:
            z = z + x_static.reshape(N, -1) @ w_static.T
        i, f, o, g = sig(z[:, :H]), sig(z[:, H:2 * H]), sig(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
        c = cont[t][:, None] * f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out), h, c


def rnn_ref(x, cont, w_xh, b_h, w_hh, w_ho, b_o, h0=None):
    T, N = cont.shape
    h = np.zeros((N, w_hh.shape[0])) if h0 is None else h0
    out = []
    for t in range(T):
        h = np.tanh(x[t].reshape(N, -1) @ w_xh.T + b_h + (cont[t][:, None] * h) @ w_hh.T)
        out.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(out), h


def cont_with_resets(T, N):
    c = np.ones((T, N))
    c[0] = 0
    c[2, 1] = 0
    return c


# --- parameters -----------------------------------------------------------------------------------
def test_lstm_parameter_blobs_in_caffes_order():
    x, cont = np.zeros((3, 2, 4, 2)), np.zeros((3, 2))
    layer, _, _ = setup('type: "LSTM" recurrent_param { num_output: 5 }', x, cont)
    assert [b.shape for b in layer.blobs] == [(20, 8), (20,), (20, 5)]  # W_xc, b_c, W_hc
    assert not any(b.data.any() for b in layer.blobs)  # unset fillers are constant 0, as in Caffe
    layer, _, _ = setup('type: "LSTM" recurrent_param { num_output: 5 }', x, cont, np.zeros((2, 3)))
    assert [b.shape for b in layer.blobs] == [(20, 8), (20,), (20, 3), (20, 5)]  # ..., W_xc_static, W_hc


def test_rnn_parameter_blobs_in_caffes_order_and_fillers():
    x, cont = np.zeros((3, 2, 4)), np.zeros((3, 2))
    spec = ('type: "RNN" recurrent_param { num_output: 5 weight_filler { type: "constant" value: 0.25 } '
            'bias_filler { type: "constant" value: -1 } }')
    layer, _, _ = setup(spec, x, cont)
    assert [b.shape for b in layer.blobs] == [(5, 4), (5,), (5, 5), (5, 5), (5,)]  # W_xh b_h W_hh W_ho b_o
    assert [float(b.data.ravel()[0]) for b in layer.blobs] == [0.25, -1, 0.25, 0.25, -1]
    layer, _, _ = setup(spec, x, cont, np.zeros((2, 6)))
    assert [b.shape for b in layer.blobs] == [(5, 4), (5,), (5, 6), (5, 5), (5, 5), (5,)]


# --- forward against NumPy -------------------------------------------------------------------------
def test_lstm_forward_matches_reference_with_resets_and_static_input():
    x, cont, xs = RNG.normal(size=(4, 2, 3)), cont_with_resets(4, 2), RNG.normal(size=(2, 2))
    layer, _, top = forward('type: "LSTM" recurrent_param { num_output: 3 %s }' % FILLERS, x, cont, xs)
    w_xc, b_c, w_s, w_hc = (b.data for b in layer.blobs)
    ref, _, _ = lstm_ref(x, cont, w_xc, b_c, w_hc, w_static=w_s, x_static=xs)
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-14)


def test_rnn_forward_matches_reference():
    x, cont = RNG.normal(size=(4, 3, 2)), cont_with_resets(4, 3)
    layer, _, top = forward('type: "RNN" recurrent_param { num_output: 4 %s }' % FILLERS, x, cont)
    ref, _ = rnn_ref(x, cont, *(b.data for b in layer.blobs))
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_cont_zero_starts_a_new_sequence(kind):
    """Where cont is 0 a stream's output equals that of a fresh run started at that step."""
    x, cont = RNG.normal(size=(5, 2, 3)), cont_with_resets(5, 2)
    spec = 'type: "%s" recurrent_param { num_output: 3 %s }' % (kind, FILLERS)
    layer, _, top = forward(spec, x, cont)
    fresh = make_layer(spec)
    bottom = [Blob(data=x[2:], dtype=np.float64), Blob(data=cont[2:], dtype=np.float64)]
    out = [Blob(dtype=np.float64)]
    fresh.blobs = layer.blobs
    fresh.run_setup(bottom, out)
    fresh.run_forward(bottom, out)
    np.testing.assert_allclose(out[0].data[:, 1], top[0].data[2:, 1], rtol=1e-12)
    assert not np.allclose(out[0].data[:, 0], top[0].data[2:, 0])  # stream 0 carried its state on


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_state_carries_over_between_forward_passes_unless_cont_is_zero(kind):
    x, cont = RNG.normal(size=(3, 2, 3)), np.ones((3, 2))
    layer, bottom, top = forward('type: "%s" recurrent_param { num_output: 3 %s }' % (kind, FILLERS), x, cont)
    first = top[0].data.copy()
    layer.run_forward(bottom, top)
    assert not np.allclose(top[0].data, first)  # h_0 is now the previous pass's h_T, as in Caffe
    layer.reset()
    layer.run_forward(bottom, top)
    np.testing.assert_allclose(top[0].data, first)
    bottom[1].data[0] = 0
    layer.run_forward(bottom, top)
    again = top[0].data.copy()
    layer.run_forward(bottom, top)
    np.testing.assert_allclose(top[0].data, again)


def test_lstm_expose_hidden_uses_and_returns_the_state():
    x, cont = RNG.normal(size=(3, 2, 3)), np.ones((3, 2))
    h0, c0 = RNG.normal(size=(1, 2, 4)), RNG.normal(size=(1, 2, 4))
    spec = 'type: "LSTM" recurrent_param { num_output: 4 expose_hidden: true %s }' % FILLERS
    layer, _, top = forward(spec, x, cont, h0, c0, num_top=3)
    ref, h_t, c_t = lstm_ref(x, cont, *(b.data for b in layer.blobs), h0=h0[0], c0=c0[0])
    np.testing.assert_allclose(top[0].data, ref, rtol=1e-12)
    np.testing.assert_allclose(top[1].data[0], h_t, rtol=1e-12)
    np.testing.assert_allclose(top[2].data[0], c_t, rtol=1e-12)


def test_rnn_expose_hidden_blob_counts():
    x, cont = np.zeros((2, 1, 3)), np.zeros((2, 1))
    with pytest.raises(LayerError, match="takes at least 3 bottom"):
        setup('type: "RNN" recurrent_param { num_output: 2 expose_hidden: true }', x, cont, num_top=2)
    with pytest.raises(LayerError, match="produces 2 top"):
        setup('type: "RNN" recurrent_param { num_output: 2 expose_hidden: true }', x, cont, np.zeros((1, 1, 2)))
    with pytest.raises(ShapeError, match="shape must match hidden state input shape: 1 1 2"):
        setup('type: "RNN" recurrent_param { num_output: 2 expose_hidden: true }', x, cont, np.zeros((1, 1, 3)),
              num_top=2)


# --- no gradient to cont, and errors ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_cont_gets_no_gradient(kind):
    layer, bottom, top = forward('type: "%s" recurrent_param { num_output: 2 }' % kind,
                                 np.ones((2, 1, 3)), np.ones((2, 1)))
    assert [layer.allow_force_backward(i) for i in range(2)] == [True, False]
    with pytest.raises(BackwardError, match="cannot backpropagate to sequence indicators"):
        layer.run_backward(top, [True, True], bottom)


def test_recurrent_in_a_force_backward_net_leaves_cont_alone(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent("""
        force_backward: true
        layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 3 dim: 2 dim: 4 } } }
        layer { name: "cont" type: "Input" top: "cont" input_param { shape { dim: 3 dim: 2 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 3 dim: 2 dim: 3 } } }
        layer { name: "rec" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
                recurrent_param { num_output: 3 weight_filler { type: "uniform" min: -1 max: 1 } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "y" top: "loss" }
    """))
    net = caffelite.Net(str(path), caffelite.TRAIN)
    net.blobs["x"].data[...] = RNG.normal(size=(3, 2, 4))
    net.blobs["cont"].data[...] = [[0, 0], [1, 1], [1, 0]]
    net.blobs["y"].data[...] = 1
    net.forward()
    net.backward()
    assert not net.blob_need_backward["cont"] and net.blob_need_backward["x"]
    assert not net.blobs["cont"].diff.any() and net.blobs["x"].diff.any()
    assert all(p.diff.any() for p in net.params["rec"])


def test_recurrent_errors():
    spec = 'type: "LSTM" recurrent_param { num_output: 2 }'
    with pytest.raises(LayerError, match="num_output must be positive"):
        setup('type: "LSTM" recurrent_param { }', np.ones((2, 1, 3)), np.ones((2, 1)))
    with pytest.raises(ShapeError, match="bottom\\[1\\] must have exactly 2 axes -- \\(#timesteps, #streams\\)"):
        setup(spec, np.ones((2, 1, 3)), np.ones((2, 1, 1)))
    with pytest.raises(ShapeError, match="bottom\\[0\\] must have at least 2 axes"):
        setup(spec, np.ones(2), np.ones((2, 1)))
    with pytest.raises(ShapeError, match="cont must be T x N"):
        setup(spec, np.ones((2, 1, 3)), np.ones((3, 1)))
    layer, bottom, top = setup(spec, np.ones((2, 1, 3)), np.ones((2, 1)))
    bottom[0].reshape(3, 1, 3)
    bottom[1].reshape(3, 1)
    with pytest.raises(ShapeError, match="input number of timesteps changed"):
        layer.run_forward(bottom, top)


# --- LSTMUnit ------------------------------------------------------------------------------------------
def test_lstm_unit_forward_backward_against_numpy():
    c_prev, gates, cont = RNG.normal(size=(1, 3, 2)), RNG.normal(size=(1, 3, 8)), np.array([[1.0, 0.0, 1.0]])
    layer, bottom, top = forward('type: "LSTMUnit"', c_prev, gates, cont, num_top=2)
    z = gates[0]
    i, f, o, g = sig(z[:, :2]), sig(z[:, 2:4]) * cont[0][:, None], sig(z[:, 4:6]), np.tanh(z[:, 6:])
    c = f * c_prev[0] + i * g
    np.testing.assert_allclose(top[0].data[0], c, rtol=1e-12)
    np.testing.assert_allclose(top[1].data[0], o * np.tanh(c), rtol=1e-12)
    np.testing.assert_allclose(top[0].data[0, 1], (i * g)[1])  # cont 0: the old cell is forgotten
    top[0].diff[...] = 0
    top[1].diff[...] = 1
    layer.run_backward(top, [True, True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff[0], o * (1 - np.tanh(c) ** 2) * f, rtol=1e-12)
    assert not bottom[0].diff[0, 1].any()
    assert layer.allow_force_backward(2) is False
    with pytest.raises(BackwardError, match="LSTMUnit Layer cannot backpropagate to sequence indicators."):
        layer.run_backward(top, [True, True, True], bottom)


def test_lstm_unit_shape_errors():
    with pytest.raises(ShapeError, match="gate input must be 1 x N x 4H"):
        forward('type: "LSTMUnit"', np.ones((1, 2, 3)), np.ones((1, 2, 8)), np.ones((1, 2)), num_top=2)
    with pytest.raises(ShapeError, match="LSTMUnit bottom\\[2\\] must be 1 x N"):
        forward('type: "LSTMUnit"', np.ones((1, 2, 3)), np.ones((1, 2, 12)), np.ones((1, 3)), num_top=2)


def test_recurrent_input_size_must_fit_the_weights():
    layer, bottom, top = setup('type: "LSTM" recurrent_param { num_output: 2 }', np.ones((2, 1, 3)), np.ones((2, 1)),
                               np.ones((1, 4)))
    bottom[0].reshape(2, 1, 5)
    with pytest.raises(ShapeError, match="Input size incompatible with inner product parameters: x needs"):
        layer.run_forward(bottom, top)
    bottom[0].reshape(2, 1, 3)
    bottom[2].reshape(2, 4)
    with pytest.raises(ShapeError, match="x_static needs N = 1"):
        layer.run_forward(bottom, top)
