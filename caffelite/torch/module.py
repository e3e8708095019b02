"""CaffeNet: a Caffe net as a ``torch.nn.Module``, with Caffe's numbers.

The net is built by caffelite's own ``Net`` from the same NetParameter (NetState include/exclude
rules, automatic Split layers, in-place layers, named parameter sharing, loss weights, which
bottoms get a gradient); each layer then runs as torch operations (``caffelite.torch.ops``).

- Parameters are registered as ``"<layer>/<i>"`` (Caffe's ``net.params[layer][i]``), in Caffe's
  learnable-parameter order; a shared parameter is registered once, under its owner's name.  torch
  forbids ``.`` in a parameter name, so a layer name's ``%`` and ``.`` are written ``%25`` and
  ``%2E`` (:func:`param_name`).  ``param_specs`` gives each one's ``lr_mult`` and ``decay_mult``.
  A parameter gets a gradient (``requires_grad``) when Caffe computes its diff: ``lr_mult`` > 0 or
  ``force_backward`` (BatchNorm's statistics never: they are updated in place by the forward).
- ``forward(**inputs)`` returns the net's output blobs (Caffe's, by blob index), then the blobs named
  in ``blobs=[...]``, then the loss tops that are no output: the anonymous top Caffe gives a loss
  layer without ``top`` (V0/V1 nets), named ``(automatic)`` as in ``net.blobs`` (with several, the
  last one; the others ``(automatic)#<blob index>``), so ``total_loss`` sees every loss.  Inputs are
  the tops of Input layers and, optionally, of data layers: a data layer whose tops are not given
  (Data, ImageData, HDF5Data, MemoryData, WindowData, DummyData) runs caffelite's NumPy layer and
  reads the same records as caffelite's Net would.
- A bottom with ``propagate_down: false``, and a bottom Caffe never sends a gradient to (labels),
  is detached; ``total_loss(outputs)`` = :math:`\\sum` loss_weight · top, so
  ``total_loss(out).backward()`` leaves Caffe's diffs in the parameters' ``.grad``.
- Blobs are Caffe's: Reshape, Flatten, a one-bottom Concat and a one-top Slice make their top a view
  of the bottom's data and diff (ShareData/ShareDiff), so an in-place layer on either name changes
  what both show, and each name's gradient (``trace.source``) is the one below every in-place layer
  on the shared buffer, as Caffe's ``net.blobs[name].diff`` after backward.
- The phase is fixed when the module is built, as Caffe's: ``.train()`` / ``.eval()`` change nothing.
- Python layers, HDF5Output, and the configurations no torch op covers (convolutions with more than
  three spatial axes, N-d Im2col) run caffelite's NumPy layer inside ``torch.autograd.Function``
  (caffelite/torch/ops/numpy_layer.py): a round trip through the CPU on every call.
- Random layers (Dropout, STOCHASTIC pooling in TRAIN) draw from torch's generator: Caffe's law, not
  caffelite's draws.
"""

from __future__ import annotations

import os
from collections import OrderedDict, namedtuple

import numpy as np
import torch
from torch import nn

from caffelite.torch._caffelite import (
    TEST,
    CaffeliteError,
    LayerError,
    Net,
    NetError,
    ShapeError,
    blob_keys,
    caffe_pb2,
    layer_names,
    net_wiring,
)
from caffelite.torch.ops import OPS, Fallback, load_all
from caffelite.torch.ops.numpy_layer import NumpyLayerRunner

__all__ = ["CaffeNet", "ParamSpec", "param_name", "DATA_LAYER_TYPES"]

ParamSpec = namedtuple("ParamSpec", ["lr_mult", "decay_mult"])
ParamSpec.__doc__ = "A parameter's learning-rate and weight-decay multipliers (Caffe's ParamSpec, resolved)."

# Layers without bottoms that read records: run by caffelite when their tops are not given as inputs.
DATA_LAYER_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData"})
# Layer types that always run caffelite's NumPy layer (they act on files or Python code, not on maths).
NUMPY_LAYER_TYPES = frozenset({"Python", "HDF5Output"})


def param_name(layer_name: str, index: int) -> str:
    """The torch name of parameter ``index`` of ``layer_name``: ``"<layer>/<i>"``, with ``%`` and ``.``
    in the layer name written ``%25`` and ``%2E`` (torch forbids ``.``)."""
    return "%s/%d" % (layer_name.replace("%", "%25").replace(".", "%2E"), index)


