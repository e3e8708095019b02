"""Net: the graph of layers and blobs, built from a NetParameter as Caffe builds it.

Caffe: src/caffe/net.cpp; pycaffe: python/caffe/pycaffe.py.

``Net._init`` follows Caffe's Net::Init step by step: the pure passes ``filter_net`` and
``insert_splits`` (in :mod:`caffelite.net_passes`), then per layer AppendBottom, AppendTop, SetUp,
the loss weights and AppendParam (sharing named parameters), then which layers need backward.
The rest is Caffe's Net: forward/backward loops, accessors, weights in and out.  pycaffe's
Python-side surface (``blobs``, ``params``, ``forward(**inputs)``, ``forward_all``, ...) is the
base class :class:`caffelite.net_pycaffe.PycaffeNet`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

from caffelite.blob import Blob, physical_memory
from caffelite.common import api_name
from caffelite.compute.parallel import single_threaded_blas
from caffelite.errors import (
    BackwardError,
    BlobMemoryError,
    CaffeliteError,
    FileFormatError,
    LayerError,
    NetError,
)
from caffelite.hdf5 import load_weights_hdf5, save_weights_hdf5
from caffelite.layer import TEST, TRAIN, Layer
from caffelite.layer_factory import create_layer
from caffelite.net_passes import (
    duplicate_top_message,
    filter_net,
    insert_splits,
    is_in_place,
    num_top_blobs,
    propagate_down_count_error,
    set_state,
    state_meets_rule,
    unknown_bottom_message,
)
from caffelite.net_pycaffe import PycaffeNet
from caffelite.proto import caffe_pb2
from caffelite.protoio import blob_to_proto, copy_weights, write_binary_proto
from caffelite.suggest import locate_error
from caffelite.upgrade import read_net_param, read_net_param_binary

__all__ = ["Net", "filter_net", "insert_splits", "state_meets_rule", "TRAIN", "TEST"]


# --- the net -------------------------------------------------------------------------------------
def _context(err: CaffeliteError, layer_param, source):
    return err.add_context(file=source, layer=layer_param.name, layer_type=layer_param.type)


class Net(PycaffeNet):
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
            raise TypeError("Net() needs a phase ({0}.TRAIN or {0}.TEST)".format(api_name()))
        if phase not in (TRAIN, TEST):
            raise ValueError("phase must be {0}.TRAIN (0) or {0}.TEST (1), not {1!r}".format(api_name(), phase))
        self._source = (os.fspath(network_file) if isinstance(network_file, (str, os.PathLike))
                        else None)
        param = read_net_param(network_file)
        set_state(param.state, phase, stages, level or None)  # level 0 keeps the file's
        try:
            self._init(param)
        except CaffeliteError as e:
            locate_error(e)  # the layer's line and column in the prototxt, as check gives them
            raise
        if weights:
            self.copy_from(weights)

    # --- construction: Caffe's Net::Init, step by step --------------------------------------
    def _init(self, in_param) -> None:
        """Caffe's Net::Init: FilterNet, InsertSplits, then each layer in order, then need-backward."""
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
        # every parameter blob of every layer, in order (Caffe's params_ indexing):
        self._param_layer_indices: list[tuple[int, int]] = []  # -> (layer, index in its blobs)
        self._param_owners: list[int] = []  # -> -1 when it owns its data, else the owner's index
        self._param_names_index: dict[str, int] = {}  # a named param -> the index of its owner
        self._param_lr: list[list] = []  # per learnable param: [has lr_mult, lr_mult, has decay_mult, decay_mult]
        self._learnable: list[Blob] = []
        self._param_learnable_id: dict[tuple[int, int], int] = {}
        self._blobs_dict: OrderedDict | None = None
        self._params_dict: OrderedDict | None = None
        self._memory_used = 0  # bytes of top data so far (Caffe's memory_used_)
        self._memory_limit = physical_memory()
        available: dict[str, None] = {}  # tops not consumed yet, as an insertion-ordered set
        for layer_id, lp in enumerate(param.layer):
            self._append_layer(layer_id, lp, available)
        self._prune_backward()
        if param.force_backward:
            self._force_backward()
        self._check_explicit_propagate_down()
        for layer, need in zip(self.layers, self._layer_need_backward):
            layer.need_backward = need  # a layer whose backward the net never runs may keep less in forward
        self._output_ids = [self._blob_index[n] for n in sorted(available)]

    def _append_layer(self, layer_id: int, lp, available: dict) -> None:
        """One layer of Net::Init: create it, wire bottoms and tops, set it up, append its params."""
        if not lp.HasField("phase"):
            lp.phase = self.phase
        message = propagate_down_count_error(lp)
        if message:
            raise NetError(message, file=self._source, layer=lp.name, layer_type=lp.type, field="propagate_down")
        try:
            layer = create_layer(lp)
        except CaffeliteError as e:  # keep a cause the raiser chained (e.g. a Python layer's)
            raise _context(e, lp, self._source) from e.__cause__
        self.layers.append(layer)
        self._layer_names.append(lp.name)
        self._bottom_ids.append([])
        self._top_ids.append([])
        self._bottom_need_backward.append([])
        need_backward = False
        for bottom_id in range(len(lp.bottom)):
            need_backward |= self._append_bottom(layer_id, bottom_id, available)
        for top_id in range(num_top_blobs(layer, len(lp.top))):
            self._append_top(layer_id, top_id, available)
        self._setup_layer(layer_id)
        self._append_loss_weights(layer_id)
        need_backward |= self._set_param_propagate_down(layer_id)
        for param_id in range(len(layer.blobs)):
            self._append_param(layer_id, param_id)
        self._layer_need_backward.append(need_backward)
        if need_backward:
            for blob_id in self._top_ids[layer_id]:
                self._blob_need_backward[blob_id] = True

    def _append_bottom(self, layer_id: int, bottom_id: int, available: dict) -> bool:
        """Caffe's Net::AppendBottom: consume an available blob; whether it needs backward."""
        lp = self.param.layer[layer_id]
        name = lp.bottom[bottom_id]
        if name not in available:
            raise NetError(unknown_bottom_message(name, lp.name, bottom_id), file=self._source, layer=lp.name,
                           layer_type=lp.type, field="bottom")
        blob_id = self._blob_index[name]
        del available[name]
        self._bottom_ids[layer_id].append(blob_id)
        propagate_down = lp.propagate_down[bottom_id] if len(lp.propagate_down) else True
        self._bottom_need_backward[layer_id].append(self._blob_need_backward[blob_id] and propagate_down)
        return self._blob_need_backward[blob_id]

    def _append_top(self, layer_id: int, top_id: int, available: dict) -> None:
        """Caffe's Net::AppendTop: a new blob, the bottom's blob when in place, or an anonymous automatic top."""
        lp = self.param.layer[layer_id]
        if top_id >= len(lp.top):  # an auto_top_blobs layer's extra top: never a net output
            self._top_ids[layer_id].append(self._new_blob("(automatic)", index=False))
            return
        name = lp.top[top_id]
        if is_in_place(lp, top_id):
            blob_id = self._blob_index[name]
        elif name in self._blob_index:
            raise NetError(duplicate_top_message(name), file=self._source, layer=lp.name, layer_type=lp.type,
                           field="top")
        else:
            blob_id = self._new_blob(name)
        self._top_ids[layer_id].append(blob_id)
        available[name] = None
        if lp.type == "Input":
            self._input_ids.append(blob_id)

    def _new_blob(self, name: str, index: bool = True) -> int:
        blob_id = len(self._blob_list)
        self._blob_list.append(Blob())
        self._blob_names.append(name)
        self._blob_need_backward.append(False)
        if index:
            self._blob_index[name] = blob_id
        return blob_id

    def _setup_layer(self, layer_id: int) -> None:
        """Layer::SetUp on the wired blobs, with the layer's name and file added to any error."""
        layer = self.layers[layer_id]
        lp = layer.layer_param
        bottom, top = self._layer_blobs(layer_id)
        try:
            layer.run_setup(bottom, top)
        except CaffeliteError as e:
            raise _context(e, lp, self._source) from e.__cause__
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError, AttributeError) as e:
            if not type(layer).__module__.startswith("caffelite."):
                raise  # a user's Python layer: its own exception type, as in pycaffe
            raise LayerError("setup failed: %s: %s" % (type(e).__name__, e), file=self._source, layer=lp.name,
                             layer_type=lp.type) from e

    def _append_loss_weights(self, layer_id: int) -> None:
        """Caffe's blob_loss_weights_ from each top's loss weight; refuse blobs beyond the machine's memory."""
        layer = self.layers[layer_id]
        for top_id, blob_id in enumerate(self._top_ids[layer_id]):
            self._blob_loss_weights[blob_id] = layer.loss(top_id)
            self._memory_used += self._blob_list[blob_id].count * 4
        if self._memory_used > self._memory_limit:
            lp = layer.layer_param
            raise BlobMemoryError("the net's blobs need %.1f GiB after this layer, more than this machine's "
                                  "%.1f GiB" % (self._memory_used / 2**30, self._memory_limit / 2**30),
                                  file=self._source, layer=lp.name, layer_type=lp.type)

    def _set_param_propagate_down(self, layer_id: int) -> bool:
        """Caffe's Net::Init: a parameter with lr_mult > 0 is learned; whether any of the layer's is."""
        layer = self.layers[layer_id]
        lp = layer.layer_param  # setup may add param specs (BatchNorm masks its statistics)
        n_params = len(layer.blobs)
        if len(lp.param) > n_params:
            raise NetError("Too many params specified for layer %s (%d param specs, %d parameter blobs)"
                           % (lp.name, len(lp.param), n_params), file=self._source, layer=lp.name,
                           layer_type=lp.type, field="param")
        need_backward = False
        for param_id in range(n_params):
            spec = lp.param[param_id] if param_id < len(lp.param) else caffe_pb2.ParamSpec()
            lr_positive = spec.lr_mult > 0
            need_backward |= lr_positive
            layer.set_param_propagate_down(param_id, lr_positive)
        return need_backward

    def _force_backward(self) -> None:
        """Caffe's force_backward: every layer runs backward, to every bottom that has a gradient."""
        for layer_id, layer in enumerate(self.layers):
            self._layer_need_backward[layer_id] = True
            for bottom_id, blob_id in enumerate(self._bottom_ids[layer_id]):
                # deliberate improvement on Caffe: inputs without a gradient are skipped
                if layer.allow_force_backward(bottom_id):
                    need = True
                else:  # an explicit request is refused by _check_explicit_propagate_down
                    need = self._explicit_pd(layer_id, bottom_id)
                self._bottom_need_backward[layer_id][bottom_id] = need
                self._blob_need_backward[blob_id] |= need
            for param_id in range(len(layer.blobs)):
                layer.set_param_propagate_down(param_id, True)

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
        net_param_id = len(self._param_layer_indices)
        self._param_layer_indices.append((layer_id, param_id))
        if not name or name not in self._param_names_index:
            if name:
                self._param_names_index[name] = net_param_id
            self._param_owners.append(-1)
            self._param_learnable_id[(layer_id, param_id)] = len(self._learnable)
            self._learnable.append(layer.blobs[param_id])
            self._param_lr.append([spec.HasField("lr_mult"), spec.lr_mult,
                                   spec.HasField("decay_mult"), spec.decay_mult])
            return
        owner_id = self._param_names_index[name]
        self._param_owners.append(owner_id)
        owner_layer, owner_param = self._param_layer_indices[owner_id]
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

    # --- Caffe's accessors --------------------------------------------------------------------------
    @property
    def param_owners(self) -> list[int]:
        """Caffe's Net::param_owners: per parameter blob (layer order), -1 if it owns its data, else the
        index of the parameter it shares (see ``param_layer_indices``)."""
        return list(self._param_owners)

    @property
    def param_layer_indices(self) -> list[tuple[int, int]]:
        """Caffe's Net::param_layer_indices: per parameter blob, (layer index, index in the layer's blobs)."""
        return list(self._param_layer_indices)

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
    def bottom_need_backward(self) -> list[list[bool]]:
        """Per layer, whether each bottom gets a gradient (Caffe's Net::bottom_need_backward)."""
        return [list(b) for b in self._bottom_need_backward]

    @property
    def layer_names(self) -> list[str]:
        """Caffe's Net::layer_names (pycaffe's ``net._layer_names``), by layer index."""
        return list(self._layer_names)

    def bottom_ids(self, layer_id: int) -> list[int]:
        """Caffe's Net::bottom_ids: the blob indices of layer ``layer_id``'s bottoms."""
        return list(self._bottom_ids[layer_id])

    def top_ids(self, layer_id: int) -> list[int]:
        """Caffe's Net::top_ids: the blob indices of layer ``layer_id``'s tops."""
        return list(self._top_ids[layer_id])

    @property
    def bottom_vecs(self) -> list[list[Blob]]:
        """Per layer, its bottom blobs (Caffe's Net::bottom_vecs)."""
        return [self._layer_blobs(i)[0] for i in range(len(self.layers))]

    @property
    def top_vecs(self) -> list[list[Blob]]:
        """Per layer, its top blobs (Caffe's Net::top_vecs)."""
        return [self._layer_blobs(i)[1] for i in range(len(self.layers))]

    @property
    def blob_need_backward(self) -> OrderedDict:
        """Blob name -> whether backward reaches it (keys as in ``blobs``)."""
        return OrderedDict(zip(self._blob_names, self._blob_need_backward))

    @property
    def blob_names(self) -> list[str]:
        """Caffe's Net::blob_names: every blob's name by blob index, each ``(automatic)`` one included."""
        return list(self._blob_names)

    @property
    def input_blob_indices(self) -> list[int]:
        """Caffe's Net::input_blob_indices (pycaffe's ``net._inputs``)."""
        return list(self._input_ids)

    @property
    def output_blob_indices(self) -> list[int]:
        """Caffe's Net::output_blob_indices (pycaffe's ``net._outputs``): the blobs no layer consumes,
        by name order; anonymous ``(automatic)`` tops are never among them."""
        return list(self._output_ids)

    def output_blob_table(self) -> list[tuple[str, Blob, float]]:
        """(name, Blob, loss weight) of each output, by Caffe's own indices, as its solver and
        ``caffe test`` report them (free of pycaffe's ``outputs`` naming; see ``outputs``)."""
        return [(self._blob_names[i], self._blob_list[i], self._blob_loss_weights.get(i, 0.0))
                for i in self._output_ids]

    # --- running: Caffe's ForwardFromTo / BackwardFromTo ------------------------------------------
    def _layer_blobs(self, layer_id: int):
        return ([self._blob_list[i] for i in self._bottom_ids[layer_id]],
                [self._blob_list[i] for i in self._top_ids[layer_id]])

    def forward_from_to(self, start: int = 0, end: int | None = None) -> float:
        """Caffe's Net::ForwardFromTo (inclusive); returns the total weighted loss."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        with single_threaded_blas():  # switched once per pass, not per layer (caffelite/compute/parallel.py)
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
        with single_threaded_blas():
            for i in range(start, end - 1, -1):
                if self._layer_need_backward[i]:
                    bottom, top = self._layer_blobs(i)
                    try:
                        self.layers[i].run_backward(top, self._bottom_need_backward[i], bottom)
                    except CaffeliteError as e:
                        raise _context(e, self.layers[i].layer_param, self._source) from None

    def _forward(self, start: int, end: int) -> float:
        return self.forward_from_to(start, end)

    def _backward(self, start: int, end: int) -> None:
        self.backward_from_to(start, end)

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

    # --- weights ---------------------------------------------------------------------------------
    def copy_from(self, weights) -> None:
        """Load parameters by layer name from a .caffemodel (or .h5) file or a NetParameter."""
        if isinstance(weights, caffe_pb2.NetParameter):
            copy_weights(self._layer_names, self.layers, weights)
            return
        path = os.fspath(weights)
        if path.endswith(".h5"):
            self.load_hdf5(path)
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

    def save_hdf5(self, filename: str, write_diff: bool = False) -> None:
        """Caffe's Net::ToHDF5: the weights (and diffs) as /data/<layer>/<i> (needs h5py)."""
        save_weights_hdf5(filename, self._weight_table(), write_diff)

    def load_hdf5(self, filename: str) -> None:
        """Caffe's Net::CopyTrainedLayersFromHDF5: load weights by layer name (needs h5py)."""
        load_weights_hdf5(filename, self._weight_table())

    def _weight_table(self) -> list:
        """(layer name, parameter Blobs, whether each owns its data) per layer, for the weight files."""
        owns = {where: owner < 0 for where, owner in zip(self._param_layer_indices, self._param_owners)}
        return [(name, list(layer.blobs), [owns[(i, j)] for j in range(len(layer.blobs))])
                for i, (name, layer) in enumerate(zip(self._layer_names, self.layers))]

    def __repr__(self) -> str:
        return "<Net '%s': %d layers, %d blobs>" % (self.name, len(self.layers), len(self._blob_list))
