r"""Recurrent layers: RNN, LSTM and the single-step LSTMUnit.

Caffe: src/caffe/layers/{recurrent,rnn,lstm,lstm_unit}_layer.cpp.

Caffe builds RNN and LSTM by unrolling an internal Net over the T time steps; here the same maths
runs as a NumPy loop over time steps, with the same parameter blobs (order, shapes, fillers), the
same gate order (i, f, o, g) and the same ``cont`` semantics: ``cont[t, n]`` multiplies stream
n's state entering step t, so 0 starts a new sequence.  Shapes: ``x`` is T × N × ..., ``cont`` is
T × N, the optional static input ``x_static`` is N × ...; H is ``recurrent_param.num_output``.

Without ``expose_hidden`` the state carries over between forward passes, as in Caffe (the last
step's h (and c) become the next pass's h_0 (c_0)); a ``cont`` of 0 at t = 0 makes each pass
independent.  With ``expose_hidden`` the initial state comes from extra bottoms (h_0 [, c_0])
and the final state goes to extra tops (h_T [, c_T]).  Deliberate difference: Caffe shares only
the data of those blobs, so it never propagates a gradient into h_0/c_0 nor from h_T/c_T; here
they carry their true gradients.  ``debug_info`` (about the unrolled net) has no effect.
"""

from __future__ import annotations

import numpy as np

from caffelite.blob import Blob
from caffelite.errors import BackwardError, LayerError, ShapeError
from caffelite.filler import fill
from caffelite.layer import Layer, register_layer


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5  # = 1 / (1 + e^-x), without overflow warnings


def lstm_step(c_prev: np.ndarray, gates: np.ndarray, cont: np.ndarray):
    """One LSTM step (Caffe's LSTMUnit): returns (c, h, acts) with acts = (i, f, o, g).

    ``gates`` is N × 4H (i, f, o, g pre-activations), ``cont`` has N entries; f is scaled by cont.
    """
    hid = c_prev.shape[-1]
    i = _sigmoid(gates[:, :hid])
    f = _sigmoid(gates[:, hid:2 * hid]) * cont[:, None]
    o = _sigmoid(gates[:, 2 * hid:3 * hid])
    g = np.tanh(gates[:, 3 * hid:])
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return c, h, (i, f, o, g)


def lstm_step_backward(c_prev, c, acts, dc, dh):
    """Gradients (d c_prev, d gates) of one step, from dE/dc and dE/dh (Caffe's CPU formulas:
    the forget-gate derivative uses the cont-scaled f, exact for cont in {0, 1})."""
    i, f, o, g = acts
    tanh_c = np.tanh(c)
    dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
    dgates = np.concatenate([dc_total * g * i * (1 - i), dc_total * c_prev * f * (1 - f),
                             dh * tanh_c * o * (1 - o), dc_total * i * (1 - g * g)], axis=1)
    return dc_total * f, dgates


