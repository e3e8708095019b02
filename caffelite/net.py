"""Net: the graph of layers and blobs, built from a NetParameter as Caffe builds it.

Caffe: src/caffe/net.cpp, src/caffe/util/insert_splits.cpp; pycaffe: python/caffe/pycaffe.py.

The passes ``filter_net`` and ``insert_splits`` are pure NetParameter -> NetParameter functions;
``Net`` wires the result, sets every layer up, decides which layers need backward, shares named
parameters, and exposes pycaffe's surface (``blobs``, ``params``, ``forward``, ``backward``, ...).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from caffelite.blob import Blob, physical_memory
from caffelite.errors import (
    BackwardError,
    BlobMemoryError,
    CaffeliteError,
    FileFormatError,
    LayerError,
    NetError,
    ShapeError,
)
from caffelite.layer import TEST, TRAIN, Layer
from caffelite.layer_factory import create_layer
from caffelite.net_passes import filter_net, insert_splits, state_meets_rule
from caffelite.proto import caffe_pb2
from caffelite.protoio import (
    blob_to_proto,
    copy_weights,
    read_net_param,
    read_net_param_binary,
    write_binary_proto,
)

__all__ = ["Net", "filter_net", "insert_splits", "state_meets_rule", "TRAIN", "TEST"]


# --- the net -------------------------------------------------------------------------------------
def _context(err: CaffeliteError, layer_param, source):
    return err.add_context(file=source, layer=layer_param.name, layer_type=layer_param.type)


class Net:
    """A Caffe net (pycaffe's ``caffe.Net``).

    Forms, as pycaffe: ``Net(proto, phase)``, ``Net(proto, weights, phase)``,
    ``Net(proto, phase, weights=..., level=0, stages=None)``.  ``proto`` is a prototxt path or a
    ``NetParameter``.
    """

    def __init__(self, network_file, *args, phase: int | None = None, weights: str | None = None,
                 level: int = 0, stages: Sequence[str] | None = None):
        args = list(args)
        if args and isinstance(args[0], (str, os.PathLike)):
            weights = os.fspath(args.pop(0))
        if args:
            phase = args.pop(0)
        if args:
            raise TypeError("Net(network_file, [weights,] phase, level=0, stages=None, weights=None): "
                            "too many positional arguments")
        if phase is None:
            raise TypeError("Net() needs a phase (caffelite.TRAIN or caffelite.TEST)")
        if phase not in (TRAIN, TEST):
            raise ValueError("phase must be caffelite.TRAIN (0) or caffelite.TEST (1), not %r" % (phase,))
        self._source = (os.fspath(network_file) if isinstance(network_file, (str, os.PathLike))
                        else None)
        param = read_net_param(network_file)
        param.state.phase = phase
        if stages is not None:
            del param.state.stage[:]
            param.state.stage.extend(stages)
        if level:
            param.state.level = int(level)
        self._init(param)
        if weights:
            self.copy_from(weights)

    # --- construction -----------------------------------------------------------------------
    def _init(self, in_param) -> None:
        source = self._source
        self.phase = in_param.state.phase
        param = insert_splits(filter_net(in_param, source), source)
        self.param = param
        self.name = param.name
        self.force_backward = param.force_backward
        self._blob_list: list[Blob] = []
        self._blob_names: list[str] = []
        self._blob_index: dict[str, int] = {}
        self._blob_need_backward: list[bool] = []
        self.layers: list[Layer] = []
        self._layer_names: list[str] = []
        self._bottom_ids: list[list[int]] = []
        self._top_ids: list[list[int]] = []
        self._bottom_need_backward: list[list[bool]] = []
        self._layer_need_backward: list[bool] = []
        self._input_ids: list[int] = []
        self._blob_loss_weights: dict[int, float] = {}
        self._param_owner: dict[str, tuple[int, int]] = {}
        self._param_lr: list[tuple[bool, float, bool, float]] = []  # per learnable param
        self._learnable: list[Blob] = []
        self._param_learnable_id: dict[tuple[int, int], int] = {}
        self._blobs_dict: OrderedDict | None = None
        self._params_dict: OrderedDict | None = None
        available: dict[str, None] = {}  # insertion-ordered set
        memory = 0
        mem_limit = physical_memory()

        for layer_id, lp in enumerate(param.layer):
            if not lp.HasField("phase"):
                lp.phase = self.phase
            if len(lp.propagate_down) and len(lp.propagate_down) != len(lp.bottom):
                raise NetError("propagate_down param must be specified either 0 or bottom_size times "
                               "(%d given, %d bottoms)" % (len(lp.propagate_down), len(lp.bottom)),
                               file=source, layer=lp.name, layer_type=lp.type, field="propagate_down")
            try:
                layer = create_layer(lp)
            except CaffeliteError as e:  # keep a cause the raiser chained (e.g. a Python layer's)
                raise _context(e, lp, source) from e.__cause__
            self.layers.append(layer)
            self._layer_names.append(lp.name)
            need_backward = False
            bottoms, bneed = [], []
            for bottom_id, name in enumerate(lp.bottom):
                if name not in available:
                    raise NetError("Unknown bottom blob '%s' (layer '%s', bottom index %d)"
                                   % (name, lp.name, bottom_id), file=source, layer=lp.name,
                                   layer_type=lp.type, field="bottom")
                blob_id = self._blob_index[name]
                del available[name]
                bottoms.append(blob_id)
                pd = lp.propagate_down[bottom_id] if len(lp.propagate_down) else True
                bneed.append(self._blob_need_backward[blob_id] and pd)
                need_backward |= self._blob_need_backward[blob_id]
            tops = []
            for top_id, name in enumerate(lp.top):
                if top_id < len(lp.bottom) and lp.bottom[top_id] == name:
                    tops.append(self._blob_index[name])  # in-place
                elif name in self._blob_index:
                    raise NetError("Top blob '%s' produced by multiple sources." % name, file=source,
                                   layer=lp.name, layer_type=lp.type, field="top")
                else:
                    tops.append(self._new_blob(name))
                available[name] = None
                if lp.type == "Input":
                    self._input_ids.append(tops[-1])
            if layer.auto_top_blobs():
                needed = max(layer.min_top_blobs(), layer.exact_num_top_blobs())
                for _ in range(len(tops), needed):
                    tops.append(self._new_blob("(automatic)", index=False))
            self._bottom_ids.append(bottoms)
            self._top_ids.append(tops)
            self._bottom_need_backward.append(bneed)
            bottom_blobs = [self._blob_list[i] for i in bottoms]
            top_blobs = [self._blob_list[i] for i in tops]
            try:
                layer.run_setup(bottom_blobs, top_blobs)
            except CaffeliteError as e:
                raise _context(e, lp, source) from e.__cause__
            except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, AttributeError) as e:
                if not type(layer).__module__.startswith("caffelite."):
                    raise  # a user's Python layer: its own exception type, as in pycaffe
                raise LayerError("setup failed: %s: %s" % (type(e).__name__, e), file=source, layer=lp.name,
                                 layer_type=lp.type) from e
            for top_id, blob_id in enumerate(tops):
                self._blob_loss_weights[blob_id] = layer.loss(top_id)
                memory += self._blob_list[blob_id].count * 4
            if memory > mem_limit:
                raise BlobMemoryError("the net's blobs need %.1f GiB after this layer, more than this "
                                      "machine's %.1f GiB" % (memory / 2**30, mem_limit / 2**30),
                                      file=source, layer=lp.name, layer_type=lp.type)
            n_params = len(layer.blobs)
            lp = layer.layer_param  # setup may add param specs (BatchNorm masks its statistics)
            if len(lp.param) > n_params:
                raise NetError("Too many params specified for layer %s (%d param specs, %d parameter blobs)"
                               % (lp.name, len(lp.param), n_params), file=source, layer=lp.name,
                               layer_type=lp.type, field="param")
            for param_id in range(n_params):
                spec = lp.param[param_id] if param_id < len(lp.param) else caffe_pb2.ParamSpec()
                lr_positive = spec.lr_mult > 0
                need_backward |= lr_positive
                layer.set_param_propagate_down(param_id, lr_positive)
            for param_id in range(n_params):
                self._append_param(layer_id, param_id)
            self._layer_need_backward.append(need_backward)
            if need_backward:
                for blob_id in tops:
                    self._blob_need_backward[blob_id] = True

        self._prune_backward()
        if param.force_backward:
            for layer_id, layer in enumerate(self.layers):
                self._layer_need_backward[layer_id] = True
                for bottom_id, blob_id in enumerate(self._bottom_ids[layer_id]):
                    # deliberate improvement on Caffe: inputs without a gradient are skipped
                    need = self._bottom_need_backward[layer_id][bottom_id] or layer.allow_force_backward(bottom_id)
                    if not layer.allow_force_backward(bottom_id):  # an explicit request is refused below
                        need = self._explicit_pd(layer_id, bottom_id)
                    self._bottom_need_backward[layer_id][bottom_id] = need
                    self._blob_need_backward[blob_id] |= need
                for param_id in range(len(layer.blobs)):
                    layer.set_param_propagate_down(param_id, True)
        self._check_explicit_propagate_down()
        self._output_ids = [self._blob_index[n] for n in sorted(available)]

    def _explicit_pd(self, layer_id: int, bottom_id: int) -> bool:
        lp = self.layers[layer_id].layer_param
        return len(lp.propagate_down) > bottom_id and lp.propagate_down[bottom_id]

    def _check_explicit_propagate_down(self) -> None:
        for layer in self.layers:
            lp = layer.layer_param
            for bottom_id in range(len(lp.propagate_down)):
                if lp.propagate_down[bottom_id] and not layer.allow_force_backward(bottom_id):
                    raise BackwardError(
                        "%s Layer cannot backpropagate to bottom %d ('%s'): it has no gradient; "
                        "set propagate_down: false for it" % (lp.type, bottom_id, lp.bottom[bottom_id]),
                        file=self._source, layer=lp.name, layer_type=lp.type, field="propagate_down")

    def _new_blob(self, name: str, index: bool = True) -> int:
        blob_id = len(self._blob_list)
        self._blob_list.append(Blob())
        self._blob_names.append(name)
        self._blob_need_backward.append(False)
        if index:
            self._blob_index[name] = blob_id
        return blob_id

    def _prune_backward(self) -> None:
        """Walk backwards: layers that feed no loss, or whose bottoms all skip, need no backward."""
        under_loss: set[str] = set()
        skip: set[str] = set()
        for layer_id in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[layer_id]
            contributes, skip_pd = False, True
            for top_id, blob_id in enumerate(self._top_ids[layer_id]):
                name = self._blob_names[blob_id]
                if layer.loss(top_id) or name in under_loss:
                    contributes = True
                if name not in skip:
                    skip_pd = False
                if contributes and not skip_pd:
                    break
            if self._layer_need_backward[layer_id] and skip_pd:
                self._layer_need_backward[layer_id] = False
                self._bottom_need_backward[layer_id] = [False] * len(self._bottom_ids[layer_id])
            if not contributes:
                self._layer_need_backward[layer_id] = False
            for bottom_id, blob_id in enumerate(self._bottom_ids[layer_id]):
                name = self._blob_names[blob_id]
                if contributes:
                    under_loss.add(name)
                else:
                    self._bottom_need_backward[layer_id][bottom_id] = False
                if not self._bottom_need_backward[layer_id][bottom_id]:
                    skip.add(name)

    def _append_param(self, layer_id: int, param_id: int) -> None:
        """Caffe's Net::AppendParam: own a parameter, or share a named one seen before."""
        layer = self.layers[layer_id]
        lp = layer.layer_param
        spec = lp.param[param_id] if param_id < len(lp.param) else caffe_pb2.ParamSpec()
        name = spec.name
        if not name or name not in self._param_owner:
            if name:
                self._param_owner[name] = (layer_id, param_id)
            self._param_learnable_id[(layer_id, param_id)] = len(self._learnable)
            self._learnable.append(layer.blobs[param_id])
            self._param_lr.append([spec.HasField("lr_mult"), spec.lr_mult,
                                   spec.HasField("decay_mult"), spec.decay_mult])
            return
        owner_layer, owner_param = self._param_owner[name]
        owner = self.layers[owner_layer].blobs[owner_param]
        mine = layer.blobs[param_id]
        where = dict(file=self._source, layer=lp.name, layer_type=lp.type, field="param")
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if mine.count != owner.count:
                raise NetError("Shared parameter blobs must have the same count. ('%s': %s here, %s in "
                               "layer '%s')" % (name, mine.shape_string(), owner.shape_string(),
                                                self._layer_names[owner_layer]), **where)
        elif tuple(mine.shape) != tuple(owner.shape):
            raise NetError("Cannot share param '%s' owned by layer '%s' with layer '%s': shape mismatch. "
                           "Owner layer param shape is %s; sharing layer shape is %s"
                           % (name, self._layer_names[owner_layer], lp.name, owner.shape_string(),
                              mine.shape_string()), **where)
        learnable_id = self._param_learnable_id[(owner_layer, owner_param)]
        self._param_learnable_id[(layer_id, param_id)] = learnable_id
        rec = self._param_lr[learnable_id]
        if spec.HasField("lr_mult"):
            if rec[0] and rec[1] != spec.lr_mult:
                raise NetError("Shared param '%s' has mismatched lr_mult." % name, **where)
            rec[0], rec[1] = True, spec.lr_mult
        if spec.HasField("decay_mult"):
            if rec[2] and rec[3] != spec.decay_mult:
                raise NetError("Shared param '%s' has mismatched decay_mult." % name, **where)
            rec[2], rec[3] = True, spec.decay_mult
        # share data and diff: the very same Blob when shapes agree, else views of the owner's
        if tuple(mine.shape) == tuple(owner.shape):
            layer.blobs[param_id] = owner
        else:
            mine.share_data(owner)
            mine.share_diff(owner)

    # --- pycaffe surface ------------------------------------------------------------------
    @property
    def blobs(self) -> OrderedDict:
        """Blob name -> Blob, in order of creation (automatic splits included)."""
        if self._blobs_dict is None:
            self._blobs_dict = OrderedDict((n, self._blob_list[i]) for i, n in enumerate(self._blob_names)
                                           if n in self._blob_index and self._blob_index[n] == i)
        return self._blobs_dict

    @property
    def params(self) -> OrderedDict:
        """Layer name -> list of parameter Blobs, for layers that have any."""
        if self._params_dict is None:
            self._params_dict = OrderedDict((n, list(layer.blobs))
                                            for n, layer in zip(self._layer_names, self.layers) if layer.blobs)
        return self._params_dict

    @property
    def layer_dict(self) -> OrderedDict:
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def inputs(self) -> list[str]:
        return [self._blob_names[i] for i in self._input_ids]

    @property
    def outputs(self) -> list[str]:
        return [self._blob_names[i] for i in self._output_ids]

    @property
    def top_names(self) -> OrderedDict:
        return OrderedDict((n, [self._blob_names[i] for i in ids])
                           for n, ids in zip(self._layer_names, self._top_ids))

    @property
    def bottom_names(self) -> OrderedDict:
        return OrderedDict((n, [self._blob_names[i] for i in ids])
                           for n, ids in zip(self._layer_names, self._bottom_ids))

    @property
    def blob_loss_weights(self) -> OrderedDict:
        return OrderedDict((n, self._blob_loss_weights.get(i, 0.0)) for n, i in self._blob_index.items())

    _blob_loss_weights_by_name = blob_loss_weights

    @property
    def learnable_params(self) -> list[Blob]:
        return list(self._learnable)

    @property
    def params_lr(self) -> list[float]:
        return [rec[1] if rec[0] else 1.0 for rec in self._param_lr]

    @property
    def params_weight_decay(self) -> list[float]:
        return [rec[3] if rec[2] else 1.0 for rec in self._param_lr]

    @property
    def layer_need_backward(self) -> list[bool]:
        return list(self._layer_need_backward)

    @property
    def blob_need_backward(self) -> OrderedDict:
        return OrderedDict((n, self._blob_need_backward[i]) for n, i in self._blob_index.items())

    def _layer_index(self, name: str | None, default: int) -> int:
        if name is None:
            return default
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise NetError("Unknown layer name '%s' (layers: %s)" % (name, ", ".join(self._layer_names)),
                           file=self._source) from None

    def _layer_blobs(self, layer_id: int):
        return ([self._blob_list[i] for i in self._bottom_ids[layer_id]],
                [self._blob_list[i] for i in self._top_ids[layer_id]])

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's ``Net.set_input_arrays``: serve ``data``/``labels`` from the first layer, a MemoryData.

        ``data``: C-contiguous float32 N x C x H x W; ``labels``: float32 N (or N x 1 x 1 x 1);
        N a multiple of the layer's batch_size.  Caffe: python/caffe/_caffe.cpp.
        """
        layer = self.layers[0] if self.layers else None
        if not hasattr(layer, "set_input_arrays"):
            raise LayerError("set_input_arrays may only be called if the first layer is a MemoryDataLayer")
        layer.set_input_arrays(data, labels)

    def forward_from_to(self, start: int = 0, end: int | None = None) -> float:
        """Caffe's Net::ForwardFromTo (inclusive); returns the total weighted loss."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        for i in range(start, end + 1):
            bottom, top = self._layer_blobs(i)
            try:
                loss += self.layers[i].run_forward(bottom, top)
            except CaffeliteError as e:
                raise _context(e, self.layers[i].layer_param, self._source) from None
        return loss

    def backward_from_to(self, start: int | None = None, end: int = 0) -> None:
        """Caffe's Net::BackwardFromTo (start >= end, inclusive)."""
        start = len(self.layers) - 1 if start is None else start
        for i in range(start, end - 1, -1):
            if self._layer_need_backward[i]:
                bottom, top = self._layer_blobs(i)
                try:
                    self.layers[i].run_backward(top, self._bottom_need_backward[i], bottom)
                except CaffeliteError as e:
                    raise _context(e, self.layers[i].layer_param, self._source) from None

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.forward``: set inputs from kwargs, run, return the outputs' data."""
        blobs = list(blobs or [])
        start_ind = self._layer_index(start, 0)
        end_ind = self._layer_index(end, len(self.layers) - 1)
        outputs = set([end] + blobs) if end is not None else set(self.outputs + blobs)
        if end is not None:  # pycaffe returns the end layer's name as a blob: use its tops
            outputs.discard(end)
            outputs.update(self.top_names[end])
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise NetError("Input blob arguments do not match net inputs (%s given, net inputs %s)."
                               % (sorted(kwargs), self.inputs), file=self._source)
            for name, value in kwargs.items():
                value = np.asarray(value)
                blob = self.blobs[name]
                if value.ndim == 0 or value.shape[0] != blob.shape[0]:
                    raise ShapeError("Input is not batch sized: '%s' has shape %s, blob is %s"
                                     % (name, value.shape, blob.shape), file=self._source)
                blob.data[...] = value
        self.forward_from_to(start_ind, end_ind)
        return {name: self.blobs[name].data for name in outputs}

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.backward``: set output diffs from kwargs, run, return the inputs' diffs."""
        diffs = list(diffs or [])
        start_ind = self._layer_index(start, len(self.layers) - 1)
        end_ind = self._layer_index(end, 0)
        if end is not None:
            outputs = set(diffs) | set(self.bottom_names[end])
        else:
            outputs = set(self.inputs + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise NetError("Top diff arguments do not match net outputs (%s given, net outputs %s)."
                               % (sorted(kwargs), self.outputs), file=self._source)
            for name, value in kwargs.items():
                value = np.asarray(value)
                blob = self.blobs[name]
                if value.ndim == 0 or value.shape[0] != blob.shape[0]:
                    raise ShapeError("Diff is not batch sized: '%s' has shape %s, blob is %s"
                                     % (name, value.shape, blob.shape), file=self._source)
                blob.diff[...] = value
        self.backward_from_to(start_ind, end_ind)
        return {name: self.blobs[name].diff for name in outputs}

    def _forward(self, start: int, end: int) -> float:
        return self.forward_from_to(start, end)

    def _backward(self, start: int, end: int) -> None:
        self.backward_from_to(start, end)

    def forward_all(self, blobs: Sequence[str] | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.forward_all``: forward inputs of any length in batches, stacking outputs."""
        from caffelite.pycaffe.net_extras import forward_all
        return forward_all(self, blobs, **kwargs)

    def forward_backward_all(self, blobs: Sequence[str] | None = None, diffs: Sequence[str] | None = None,
                             **kwargs) -> tuple[dict, dict]:
        """pycaffe's ``Net.forward_backward_all``: batched forward and backward, stacking both."""
        from caffelite.pycaffe.net_extras import forward_backward_all
        return forward_backward_all(self, blobs, diffs, **kwargs)

    def _batch(self, blobs: dict):
        from caffelite.pycaffe.net_extras import _batch
        return _batch(self, blobs)

    def forward_backward(self) -> float:
        """Caffe's Net::ForwardBackward: one forward and backward pass, returning the loss."""
        loss = self.forward_from_to()
        self.backward_from_to()
        return loss

    def reshape(self) -> None:
        """Caffe's Net::Reshape: propagate input shape changes through every layer."""
        for i, layer in enumerate(self.layers):
            bottom, top = self._layer_blobs(i)
            try:
                layer.reshape(bottom, top)
            except CaffeliteError as e:
                raise _context(e, layer.layer_param, self._source) from None

    def clear_param_diffs(self) -> None:
        for blob in self._learnable:
            if blob.has_diff:
                blob.diff[...] = 0

    def copy_from(self, weights) -> None:
        """Load parameters by layer name from a .caffemodel (or .h5) file or a NetParameter."""
        if isinstance(weights, caffe_pb2.NetParameter):
            copy_weights(self._layer_names, self.layers, weights)
            return
        path = os.fspath(weights)
        if path.endswith(".h5"):
            from caffelite.hdf5 import load_net_hdf5
            load_net_hdf5(self, path)
            return
        source = read_net_param_binary(path)
        if not len(source.layer) and not len(source.layers):
            raise FileFormatError("weights file %s holds no layers: empty, truncated, or not a .caffemodel" % path,
                                  file=path)
        copy_weights(self._layer_names, self.layers, source, path)

    def share_with(self, other: Net) -> None:
        """Caffe's ShareTrainedLayersWith: alias the parameter data of same-named layers."""
        index = {n: i for i, n in enumerate(self._layer_names)}
        for name, src in zip(other._layer_names, other.layers):
            i = index.get(name)
            if i is None:
                continue
            target = self.layers[i].blobs
            if len(target) != len(src.blobs):
                raise NetError("Incompatible number of blobs for layer %s" % name, layer=name)
            for j, blob in enumerate(src.blobs):
                if tuple(target[j].shape) != tuple(blob.shape):
                    raise NetError("Cannot share param %d of layer '%s': shape %s vs %s"
                                   % (j, name, target[j].shape_string(), blob.shape_string()), layer=name)
                target[j].share_data(blob)

    def to_proto(self, write_diff: bool = False):
        """Caffe's Net::ToProto: the net's layers with their parameters."""
        out = caffe_pb2.NetParameter()
        out.name = self.name
        for layer in self.layers:
            lp = out.layer.add()
            lp.CopyFrom(layer.layer_param)
            del lp.blobs[:]
            for blob in layer.blobs:
                blob_to_proto(blob, lp.blobs.add(), write_diff)
        return out

    def save(self, filename: str) -> None:
        """Write the weights as a binary .caffemodel (pycaffe's ``Net.save``)."""
        if os.fspath(filename).endswith(".h5"):
            self.save_hdf5(filename)
            return
        write_binary_proto(os.fspath(filename), self.to_proto())

    def save_hdf5(self, filename: str) -> None:
        from caffelite.hdf5 import save_net_hdf5
        save_net_hdf5(self, filename)

    def load_hdf5(self, filename: str) -> None:
        from caffelite.hdf5 import load_net_hdf5
        load_net_hdf5(self, filename)

    def __repr__(self) -> str:
        return "<Net '%s': %d layers, %d blobs>" % (self.name, len(self.layers), len(self._blob_index))
