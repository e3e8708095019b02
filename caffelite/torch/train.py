r"""``caffelite train --engine torch``: Caffe's training run with the nets on PyTorch.

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
import sys
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from caffelite.errors import SolverError
from caffelite.torch.distributed import agree_action, gpu_ids, init_worker, launch, split_records, world
from caffelite.torch.solvers import SOLVER_CLASSES, CaffeOptimizer, param_groups, solver_param

__all__ = ["TorchSolverMixin", "TorchNet", "get_solver", "create_solver", "resolve_device", "run"]

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


def _worker_argv(args) -> list[str]:
    """The same ``train`` command for one rank (the launcher adds --device)."""
    argv = ["train", "--solver", args.solver, "--engine", "torch",
            "--sigint_effect", args.sigint_effect, "--sighup_effect", args.sighup_effect,
            "--level", str(args.level)]
    for flag, value in (("--weights", args.weights), ("--snapshot", args.snapshot), ("--stage", args.stage),
                        ("--log", args.log)):
        if value:
            argv += [flag, value]
    if args.iterations is not None:
        argv += ["--iterations", str(args.iterations)]
    return argv


def run(args) -> int:
    """``caffelite train --engine torch``: launch the ranks, or be one (or the only) process."""
    from caffelite.protoio import read_solver_param
    from caffelite.solvers import SignalHandler
    from caffelite.tools.train import ToolLogging

    if not args.solver:
        raise SolverError("Need a solver definition to train. (give --solver FILE)", field="solver")
    if args.snapshot and args.weights:
        raise SolverError("Give a snapshot to resume training or weights to finetune but not both.",
                          field="weights")
    rank, size, local = world()
    if size == 1:  # not a worker yet: several processes asked for?
        gpus = gpu_ids(args.gpu) if args.gpu else []
        if args.nproc is not None and args.nproc < 1:
            raise SolverError("--nproc must be at least 1 (got %d)" % args.nproc, field="nproc")
        if gpus and args.nproc:
            raise SolverError("Give --gpu (one process per GPU) or --nproc (CPU processes), not both", field="nproc")
        if len(gpus) > 1 or (args.nproc or 1) > 1:
            read_solver_param(args.solver)  # a bad solver file is reported once, not by every rank
            with ToolLogging(None):
                devices = ["cuda:%d" % g for g in gpus] if gpus else None
                if gpus:
                    tool_log.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
                return launch(_worker_argv(args), len(gpus) or args.nproc, devices, args.solver)
    signals = SignalHandler(args.sigint_effect, args.sighup_effect)
    with contextlib.ExitStack() as stack:
        if size > 1:  # a rank catches signals from the start: they act after an iteration all ranks agree on
            stack.enter_context(signals)
        return _train(args, signals, local)


def _train(args, signals, local: int) -> int:
    """One process's run (alone, or one rank of several)."""
    from caffelite.protoio import read_solver_param
    from caffelite.solvers import snapshot_prefix_property
    from caffelite.tools.train import ProgressBar, ToolLogging, stages_from

    device = resolve_device(args, local)
    rank, size = init_worker(device)
    try:
        with ToolLogging(args.log if rank == 0 else None) as logs:
            if rank != 0:  # Caffe's workers are quiet: rank 0 logs
                logging.getLogger("caffelite").setLevel(logging.WARNING)
            param = read_solver_param(args.solver)
            snapshot_prefix_property(param, args.solver)
            param.train_state.level = args.level
            param.train_state.stage.extend(stages_from(args.stage))
            if args.iterations is not None:
                param.max_iter = args.iterations
            if args.snapshot:
                del param.weights[:]
            elif args.weights:
                del param.weights[:]
                param.weights.append(args.weights)
            if device.type == "cuda":
                tool_log.info("GPU %d: %s", device.index, torch.cuda.get_device_name(device))
            else:
                tool_log.info("Use CPU.")
            if size > 1:
                tool_log.info("Rank %d of %d: batches of the net's batch size on every rank (%s backend)",
                              rank, size, torch.distributed.get_backend())
            solver = create_solver(param, args.solver, device, rank, size)
            if rank == 0 and sys.stderr.isatty() and param.max_iter - solver.iter >= 100:
                bar = ProgressBar(sys.stderr, param.max_iter)
                logs.stderr_handler.bar = bar
                solver.add_callback(on_start=lambda: bar.update(solver.iter))
            tool_log.info("Starting Optimization")
            with signals if size == 1 else contextlib.nullcontext():
                solver.set_action_function(signals.action)
                if args.snapshot:
                    tool_log.info("Resuming from %s", args.snapshot)
                solver.solve(args.snapshot or None)
            if logs.stderr_handler.bar is not None:
                logs.stderr_handler.bar.clear()
            tool_log.info("Optimization Done.")
    finally:
        if size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