class RecurrentLayer(Layer):
    """Shared plumbing of RNN and LSTM (Caffe's RecurrentLayer): inputs, checks, state, fillers.

    Subclasses set ``num_states`` (1: h; 2: h and c) and implement ``param_shapes``, ``run`` and
    ``run_backward_steps``.
    """

    num_states = 1
    weight_param = "recurrent_param"

    def _expose(self) -> bool:
        return self.layer_param.recurrent_param.expose_hidden

    def min_bottom_blobs(self):
        return 2 + self.num_states * self._expose()

    def max_bottom_blobs(self):
        return self.min_bottom_blobs() + 1

    def exact_num_top_blobs(self):
        return 1 + self.num_states * self._expose()

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1  # no gradient for the sequence continuation indicators

    def _check_inputs(self, bottom) -> None:
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2:
            raise ShapeError("bottom[0] must have at least 2 axes -- (#timesteps, #streams, ...) (got %s)"
                             % x.shape_string())
        if cont.num_axes != 2:
            raise ShapeError("bottom[1] must have exactly 2 axes -- (#timesteps, #streams) (got %s)"
                             % cont.shape_string())
        if cont.shape != x.shape[:2]:
            raise ShapeError("cont must be T x N = %s to match x %s, got %s"
                             % (list(x.shape[:2]), x.shape_string(), cont.shape_string()))

    def setup(self, bottom, top):
        self._check_inputs(bottom)
        p = self.layer_param.recurrent_param
        self.T = bottom[0].shape[0]
        self.H = p.num_output
        if self.H <= 0:
            raise LayerError("num_output must be positive (got %d)" % self.H, field="recurrent_param.num_output")
        self.static_input = len(bottom) > 2 + self.num_states * self._expose()
        if self.static_input and (bottom[2].num_axes < 1 or bottom[2].shape[0] != bottom[0].shape[1]):
            raise ShapeError("x_static must be N x ... with N = %d streams, got %s"
                             % (bottom[0].shape[1], bottom[2].shape_string()))
        self._state: list[np.ndarray] | None = None
        if self.blobs:
            return  # given inline or already loaded
        D = bottom[0].count_range(2)
        Ds = bottom[2].count_range(1) if self.static_input else 0
        for shape, is_bias in self.param_shapes(D, Ds):
            self.blobs.append(fill(Blob(shape), p.bias_filler if is_bias else p.weight_filler))
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        self._check_inputs(bottom)
        if bottom[0].shape[0] != self.T:
            raise ShapeError("input number of timesteps changed (from %d to %d)" % (self.T, bottom[0].shape[0]))
        self.N = bottom[0].shape[1]
        inputs = [("x", bottom[0], 2, 0)] + ([("x_static", bottom[2], 1, 2)] if self.static_input else [])
        for name, blob, axis, param in inputs:  # what the unrolled net's InnerProduct layers would check
            size = self.blobs[param].shape[1]
            if blob.count_range(axis) != size or blob.shape[:axis][-1:] != (self.N,):
                raise ShapeError("Input size incompatible with inner product parameters: %s needs N = %d and %d "
                                 "values per stream from axis %d, got %s"
                                 % (name, self.N, size, axis, blob.shape_string()))
        state_shape = (1, self.N, self.H)
        if self._expose():
            first = 2 + self.static_input
            for j, b in enumerate(bottom[first:]):
                if b.shape != state_shape:
                    raise ShapeError("bottom[%d] shape must match hidden state input shape: %s (got %s)"
                                     % (first + j, " ".join(map(str, state_shape)), b.shape_string()))
            for t in top[1:]:
                t.reshape(state_shape)
        top[0].reshape((self.T, self.N, self.H))

    def reset(self) -> None:
        """Forget the carried-over state (Caffe's RecurrentLayer::Reset)."""
        self._state = None

    def _initial_state(self, bottom) -> list[np.ndarray]:
        dtype = bottom[0].data.dtype
        if self._expose():
            first = 2 + self.static_input
            return [b.data.reshape(self.N, self.H).astype(dtype, copy=True) for b in bottom[first:]]
        if self._state is None or self._state[0].shape != (self.N, self.H):
            return [np.zeros((self.N, self.H), dtype) for _ in range(self.num_states)]
        return [s.astype(dtype) for s in self._state]

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.T, self.N, -1)
        w = [b.data for b in self.blobs]
        xw = x @ w[0].T + w[1]  # every time step's input transform at once: T × N × (gates)
        if self.static_input:
            xw += bottom[2].data.reshape(self.N, -1) @ w[2].T
        cont = bottom[1].data
        final = self.run(xw, cont, self._initial_state(bottom), top[0].data)
        if self._expose():
            for t, s in zip(top[1:], final):
                t.data[...] = s.reshape(t.shape)
        else:
            self._state = [s.copy() for s in final]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise BackwardError("%s Layer cannot backpropagate to sequence indicators (cont)." % self.layer_type())
        zeros = np.zeros((self.N, self.H), bottom[0].data.dtype)
        final_diff = [t.diff.reshape(self.N, self.H) for t in top[1:]] if self._expose() \
            else [zeros] * self.num_states
        dxw, d_initial = self.run_backward_steps(top[0].diff, bottom[1].data, final_diff)
        x = bottom[0].data.reshape(self.T * self.N, -1)
        dxw2 = dxw.reshape(self.T * self.N, -1)
        if self.param_propagate_down_at(0):
            self.blobs[0].diff += dxw2.T @ x
        if self.param_propagate_down_at(1):
            self.blobs[1].diff += dxw2.sum(axis=0)
        if propagate_down[0]:
            np.matmul(dxw2, self.blobs[0].data, out=bottom[0].diff.reshape(self.T * self.N, -1))
        if self.static_input:
            d_static = dxw.sum(axis=0)
            xs = bottom[2].data.reshape(self.N, -1)
            if self.param_propagate_down_at(2):
                self.blobs[2].diff += d_static.T @ xs
            if propagate_down[2]:
                np.matmul(d_static, self.blobs[2].data, out=bottom[2].diff.reshape(self.N, -1))
        if self._expose():
            first = 2 + self.static_input
            for j, d in enumerate(d_initial):
                if propagate_down[first + j]:
                    bottom[first + j].diff[...] = d.reshape(bottom[first + j].shape)

    @property
    def _recurrent_index(self) -> int:
        """Index of the first recurrent weight blob (after W_x, b and the optional W_x_static)."""
        return 2 + self.static_input


