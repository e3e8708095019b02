"""A caffelite NumPy layer inside torch autograd: Python layers, and the configurations no torch op covers.

The tensors go to the CPU and back (a device round trip per call): the layer's own ``forward`` and
``backward`` run on NumPy arrays, exactly as in caffelite's Net.  The layer keeps what its forward
stored for its backward, so each forward must be followed by its backward before the next forward
of the same layer (the usual forward-backward loop); an older graph's backward is refused.
"""

from __future__ import annotations

import numpy as np
import torch

from caffelite.torch._caffelite import BackwardError, Blob


class NumpyLayerRunner:
    """Runs one set-up caffelite layer on torch tensors; ``params`` are its blobs' torch tensors."""

    def __init__(self, layer, n_bottom: int, n_top: int):
        self.layer = layer
        self.bottom = [Blob() for _ in range(n_bottom)]
        self.top = [Blob() for _ in range(n_top)]
        self.calls = 0

    def __call__(self, xs, params):
        if not self.top:  # a sink (HDF5Output, a Python layer without tops): nothing to differentiate
            with torch.no_grad():
                self.forward(xs, params)
            return []
        return list(_NumpyLayerFunction.apply(self, len(xs), *xs, *params))

    def forward(self, xs, params):
        for blob, x in zip(self.bottom, xs):
            a = x.detach().cpu().numpy()
            blob.reshape(a.shape)
            blob.data[...] = a
        for blob, p in zip(self.layer.blobs, params):
            blob.data[...] = p.detach().cpu().numpy().reshape(blob.shape)
        self.layer.reshape(self.bottom, self.top)
        self.layer.forward(self.bottom, self.top)
        self.calls += 1
        like = xs[0] if xs else (params[0] if params else torch.zeros(()))
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return [torch.from_numpy(np.array(t.data, dtype=np.float32)).to(device=like.device, dtype=dtype)
                for t in self.top]

    def backward(self, grads, need_bottom, need_param, call: int):
        if call != self.calls:
            raise BackwardError("layer '%s' ran forward again before this backward: its NumPy state belongs to "
                                "the newer pass (run backward after each forward)" % self.layer.layer_param.name)
        for blob, g in zip(self.top, grads):
            blob.diff[...] = 0 if g is None else g.detach().cpu().numpy().reshape(blob.shape)
        for blob in self.layer.blobs:
            blob.diff[...] = 0
        for blob in self.bottom:
            blob.diff[...] = 0
        if any(need_bottom) or any(need_param):
            self.layer.backward(self.top, list(need_bottom), self.bottom)
        dx = [torch.from_numpy(np.array(b.diff, dtype=np.float32)) if need else None
              for b, need in zip(self.bottom, need_bottom)]
        dp = [torch.from_numpy(np.array(b.diff, dtype=np.float32)) if need else None
              for b, need in zip(self.layer.blobs, need_param)]
        return dx, dp


class _NumpyLayerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, runner, n_bottom, *tensors):
        xs, params = tensors[:n_bottom], tensors[n_bottom:]
        ctx.runner, ctx.n_bottom = runner, n_bottom
        ctx.devices = [t.device for t in tensors]
        ctx.shapes = [t.shape for t in tensors]
        ctx.dtypes = [t.dtype for t in tensors]
        tops = runner.forward(xs, params)
        ctx.call = runner.calls
        return tuple(tops)

    @staticmethod
    def backward(ctx, *grads):
        n = ctx.n_bottom
        need = ctx.needs_input_grad[2:]
        dx, dp = ctx.runner.backward(grads, need[:n], need[n:], ctx.call)
        out = [None if g is None else g.to(device=dev, dtype=dtype).reshape(shape)
               for g, dev, dtype, shape in zip(dx + dp, ctx.devices, ctx.dtypes, ctx.shapes)]
        return (None, None, *out)
