r"""Recurrent layers (RNN, LSTM, LSTMUnit) as torch operations: a loop over the T time steps.

Caffe: src/caffe/layers/{recurrent,rnn,lstm,lstm_unit}_layer.cpp.

``x`` is T × N × ..., ``cont`` T × N (``cont[t, n]`` multiplies stream n's state entering step t:
0 starts a new sequence), the optional static input N × ...; gate order i, f, o, g.  Without
``expose_hidden`` the final state carries over to the next forward pass, as in Caffe (detached:
backpropagation stays within one pass); with it the initial state comes from the extra bottoms
and the final state goes to the extra tops, with gradients both ways (as caffelite's layer).
"""

from __future__ import annotations

import torch

from caffelite.torch.ops.registry import register


def _recurrent(layer, bottom, num_states: int, cell):
    """Shared plumbing: input transform for all steps at once, initial state, state carried over."""
    expose = layer.layer_param.recurrent_param.expose_hidden
    static = len(bottom) > 2 + num_states * expose
    r = 2 + static
    carried: list = [None]

    def f(xs, params):
        x, cont = xs[0], xs[1]
        t_steps, n = x.shape[0], x.shape[1]
        xw = x.reshape(t_steps, n, -1) @ params[0].t() + params[1]
        if static:
            xw = xw + (xs[2].reshape(n, -1) @ params[2].t())[None]
        hid = params[r].shape[1] if num_states == 2 else params[r].shape[0]
        if expose:
            state = [s.reshape(n, hid) for s in xs[2 + static:]]
        elif carried[0] is not None and carried[0][0].shape == (n, hid):
            state = [s.to(x.device) for s in carried[0]]
        else:
            state = [x.new_zeros((n, hid)) for _ in range(num_states)]
        out, state = cell(xw, cont.reshape(t_steps, n, 1).to(x.dtype), state, params[r:])
        if expose:
            return [out] + [s.reshape(1, n, hid) for s in state]
        carried[0] = [s.detach() for s in state]
        return [out]
    return f


@register("RNN")
def rnn(layer, bottom, top):
    """:math:`h_t = \\tanh(W_{hh} (\\text{cont}_t h_{t-1}) + W_{xh} x_t + b_h [+ W_{xh,s} x_s])`,
    :math:`o_t = \\tanh(W_{ho} h_t + b_o)`; the top is o."""
    def cell(xw, cont, state, params):
        w_hh, w_ho, b_o = params
        h = state[0]
        hs = []
        for t in range(xw.shape[0]):
            h = torch.tanh(xw[t] + (cont[t] * h) @ w_hh.t())
            hs.append(h)
        return torch.tanh(torch.stack(hs) @ w_ho.t() + b_o), [h]
    return _recurrent(layer, bottom, 1, cell)


def lstm_step(c_prev, gates, cont):
    """One LSTM step: :math:`c = \\text{cont}\\,\\sigma(f') c_{t-1} + \\sigma(i') \\tanh(g')`,
    :math:`h = \\sigma(o') \\tanh(c)`; returns (c, h)."""
    i, f, o, g = torch.chunk(gates, 4, dim=-1)
    c = cont * torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return c, torch.sigmoid(o) * torch.tanh(c)


@register("LSTM")
def lstm(layer, bottom, top):
    """:math:`[i', f', o', g'] = W_{hc} (\\text{cont}_t h_{t-1}) + W_{xc} x_t + b_c [+ W_{xc,s} x_s]`,
    then :func:`lstm_step`; the top is h."""
    def cell(xw, cont, state, params):
        w_hc = params[0]
        h, c = state
        hs = []
        for t in range(xw.shape[0]):
            c, h = lstm_step(c, xw[t] + (cont[t] * h) @ w_hc.t(), cont[t])
            hs.append(h)
        return torch.stack(hs), [h, c]
    return _recurrent(layer, bottom, 2, cell)


@register("LSTMUnit")
def lstm_unit(layer, bottom, top):
    """One step: bottoms c_prev (1 × N × H), gate inputs (1 × N × 4H), cont (1 × N); tops c, h."""
    def f(xs, params):
        c_prev, gates, cont = xs
        c, h = lstm_step(c_prev, gates, cont.reshape(cont.shape + (1,)).to(c_prev.dtype))
        return [c, h]
    return f