@register_layer
class RNNLayer(RecurrentLayer):
    r"""Elman recurrent net with a tanh output layer.

    .. math:: h_t = \tanh\left(W_{hh} (\text{cont}_t\, h_{t-1}) + W_{xh} x_t + b_h
              \;[+ W_{xh,s}\, x_s]\right), \qquad o_t = \tanh(W_{ho} h_t + b_o)

    The top is :math:`o` (T × N × H).  Parameters, in Caffe's order: :math:`W_{xh}` (H × D),
    :math:`b_h` (H), [:math:`W_{xh,s}` (H × D_s) with a static input], :math:`W_{hh}` (H × H),
    :math:`W_{ho}` (H × H), :math:`b_o` (H); weights from ``weight_filler``, biases from
    ``bias_filler``.  Backward is backpropagation through time over the T steps.

    Caffe: src/caffe/layers/rnn_layer.cpp (on recurrent_layer.cpp).
    """

    type = "RNN"
    num_states = 1

    def param_shapes(self, D, Ds):
        H = self.H
        shapes = [((H, D), False), ((H,), True)]
        if self.static_input:
            shapes.append(((H, Ds), False))
        return shapes + [((H, H), False), ((H, H), False), ((H,), True)]

    def run(self, xw, cont, initial, out):
        r = self._recurrent_index
        w_hh, w_ho, b_o = (b.data for b in self.blobs[r:r + 3])
        h = initial[0]
        self._h_conted = np.empty((self.T, self.N, self.H), xw.dtype)
        self._h = np.empty_like(self._h_conted)
        for t in range(self.T):
            self._h_conted[t] = cont[t][:, None] * h
            h = np.tanh(xw[t] + self._h_conted[t] @ w_hh.T)
            self._h[t] = h
        np.tanh(self._h @ w_ho.T + b_o, out=out)
        self._o = out.copy()
        return [h]

    def run_backward_steps(self, do, cont, final_diff):
        r = self._recurrent_index
        w_hh, w_ho = self.blobs[r].data, self.blobs[r + 1].data
        do_pre = do * (1 - self._o * self._o)
        if self.param_propagate_down_at(r + 1):
            self.blobs[r + 1].diff += do_pre.reshape(-1, self.H).T @ self._h.reshape(-1, self.H)
        if self.param_propagate_down_at(r + 2):
            self.blobs[r + 2].diff += do_pre.sum(axis=(0, 1))
        dh_out = do_pre @ w_ho
        dxw = np.empty_like(dh_out)
        dh_next = final_diff[0]
        dw_hh = np.zeros_like(w_hh)
        for t in reversed(range(self.T)):
            dpre = (dh_out[t] + dh_next) * (1 - self._h[t] * self._h[t])
            dw_hh += dpre.T @ self._h_conted[t]
            dh_next = cont[t][:, None] * (dpre @ w_hh)
            dxw[t] = dpre
        if self.param_propagate_down_at(r):
            self.blobs[r].diff += dw_hh
        return dxw, [dh_next]


