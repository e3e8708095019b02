r"""Caffe's training run with the nets on PyTorch (the command: caffelite/tools/train_torch.py).

Caffe: tools/caffe.cpp (``train``), src/caffe/solver.cpp, src/caffe/parallel.cpp.

The run is caffelite's own solver (``caffelite.solvers``: the iteration loop, ``iter_size``, the
smoothed loss and its log lines, test passes, ``snapshot`` / ``snapshot_after_train``, the
SIGINT / SIGHUP actions, restoring) with three things swapped for PyTorch: each net is a
:class:`caffelite.torch.CaffeNet` on ``--device``, the update is :class:`CaffeOptimizer`, and, with
several processes, the gradients are averaged by DistributedDataParallel.  Snapshots are written
from the caffelite Net the module was built from (after copying the trained weights back), so
the ``.caffemodel`` and ``.solverstate`` files are Caffe's and either engine resumes from them.

Several processes (``--gpu 0,1``, ``--gpu all``, ``--nproc N``, or torchrun) follow Caffe's
multi-GPU semantics: every rank runs the net's batch on its own records (Data and HDF5Data layers
take records ``rank, rank + N, ...``), the gradients are averaged, rank 0 alone logs, tests and
snapshots; a Ctrl-C or SIGHUP acts on every rank at the same iteration.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from caffelite.errors import SolverError
from caffelite.torch.distributed import agree_action, gpu_ids, split_records
from caffelite.torch.solvers import SOLVER_CLASSES, CaffeOptimizer, param_groups, solver_param

__all__ = ["TorchSolverMixin", "TorchNet", "get_solver", "create_solver", "resolve_device"]

log = logging.getLogger("caffelite.solver")
tool_log = logging.getLogger("caffelite.tools")


class _TensorBlob:
    """A tensor read as a caffelite Blob (``data``, ``diff``, ``count``, ``shape``).  On the CPU ``data``
    and ``diff`` are views of the tensor and its gradient (writes reach the module); on a GPU, copies."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    @property
    def data(self) -> np.ndarray:
        return self.tensor.detach().cpu().numpy()

    @property
    def diff(self) -> np.ndarray:
        grad = self.tensor.grad
        return grad.detach().cpu().numpy() if grad is not None else np.zeros(self.shape, np.float32)

    @property
    def count(self) -> int:
        return self.tensor.numel()

    @property
    def shape(self) -> tuple:
        return tuple(self.tensor.shape)


class _Blobs(Mapping):
    """The net's blobs: the last pass's outputs as tensors, the others (Input tops to feed) as caffelite Blobs."""

    def __init__(self, tnet: TorchNet):
        self.tnet = tnet

    def __getitem__(self, name):
        if name in self.tnet.last:
            return _TensorBlob(self.tnet.last[name])
        return self.tnet.module.net.blobs[name]

    def __iter__(self):
        return iter(self.tnet.module.net.blobs)

    def __len__(self) -> int:
        return len(self.tnet.module.net.blobs)


class TorchNet:
    """The surface of caffelite's Net that the solver uses, over a CaffeNet (and its DDP wrapper).

    The tops of Input layers are fed as in pycaffe, by writing ``net.blobs[name].data``; data layers
    run by themselves.  ``params`` are the caffelite Net's blobs, refreshed from the module.
    """

    def __init__(self, net, device: torch.device):
        from caffelite.torch import CaffeNet

        self.module = CaffeNet(net).to(device)
        self.device = device
        self.ddp = None
        self.iter_size = 1
        self.last: dict = {}
        self._passes = 0
        self._shared_with = None
        self._fed = [top for layer in net.layers if layer.layer_param.type == "Input" for top in layer.layer_param.top]

    # --- what Solver reads -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.module.net.name

    @property
    def outputs(self) -> list[str]:
        return self.module.outputs

    @property
    def blob_loss_weights(self) -> dict:
        return self.module.loss_weights

    def output_blob_table(self) -> list:
        """(name, blob, loss weight) of each of Caffe's outputs, by blob index (Net.output_blob_table):
        the last pass's tensors as blobs."""
        weights = self.module.loss_weights
        return [(name, self.blobs[name], weights.get(name, 0.0)) for name in self.module.outputs]

    @property
    def blobs(self) -> _Blobs:
        return _Blobs(self)

    @property
    def params(self) -> OrderedDict:
        """pycaffe's ``net.params``: layer name -> its parameters (shared ones are the owner's tensor)."""
        by_blob = {id(blob): p for blob, (_, p, _) in zip(self.module.net.learnable_params,
                                                          self.module.named_caffe_params())}
        return OrderedDict((name, [_TensorBlob(by_blob[id(b)]) for b in blobs])
                           for name, blobs in self.module.net.params.items())

    @property
    def learnable_params(self):
        return self.module.net.learnable_params

    @property
    def params_lr(self):
        return self.module.net.params_lr

    @property
    def params_weight_decay(self):
        return self.module.net.params_weight_decay

    @property
    def layers(self):
        return self.module.net.layers

    # --- passes ------------------------------------------------------------------------------
    def _inputs(self) -> dict:
        return {name: self.module.net.blobs[name].data for name in self._fed}

    def clear_param_diffs(self) -> None:
        self.module.zero_grad(set_to_none=True)
        self._passes = 0

    def forward_backward(self) -> float:
        """One forward and backward pass; the parameters' ``.grad`` accumulate, as Caffe's diffs do.
        With DDP, only the last of ``iter_size`` passes all-reduces the gradients."""
        self._passes += 1
        runner = self.ddp if self.ddp is not None else self.module
        sync = self.ddp is None or self._passes % self.iter_size == 0
        with contextlib.nullcontext() if sync else self.ddp.no_sync():
            out = runner(**self._inputs())
            loss = self.module.total_loss(out)
            if loss.requires_grad:
                loss.backward()
        self.last = out
        return float(loss.detach())

    def forward_from_to(self) -> float:
        with torch.no_grad():
            self.last = self.module(**self._inputs())
            return float(self.module.total_loss(self.last))

    # --- weights -----------------------------------------------------------------------------
    def share_with(self, other: TorchNet) -> None:
        """Caffe's ShareTrainedLayersWith: use ``other``'s parameters (same layer name and shape)."""
        if self._shared_with is other:
            return
        theirs = dict(other.module.named_parameters())
        for name, p in list(self.module.named_parameters()):
            if name in theirs and theirs[name].shape == p.shape:
                self.module.register_parameter(name, theirs[name])
        self._shared_with = other

    def copy_from(self, path: str) -> None:
        self.module.load_caffemodel(path)


