r"""Converters for RNN, LSTM and LSTMUnit, unrolled over the T time steps with Caffe's ``cont``.

ONNX's RNN/LSTM operators cannot reset the state inside a sequence, so the steps are composed from
MatMul, Sigmoid, Tanh and Mul, as Caffe's own unrolled net does: ``cont[t, n]`` multiplies stream
n's state entering step t, and LSTM's gates come in Caffe's order (i, f, o, g).  Without
``expose_hidden`` the exported graph starts from a zero state (caffelite's first forward pass).
"""

from __future__ import annotations

import numpy as np

from caffelite.onnx.registry import converter


def _lstm_step(ctx, c_prev, gates, cont_col, hidden: int, t: int):
    """One LSTMUnit step on N × 4H gate inputs; returns (c, h)."""
    i, f, o, g = ctx.op("Split", gates, ctx.ints([hidden] * 4, "gates%d" % t), axis=1, n_out=4, tag="gates%d" % t)
    i = ctx.op("Sigmoid", i, tag="i%d" % t)
    f = ctx.op("Mul", ctx.op("Sigmoid", f, tag="f%d" % t), cont_col, tag="fcont%d" % t)
    o = ctx.op("Sigmoid", o, tag="o%d" % t)
    g = ctx.op("Tanh", g, tag="g%d" % t)
    c = ctx.op("Add", ctx.op("Mul", f, c_prev, tag="fc%d" % t), ctx.op("Mul", i, g, tag="ig%d" % t), tag="c%d" % t)
    h = ctx.op("Mul", o, ctx.op("Tanh", c, tag="tanhc%d" % t), tag="h%d" % t)
    return c, h


def _recurrent(ctx, lstm: bool):
    ctx.no_dynamic("the time steps are unrolled, so T and N are fixed")
    p = ctx.lp.recurrent_param
    hidden = p.num_output
    x_shape = ctx.bottom_shapes[0]
    T, N = x_shape[0], x_shape[1]
    n_states = 2 if lstm else 1
    static = len(ctx.bottoms) > 2 + n_states * p.expose_hidden
    w = ctx.params
    D = int(np.prod(x_shape[2:], dtype=np.int64))
    x = ctx.reshape(ctx.bottoms[0], x_shape, [T, N, D], tag="x")
    xw = ctx.op("Add", ctx.op("MatMul", x, ctx.const(w[0].T, "Wx"), tag="xW"), ctx.const(w[1].reshape(-1), "b"),
                tag="xWb")
    if static:
        xs_shape = ctx.bottom_shapes[2]
        xs = ctx.reshape(ctx.bottoms[2], xs_shape, [N, int(np.prod(xs_shape[1:], dtype=np.int64))], tag="xs")
        xw = ctx.op("Add", xw, ctx.op("MatMul", xs, ctx.const(w[2].T, "Wxs"), tag="xsW"), tag="xWs")
    r = 2 + static
    steps = ctx.op("Split", xw, ctx.ints([1] * T, "steps"), axis=0, n_out=T, tag="step") if T > 1 else [xw]
    cont = ctx.op("Reshape", ctx.bottoms[1], ctx.ints([T, N, 1], "contshape"), tag="cont")
    conts = ctx.op("Split", cont, ctx.ints([1] * T, "conts"), axis=0, n_out=T, tag="cont") if T > 1 else [cont]
    if p.expose_hidden:
        first = 2 + static
        state = [ctx.reshape(ctx.bottoms[first + j], None, [N, hidden], tag="state%d" % j) for j in range(n_states)]
    else:
        zeros = ctx.const(np.zeros((N, hidden)), "zero_state")
        state = [zeros] * n_states
    w_h = ctx.const(w[r].T, "Wh")
    hs = []
    for t in range(T):
        step = ctx.reshape(steps[t], None, [N, -1], tag="x%d" % t)
        cont_col = ctx.reshape(conts[t], None, [N, 1], tag="cont%d" % t)
        h_conted = ctx.op("Mul", state[0], cont_col, tag="hcont%d" % t)
        pre = ctx.op("Add", step, ctx.op("MatMul", h_conted, w_h, tag="hW%d" % t), tag="pre%d" % t)
        if lstm:
            c, h = _lstm_step(ctx, state[1], pre, cont_col, hidden, t)
            state = [h, c]
        else:
            h = ctx.op("Tanh", pre, tag="h%d" % t)
            state = [h]
        hs.append(ctx.op("Unsqueeze", h, ctx.ints([0], "axis0"), tag="seq%d" % t))
    seq = ctx.op("Concat", *hs, axis=0, tag="seq") if T > 1 else hs[0]
    if not lstm:  # o_t = tanh(W_ho h_t + b_o)
        seq = ctx.op("Tanh", ctx.op("Add", ctx.op("MatMul", seq, ctx.const(w[r + 1].T, "Who"), tag="hWo"),
                                    ctx.const(w[r + 2].reshape(-1), "bo"), tag="o"), tag="out")
    tops = [seq]
    if p.expose_hidden:
        tops += [ctx.reshape(s, None, [1, N, hidden], tag="final%d" % j) for j, s in enumerate(state)]
    return tops


@converter("RNN")
def rnn(ctx):
    r""":math:`h_t = \tanh(W_{hh}(\text{cont}_t h_{t-1}) + W_{xh} x_t + b_h [+ W_{xh,s} x_s])`,
    :math:`o_t = \tanh(W_{ho} h_t + b_o)`."""
    return _recurrent(ctx, lstm=False)


@converter("LSTM")
def lstm(ctx):
    r"""Gates :math:`W_{hc}(\text{cont}_t h_{t-1}) + W_{xc} x_t + b_c`, then :math:`c_t = \text{cont}_t
    \sigma(f) c_{t-1} + \sigma(i) \tanh(g)`, :math:`h_t = \sigma(o) \tanh(c_t)`; the top is h (T × N × H)."""
    return _recurrent(ctx, lstm=True)


@converter("LSTMUnit")
def lstm_unit(ctx):
    r"""One LSTM step: bottoms :math:`c_{t-1}` (1 × N × H), gate inputs (1 × N × 4H), cont (1 × N);
    tops :math:`c_t`, :math:`h_t`."""
    shape = ctx.bottom_shapes[0]
    N, hidden = shape[1], shape[2]
    c_prev = ctx.reshape(ctx.bottoms[0], shape, [N, hidden], tag="cprev")
    gates = ctx.reshape(ctx.bottoms[1], None, [N, 4 * hidden], tag="gates")
    cont = ctx.reshape(ctx.bottoms[2], None, [N, 1], tag="cont")
    c, h = _lstm_step(ctx, c_prev, gates, cont, hidden, 0)
    return [ctx.reshape(c, None, shape, tag="c"), ctx.reshape(h, None, shape, tag="h")]