@register_layer
class LSTMLayer(RecurrentLayer):
    r"""Long short-term memory over T time steps (Caffe's LSTM, gate order i, f, o, g).

    .. math:: [i'_t, f'_t, o'_t, g'_t] = W_{hc} (\text{cont}_t\, h_{t-1}) + W_{xc} x_t + b_c
              \;[+ W_{xc,s}\, x_s]

    .. math:: i_t = \sigma(i'_t),\; f_t = \text{cont}_t\,\sigma(f'_t),\; o_t = \sigma(o'_t),\;
              g_t = \tanh(g'_t), \quad c_t = f_t \odot c_{t-1} + i_t \odot g_t, \quad
              h_t = o_t \odot \tanh(c_t)

    The top is :math:`h` (T × N × H).  Parameters, in Caffe's order: :math:`W_{xc}` (4H × D),
    :math:`b_c` (4H), [:math:`W_{xc,s}` (4H × D_s) with a static input], :math:`W_{hc}` (4H × H).
    Backward is backpropagation through time, each step as LSTMUnit's.

    Caffe: src/caffe/layers/lstm_layer.cpp (on recurrent_layer.cpp, lstm_unit_layer.cpp).
    """

    type = "LSTM"
    num_states = 2

    def param_shapes(self, D, Ds):
        G = 4 * self.H
        shapes = [((G, D), False), ((G,), True)]
        if self.static_input:
            shapes.append(((G, Ds), False))
        return shapes + [((G, self.H), False)]

    def run(self, xw, cont, initial, out):
        w_hc = self.blobs[self._recurrent_index].data
        h, c = initial
        self._h_conted = np.empty((self.T, self.N, self.H), xw.dtype)
        self._c_prev, self._c, self._acts = [], [], []
        for t in range(self.T):
            self._h_conted[t] = cont[t][:, None] * h
            self._c_prev.append(c)
            c, h, acts = lstm_step(c, xw[t] + self._h_conted[t] @ w_hc.T, cont[t])
            self._c.append(c)
            self._acts.append(acts)
            out[t] = h
        return [h, c]

    def run_backward_steps(self, dh_top, cont, final_diff):
        r = self._recurrent_index
        w_hc = self.blobs[r].data
        dh_next, dc_next = final_diff
        dxw = np.empty((self.T, self.N, 4 * self.H), dh_top.dtype)
        dw_hc = np.zeros_like(w_hc)
        for t in reversed(range(self.T)):
            dc_next, dgates = lstm_step_backward(self._c_prev[t], self._c[t], self._acts[t], dc_next,
                                                 dh_top[t] + dh_next)
            dw_hc += dgates.T @ self._h_conted[t]
            dh_next = cont[t][:, None] * (dgates @ w_hc)
            dxw[t] = dgates
        if self.param_propagate_down_at(r):
            self.blobs[r].diff += dw_hc
        return dxw, [dh_next, dc_next]


@register_layer
class LSTMUnitLayer(Layer):
    r"""One LSTM step: bottoms :math:`c_{t-1}` (1 × N × H), gate inputs :math:`X` (1 × N × 4H,
    order i, f, o, g) and cont (1 × N); tops :math:`c_t` and :math:`h_t` (1 × N × H).

    .. math:: i = \sigma(X_i),\; f = \text{cont}\,\sigma(X_f),\; o = \sigma(X_o),\; g = \tanh(X_g),
              \quad c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \tanh(c_t)

    .. math:: \bar c = \frac{\partial E}{\partial c_t} + \frac{\partial E}{\partial h_t} \odot o
              \odot (1 - \tanh^2 c_t), \quad \frac{\partial E}{\partial c_{t-1}} = \bar c \odot f,
              \quad \frac{\partial E}{\partial X_f} = \bar c \odot c_{t-1} \odot f (1 - f), \ldots

    (Caffe's CPU formulas: the forget-gate derivative uses the cont-scaled f, exact for binary
    cont.)  No gradient reaches cont.

    Caffe: src/caffe/layers/lstm_unit_layer.cpp.
    """

    type = "LSTMUnit"
    exact_bottoms = 3
    exact_tops = 2

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def reshape(self, bottom, top):
        n = bottom[0].shape[1] if bottom[0].num_axes > 1 else -1
        for i, b in enumerate(bottom):
            axes = 2 if i == 2 else 3
            if b.num_axes != axes or b.shape[0] != 1 or b.shape[1] != n:
                raise ShapeError("LSTMUnit bottom[%d] must be 1 x N%s with N = %d, got %s"
                                 % (i, "" if i == 2 else " x dim", n, b.shape_string()))
        self.H = bottom[0].shape[2]
        if bottom[1].shape[2] != 4 * self.H:
            raise ShapeError("LSTMUnit gate input must be 1 x N x 4H with H = %d, got %s"
                             % (self.H, bottom[1].shape_string()))
        top[0].reshape(bottom[0].shape)
        top[1].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        n = bottom[0].shape[1]
        c_prev = bottom[0].data.reshape(n, self.H)
        c, h, self._acts = lstm_step(c_prev, bottom[1].data.reshape(n, 4 * self.H), bottom[2].data.reshape(n))
        top[0].data[...] = c.reshape(top[0].shape)
        top[1].data[...] = h.reshape(top[1].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise BackwardError("LSTMUnit Layer cannot backpropagate to sequence indicators.")
        if not (propagate_down[0] or propagate_down[1]):
            return
        n = bottom[0].shape[1]
        dc_prev, dgates = lstm_step_backward(bottom[0].data.reshape(n, self.H), top[0].data.reshape(n, self.H),
                                             self._acts, top[0].diff.reshape(n, self.H),
                                             top[1].diff.reshape(n, self.H))
        if propagate_down[0]:
            bottom[0].diff[...] = dc_prev.reshape(bottom[0].shape)
        if propagate_down[1]:
            bottom[1].diff[...] = dgates.reshape(bottom[1].shape)