class TorchSolverMixin:
    """Put before one of caffelite's solver classes: the same run, with the nets and the update on torch."""

    def __init__(self, param, source=None, *, device: torch.device, rank: int = 0, size: int = 1):
        self.device, self.rank, self.size = device, rank, size
        self._testing = False
        if param.random_seed >= 0:
            torch.manual_seed(param.random_seed + rank)  # each rank its own dropout masks, as Caffe's workers
        super().__init__(param, _read=True, _file=source)
        tnet = self.net
        tnet.iter_size = param.iter_size
        skipped = split_records(tnet.layers, rank, size)
        if skipped and rank == 0:
            log.warning("Data layer(s) %s read the same records on every rank (Caffe's multi-GPU split "
                        "covers Data and HDF5Data only)", ", ".join(skipped))
        if size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            tnet.ddp = DistributedDataParallel(tnet.module, device_ids=ids, forward_sync_buffers=False)
        self.optimizer = CaffeOptimizer(param_groups(tnet.module), param, source)

    def _make_net(self, net_param, state, where):
        return TorchNet(super()._make_net(net_param, state, where), self.device)

    def _init_test_nets(self):
        if self.rank != 0:  # rank 0 alone tests (Caffe's root solver alone builds test nets)
            self.mean_scores = []
            return []
        return super()._init_test_nets()

    # --- the update and the actions ---------------------------------------------------------
    def apply_update(self) -> None:
        opt = self.optimizer
        opt.iter, opt.current_step = self.iter, self.current_step
        opt.step()
        self.current_step = opt.current_step

    def requested_action(self) -> str:
        if self.size == 1:
            return super().requested_action()
        if self._testing:  # rank 0 alone tests: signals wait for the iteration's end, where all ranks agree
            return "none"
        return agree_action(super().requested_action(), self.device)

    def test(self, test_net_id: int = 0):
        self._testing = True
        try:
            return super().test(test_net_id)
        finally:
            self._testing = False

    def test_all(self) -> None:
        if self.rank == 0:
            super().test_all()

    # --- snapshots: the caffelite Net holds the weights, the NumPy history the optimizer's state -----
    def snapshot(self):
        if self.rank != 0:
            return None
        tnet = self.net
        self.net = tnet.module.sync_to_net()
        if self.param.snapshot_diff:  # Caffe writes the diffs as ApplyUpdate left them: the last update
            for blob, (_, p, _) in zip(self.net.learnable_params, tnet.module.named_caffe_params()):
                blob.diff[...] = 0 if p.grad is None else p.grad.detach().cpu().numpy().reshape(blob.shape)
        try:
            return super().snapshot()
        finally:
            self.net = tnet

    def snapshot_solver_state(self, model_filename: str) -> str:
        for mine, h in zip(self.history, self.optimizer.history()):
            mine[...] = h.detach().cpu().numpy().reshape(mine.shape)
        return super().snapshot_solver_state(model_filename)

    def restore(self, state_file: str) -> None:
        super().restore(state_file)
        self.optimizer.set_history(self.history, state_file)
        self.optimizer.iter, self.optimizer.current_step = self.iter, self.current_step


def create_solver(param, source: str | None = None, device="cpu", rank: int = 0, size: int = 1):
    """caffelite's solver of ``param.type`` running on torch (see the module docstring)."""
    cls = SOLVER_CLASSES.get(param.type)
    if cls is None:
        raise SolverError("Unknown solver type: %s (known types: %s)" % (param.type, ", ".join(SOLVER_CLASSES)),
                          file=source, field="type")
    torch_cls = type("Torch" + cls.__name__, (TorchSolverMixin, cls), {})
    return torch_cls(param, source, device=torch.device(device), rank=rank, size=size)


def get_solver(source, device="cpu"):
    """pycaffe's ``caffe.get_solver`` on torch: a solver file or SolverParameter, nets on ``device``."""
    param, path = solver_param(source)
    return create_solver(param, path, device)


# --- the command line ------------------------------------------------------------------------------
def resolve_device(args, local_rank: int) -> torch.device:
    """--device, else one --gpu id, else the CPU; ``cuda`` alone under torchrun is cuda:LOCAL_RANK."""
    text = args.device or ("cuda:%d" % gpu_ids(args.gpu)[0] if args.gpu else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise SolverError("--device %s: expected cpu, cuda or cuda:N" % text, field="device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SolverError("--device %s: torch sees no CUDA device (torch %s%s)" % (
                text, torch.__version__, ", a CPU-only build" if torch.version.cuda is None else ""), field="device")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise SolverError("--device %s: only %d CUDA device(s) visible" % (text, torch.cuda.device_count()),
                              field="device")
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise SolverError("--device %s: expected cpu, cuda or cuda:N" % text, field="device")
    return device