class Trace:
    """One forward pass's blobs: ``data[name]`` is a blob's final tensor (after any in-place layers),
    ``source[name]`` the tensor its producer wrote first, whose gradient is Caffe's ``blob.diff``
    (for the tops that view their bottom, the tensor the first producer of the shared buffer wrote,
    in the top's shape)."""

    def __init__(self):
        self.data: OrderedDict = OrderedDict()
        self.source: dict = {}


class _Step:
    __slots__ = ("index", "name", "type", "bottoms", "tops", "detach", "params", "fn", "kind", "layer",
                 "no_grad")


def shares_bottom(lp) -> bool:
    """Whether Caffe's layer makes its top a view of its bottom's data and diff (ShareData and ShareDiff
    in reshape_layer.cpp, flatten_layer.cpp, concat_layer.cpp with one bottom, slice_layer.cpp with one
    top); in place it is one blob anyway."""
    if len(lp.bottom) != 1 or len(lp.top) != 1 or lp.top[0] == lp.bottom[0]:
        return False
    return lp.type in ("Reshape", "Flatten", "Concat", "Slice")


class CaffeNet(nn.Module):
    """A Caffe net as a torch module (see the module docstring).

    ``net_or_prototxt``: a prototxt path, a ``NetParameter``, or a built ``caffelite.Net`` (then
    ``phase``, ``stages`` and ``level`` are the net's own).  ``weights``: a .caffemodel (or .h5).
    """

    def __init__(self, net_or_prototxt, weights=None, phase: int = TEST, stages=(), level: int = 0):
        super().__init__()
        load_all()
        if isinstance(net_or_prototxt, Net):
            net = net_or_prototxt
            if weights:
                net.copy_from(weights)
        else:
            if isinstance(net_or_prototxt, os.PathLike):
                net_or_prototxt = os.fspath(net_or_prototxt)
            net = Net(net_or_prototxt, phase, weights=weights, level=level, stages=list(stages))
        self.net = net  # not a Module: a plain attribute
        self.phase = net.phase
        self.force_backward = bool(net.force_backward)
        self.register_buffer("_probe", torch.zeros((), dtype=torch.float32), persistent=False)
        wiring, learnable_id = net_wiring(net)
        names = layer_names(net)
        self._bottom_vecs, self._top_vecs = net.bottom_vecs, net.top_vecs
        loss_weights: OrderedDict = OrderedDict()  # by blob key: the last writer's weight, as Caffe's
        self._owner_blob: list = []  # per learnable parameter: the caffelite Blob that holds it
        self._param_names: list[str] = []
        specs = OrderedDict()
        lrs, decays = net.params_lr, net.params_weight_decay
        grads: dict[int, bool] = {}
        self._steps: list[_Step] = []
        self._input_names: list[str] = []
        self._view_root: dict[str, str] = {}  # a view top -> the blob that owns the shared buffer
        self._views: dict[str, list[_Step]] = {}  # that blob -> the view steps on its buffer, in order
        for lid, layer in enumerate(net.layers):
            lp = layer.layer_param
            entries = []
            for pid, blob in enumerate(layer.blobs):
                k = learnable_id[(lid, pid)]
                if k == len(self._param_names):
                    self._param_names.append(param_name(names[lid], pid))
                    self._owner_blob.append(blob)
                    specs[self._param_names[k]] = ParamSpec(lrs[k], decays[k])
                grads[k] = grads.get(k, False) or layer.param_propagate_down_at(pid)
                entries.append((self._param_names[k], tuple(blob.shape)))
            bottoms, tops, need = wiring[lid]
            st = _Step()
            st.index, st.name, st.type, st.layer = lid, names[lid], lp.type, layer
            st.bottoms, st.tops, st.params = bottoms, tops, entries
            explicit = list(lp.propagate_down)
            st.detach = [(j < len(explicit) and not explicit[j]) or not layer.allow_force_backward(j)
                         for j in range(len(bottoms))]
            st.no_grad = not getattr(layer, "has_backward", True)
            for j, name in enumerate(tops):
                loss_weights[name] = float(layer.loss(j))
            if not bottoms and lp.type == "Input":
                st.kind, st.fn = "input", None
                self._input_names.extend(tops)
            elif not bottoms and lp.type in DATA_LAYER_TYPES:
                st.kind, st.fn = "data", None
                self._input_names.extend(tops)
            else:
                st.kind, st.fn = "op", self._build_op(lid, layer, len(bottoms), len(tops))
                if shares_bottom(lp) and not st.detach[0]:
                    st.kind = "view"
                    root = self._view_root.get(bottoms[0], bottoms[0])
                    self._view_root[tops[0]] = root
                    self._views.setdefault(root, []).append(st)
            self._steps.append(st)
        for k, name in enumerate(self._param_names):
            data = torch.from_numpy(np.array(self._owner_blob[k].data, dtype=np.float32))
            self.register_parameter(name, nn.Parameter(data, requires_grad=grads[k]))
        self.param_specs: OrderedDict = specs
        self.loss_weights = OrderedDict((n, w) for n, w in loss_weights.items() if w)
        keys = blob_keys(net)
        self.outputs = [keys[i] for i in net.output_blob_indices]  # Caffe's own, free of pycaffe's naming
        self.inputs = list(self._input_names)

    def _build_op(self, lid: int, layer, n_bottom: int, n_top: int):
        bottom, top = self._bottom_vecs[lid], self._top_vecs[lid]
        builder = OPS.get(layer.layer_param.type)
        if builder is not None and layer.layer_param.type not in NUMPY_LAYER_TYPES:
            try:
                return builder(layer, bottom, top)
            except Fallback:
                pass
        return NumpyLayerRunner(layer, n_bottom, n_top)

    # --- running -------------------------------------------------------------------------------
    def _param(self, name: str, shape):
        p = self._parameters[name]
        return p if tuple(p.shape) == shape else p.view(shape)  # PERMISSIVE sharing: same count, own shape

    def _as_tensor(self, name: str, value):
        probe = self._probe
        if isinstance(value, torch.Tensor):  # to the module's device and dtype (differentiably)
            if value.device != probe.device or value.dtype != probe.dtype:
                return value.to(device=probe.device, dtype=probe.dtype)
            return value
        a = np.asarray(value)
        if a.ndim == 0:
            raise ShapeError("Input '%s' is a scalar; blobs have a batch axis" % name)
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=probe.device).to(probe.dtype)

    def trace(self, **inputs) -> Trace:
        """Run the net on ``inputs`` (blob name -> array or tensor); every blob's tensors (see Trace)."""
        unknown = sorted(set(inputs) - set(self._input_names))
        if unknown:
            raise NetError("Unknown input blob(s) %s: the net's inputs are %s (tops of Input and data layers)"
                           % (unknown, self._input_names), file=self.net._source)
        trace = Trace()
        blobs, source = trace.data, trace.source
        shapes: dict[str, dict] = {}  # a shared buffer's owner -> the shape of each name on that buffer
        for name, value in inputs.items():
            self._first_write(trace, shapes, name, self._as_tensor(name, value))
        for st in self._steps:
            if st.kind == "view":  # its top was made with its bottom's buffer (_open_views)
                continue
            if st.kind != "op":
                given = [n in inputs for n in st.tops]
                if all(given):
                    continue
                if st.kind == "input" or any(given):
                    missing = [n for n, g in zip(st.tops, given) if not g]
                    raise NetError("Missing input blob(s) %s for layer '%s' (%s): pass them to forward()"
                                   % (missing, st.name, st.type), file=self.net._source, layer=st.name)
                for name, t in zip(st.tops, self._run_data_layer(st)):
                    self._first_write(trace, shapes, name, t)
                continue
            xs = [blobs[n].detach() if d else blobs[n] for n, d in zip(st.bottoms, st.detach)]
            params = [self._param(n, shape) for n, shape in st.params]
            for name, t in zip(st.tops, self._run(st, xs, params)):
                # a view per top: the top's own node, so its gradient is what its consumers send (Caffe's
                # top diff), apart from the bottom it may be (Split, identity) or a sibling computed from it
                t = t.view_as(t) if t.requires_grad else t
                if name not in source:
                    self._first_write(trace, shapes, name, t)
                elif self._view_root.get(name, name) in shapes:  # in place on a shared buffer: every name sees it
                    for other, shape in shapes[self._view_root.get(name, name)].items():
                        blobs[other] = t if other == name else t.reshape(shape)
                else:
                    blobs[name] = t
        return trace

    def _run(self, st: _Step, xs, params):
        """One layer's torch op, its errors naming the layer."""
        try:
            if st.no_grad:
                with torch.no_grad():
                    return st.fn(xs, params)
            return st.fn(xs, params)
        except CaffeliteError as e:
            raise e.add_context(file=self.net._source, layer=st.name, layer_type=st.type) from None
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, IndexError) as e:  # torch's shape checks: name the layer and inputs
            raise LayerError("%s: %s (bottoms %s)" % (type(e).__name__, str(e).split("\n")[0],
                                                      ", ".join("%s %s" % (n, list(x.shape))
                                                                for n, x in zip(st.bottoms, xs))),
                             file=self.net._source, layer=st.name, layer_type=st.type) from e

    def _first_write(self, trace: Trace, shapes: dict, name: str, t) -> None:
        """A blob's producer wrote ``t``; where views share its buffer, make them now (_open_views)."""
        trace.data[name] = trace.source[name] = t
        if name in self._views:
            shapes[name] = self._open_views(trace, name)

    def _open_views(self, trace: Trace, root: str) -> dict:
        """The tops that view ``root``'s buffer (Caffe's ShareData/ShareDiff), made when ``root`` is written.

        Their sources form one chain of reshapes, ``root``'s source first, and every name reads the
        chain's end: all consumers of the buffer, in-place layers included, sit below every source, so
        each name's gradient is the buffer's diff as Caffe leaves it (below every in-place layer), in
        that name's shape.  Returns each name's shape."""
        blobs, source = trace.data, trace.source
        chain = source[root]
        shapes = {root: tuple(chain.shape)}
        for st in self._views[root]:
            (y,) = self._run(st, [chain.reshape(shapes[st.bottoms[0]])], [])
            y = y.view_as(y) if y.requires_grad else y
            source[st.tops[0]], shapes[st.tops[0]], chain = y, tuple(y.shape), y
        for name, shape in shapes.items():
            blobs[name] = chain.reshape(shape)
        return shapes

    def _run_data_layer(self, st: _Step):
        bottom, top = self._bottom_vecs[st.index], self._top_vecs[st.index]
        try:
            st.layer.run_forward(bottom, top)
        except CaffeliteError as e:
            raise e.add_context(file=self.net._source, layer=st.name, layer_type=st.type) from None
        probe = self._probe
        return [torch.from_numpy(np.array(b.data, dtype=np.float32)).to(device=probe.device, dtype=probe.dtype)
                for b in top]

    def forward(self, blobs=None, **inputs) -> OrderedDict:
        """The net's output blobs, those named in ``blobs``, and the loss tops that are no output (the
        anonymous ``(automatic)`` ones) after one forward pass, as tensors."""
        trace = self.trace(**inputs)
        out = OrderedDict()
        for name in list(self.outputs) + list(blobs or []):
            if name not in trace.data:
                raise NetError("Unknown blob '%s'" % name, file=self.net._source)
            out[name] = trace.data[name]
        for name in self.loss_weights:  # so that total_loss(out) is Caffe's loss
            if name not in out and name in trace.data:
                out[name] = trace.data[name]
        return out

    def total_loss(self, outputs) -> torch.Tensor:
        """Caffe's net loss: :math:`\\sum` loss_weight · sum(top) over the tops with a loss weight."""
        total = None
        for name, w in self.loss_weights.items():
            if name not in outputs:
                raise NetError("total_loss needs blob '%s' (loss weight %g): pass forward(blobs=[...]) the outputs "
                               "it lacks" % (name, w), file=self.net._source)
            term = outputs[name].sum() * w
            total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=self._probe.device, dtype=self._probe.dtype)
        return total

    # --- weights -------------------------------------------------------------------------------
    def named_caffe_params(self):
        """(name, parameter, ParamSpec) in Caffe's learnable-parameter order."""
        return [(n, self._parameters[n], self.param_specs[n]) for n in self._param_names]

    def sync_to_net(self) -> Net:
        """Copy the parameters into the caffelite Net's blobs (shared blobs once); returns the Net."""
        with torch.no_grad():
            for name, blob in zip(self._param_names, self._owner_blob):
                blob.data[...] = self._parameters[name].detach().cpu().numpy().reshape(blob.shape)
        return self.net

    def sync_from_net(self) -> None:
        """Copy the caffelite Net's parameter blobs into the torch parameters."""
        with torch.no_grad():
            for name, blob in zip(self._param_names, self._owner_blob):
                p = self._parameters[name]
                p.copy_(torch.from_numpy(np.array(blob.data, dtype=np.float32)).reshape(p.shape))

    def load_caffemodel(self, path) -> None:
        """Load weights by layer name from a .caffemodel (Caffe's binary format; .h5 too); layers the file
        lacks keep their values."""
        self.sync_to_net()
        self.net.copy_from(os.fspath(path) if isinstance(path, os.PathLike) else path)
        self.sync_from_net()

    def save_caffemodel(self, path) -> None:
        """Write the weights as a .caffemodel in Caffe's binary format (readable by Caffe and caffelite)."""
        self.sync_to_net().save(os.fspath(path))

    def extra_repr(self) -> str:
        return "'%s': %d layers, phase %s" % (self.net.name, len(self._steps),
                                              caffe_pb2.Phase.Name(self.phase))
