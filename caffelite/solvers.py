r"""Solvers: learning-rate policies (pure functions) and the six update rules, trained as Caffe trains.

Caffe: src/caffe/solver.cpp, src/caffe/solvers/*_solver.cpp, include/caffe/sgd_solvers.hpp,
src/caffe/util/signal_handler.cpp; pycaffe: python/caffe/_caffe.cpp (the ``Solver`` surface).

One iteration (``Solver.step``) is Caffe's: zero the parameter diffs, run ``iter_size``
forward/backward passes, then ``apply_update``:

1. :math:`\eta = \mathrm{policy}(\mathrm{iter})` (``lr_policy``);
2. clip: if :math:`\lVert g \rVert_2 > c` over all learnable parameters, scale every diff by
   :math:`c / \lVert g \rVert_2` (``clip_gradients``, off when negative);
3. normalize: :math:`g \leftarrow g / \mathrm{iter\_size}`;
4. regularize: :math:`g \leftarrow g + \lambda w` (L2) or :math:`g + \lambda\,\mathrm{sign}(w)` (L1),
   :math:`\lambda` = ``weight_decay`` × ``decay_mult``;
5. the rule's update value into the diff, with :math:`\eta_i = \eta \cdot` ``lr_mult``;
6. :math:`w \leftarrow w - g`.

Maths stays in float32 like Caffe's ``Blob<float>``; ``y = a x + b y`` is computed as Caffe's
``caffe_cpu_axpby`` (scale, then add) so rounding follows it closely.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable

import numpy as np

from caffelite.common import set_random_seed
from caffelite.errors import CaffeFileNotFoundError, CaffeliteError, FileFormatError, SolverError
from caffelite.layer import TEST, TRAIN
from caffelite.net import Net
from caffelite.proto import caffe_pb2
from caffelite.protoio import (
    _atomic_write,
    proto_shape,
    proto_values,
    read_binary_proto,
    read_net_param,
    read_solver_param,
)

__all__ = [
    "LR_POLICIES", "learning_rate", "lr_fixed", "lr_step", "lr_exp", "lr_inv", "lr_multistep", "lr_poly",
    "lr_sigmoid", "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
    "AdaDeltaSolver", "AdamSolver", "get_solver", "create_solver", "register_solver", "solver_type_list",
    "SignalHandler", "snapshot_prefix_property",
]

log = logging.getLogger("caffelite.solver")
F32 = np.float32


# --- learning-rate policies -------------------------------------------------------------------
# Each takes (param, iter, current_step) and returns (rate, current_step): pure, so a restored
# solver (which restores current_step) continues exactly.
def _check_gamma(param) -> None:
    if param.gamma < 0:
        raise SolverError("gamma must be >= 0 for lr_policy '%s' (gamma %g)" % (param.lr_policy, param.gamma),
                          field="gamma")


def _check_stepsize(param) -> None:
    if param.stepsize <= 0:
        raise SolverError("stepsize must be > 0 for lr_policy '%s' (stepsize %d)"
                          % (param.lr_policy, param.stepsize), field="stepsize")


def lr_fixed(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0`."""
    return float(F32(param.base_lr)), current_step


def lr_step(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 \gamma^{\lfloor it / \mathrm{stepsize} \rfloor}` (and current_step is that exponent)."""
    _check_stepsize(param)
    _check_gamma(param)
    step = it // param.stepsize
    return float(F32(F32(param.base_lr) * float(F32(param.gamma)) ** step)), step


def lr_exp(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 \gamma^{it}`."""
    _check_gamma(param)
    return float(F32(F32(param.base_lr) * float(F32(param.gamma)) ** it)), current_step


def lr_inv(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 (1 + \gamma\, it)^{-p}`."""
    _check_gamma(param)
    base = float(F32(1.0 + float(F32(param.gamma)) * it))
    return float(F32(F32(param.base_lr) * base ** -float(F32(param.power)))), current_step


def lr_multistep(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 \gamma^{s}`, s advancing by at most one per call once ``it`` reaches
    ``stepvalue[s]`` (Caffe's current_step_ logic: a restored run keeps its s)."""
    if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
        current_step += 1
        log.info("MultiStep Status: Iteration %d, step = %d", it, current_step)
    _check_gamma(param)
    return float(F32(F32(param.base_lr) * float(F32(param.gamma)) ** current_step)), current_step


def lr_poly(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 (1 - it / \mathrm{max\_iter})^{p}`."""
    if param.max_iter <= 0:
        raise SolverError("lr_policy 'poly' needs max_iter > 0 (max_iter %d)" % param.max_iter, field="max_iter")
    frac = float(F32(1.0 - float(F32(it) / F32(param.max_iter))))
    power = float(F32(param.power))
    rate = frac ** power if frac >= 0 or power.is_integer() else math.nan
    return float(F32(F32(param.base_lr) * rate)), current_step


def lr_sigmoid(param, it: int, current_step: int = 0) -> tuple[float, int]:
    r""":math:`\eta = \eta_0 / (1 + e^{-\gamma (it - \mathrm{stepsize})})`."""
    _check_gamma(param)
    _check_stepsize(param)
    z = -float(F32(param.gamma)) * (it - param.stepsize)
    sig = 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0
    return float(F32(F32(param.base_lr) * sig)), current_step


LR_POLICIES: dict[str, Callable] = {
    "fixed": lr_fixed, "step": lr_step, "exp": lr_exp, "inv": lr_inv, "multistep": lr_multistep,
    "poly": lr_poly, "sigmoid": lr_sigmoid,
}


def learning_rate(param, it: int, current_step: int = 0) -> tuple[float, int]:
    """Caffe's SGDSolver::GetLearningRate: the rate at iteration ``it`` and the new current_step."""
    policy = LR_POLICIES.get(param.lr_policy)
    if policy is None:
        raise SolverError("Unknown learning rate policy: %s (known: %s)"
                          % (param.lr_policy, ", ".join(LR_POLICIES)), field="lr_policy")
    return policy(param, it, current_step)


# --- registry --------------------------------------------------------------------------------
_SOLVERS: dict[str, type] = {}


def register_solver(cls: type) -> type:
    """Class decorator: register a solver class under its Caffe type name ``cls.type``."""
    if cls.type in _SOLVERS and _SOLVERS[cls.type] is not cls:
        raise TypeError("Solver type %s already registered." % cls.type)
    _SOLVERS[cls.type] = cls
    return cls


def solver_type_list() -> list[str]:
    return sorted(_SOLVERS)


def snapshot_prefix_property(param, solver_file: str) -> None:
    """Caffe's UpgradeSnapshotPrefixProperty: no prefix → the solver file's path without extension;
    a directory → that directory joined with the solver file's stem."""
    stem = os.path.splitext(os.fspath(solver_file))[0]
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = stem
        log.info("snapshot_prefix was not specified and is set to %s", param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))
        log.info("snapshot_prefix was a directory and is replaced to %s", param.snapshot_prefix)


def _solver_param(source) -> tuple[caffe_pb2.SolverParameter, str | None]:
    if isinstance(source, caffe_pb2.SolverParameter):
        from caffelite.upgrade import upgrade_solver_as_needed

        param = caffe_pb2.SolverParameter()
        param.CopyFrom(source)
        upgrade_solver_as_needed(param, None)
        return param, None
    path = os.fspath(source)
    param = read_solver_param(path)
    snapshot_prefix_property(param, path)
    return param, path


def create_solver(param: caffe_pb2.SolverParameter, source: str | None = None) -> Solver:
    """Caffe's SolverRegistry::CreateSolver: the registered class for ``param.type``.

    ``source`` names the solver file the (already read and upgraded) parameters came from; it is
    used in error messages."""
    cls = _SOLVERS.get(param.type)
    if cls is None:
        raise SolverError("Unknown solver type: %s (known types: %s)" % (param.type, ", ".join(solver_type_list())),
                          file=source, field="type")
    return cls(param, _read=True, _file=source)


def get_solver(source) -> Solver:
    """pycaffe's ``caffe.get_solver``: the solver of the file's (or SolverParameter's) ``type``."""
    param, path = _solver_param(source)
    return create_solver(param, path)


# --- signals (Caffe's SignalHandler and -sigint_effect / -sighup_effect) -----------------------
ACTIONS = ("none", "stop", "snapshot")


class SignalHandler:
    """Turn SIGINT / SIGHUP into solver actions while active (a context manager).

    ``sigint_effect`` and ``sighup_effect`` are ``"stop"``, ``"snapshot"`` or ``"none"`` (Caffe's
    defaults: stop on Ctrl-C, snapshot on hang-up).  A stop still ends with the final snapshot
    that ``snapshot_after_train`` asks for, so Ctrl-C leaves a resumable state.  Pass the
    instance's ``action`` to ``Solver.set_action_function``.
    """

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
        for name, value in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if value not in ACTIONS:
                raise SolverError("Invalid %s: %r (stop, snapshot or none)" % (name, value), field=name)
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self._pending: list[int] = []
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self._pending.append(signum)

    def __enter__(self) -> SignalHandler:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for signum in self.effects:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def action(self) -> str:
        """The action for the oldest signal received since the last call ("none" if none)."""
        while self._pending:
            signum = self._pending.pop(0)
            effect = self.effects.get(signum, "none")
            if effect != "none":
                return effect
        return "none"


# --- the solver ------------------------------------------------------------------------------
def _axpby(alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> None:
    """y = alpha x + beta y in place (Caffe's caffe_cpu_axpby: scale y, then add)."""
    y *= F32(beta)
    y += F32(alpha) * x


class Solver:
    """Caffe's Solver: builds the train and test nets, steps, tests, snapshots and restores.

    ``Solver(path_or_param)`` as pycaffe's ``caffe.SGDSolver(path)``; ``get_solver`` picks the
    class from the ``type`` field.  Subclasses implement ``apply_update`` and the state I/O.
    """

    type = ""

    def __init__(self, source, *, _read: bool = False, _file: str | None = None):
        if _read:  # create_solver hands over parameters already read and upgraded
            param, path = source, _file
        else:
            param, path = _solver_param(source)
        if param.type != self.type and self.type:
            log.info("Solver file asks for type '%s'; creating a %s solver as requested", param.type, self.type)
        self.param = param
        self._file = path
        self.iter = 0
        self.current_step = 0
        self.smoothed_loss = 0.0
        self._losses: list[float] = []
        self._callbacks: list[tuple[Callable | None, Callable | None]] = []
        self._action_function: Callable[[], str] | None = None
        self.requested_early_exit = False
        self.mean_scores: list[list[float]] = []
        self._check_param()
        if param.random_seed >= 0:
            set_random_seed(param.random_seed)
        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        for entry in param.weights:  # Caffe master's LoadNetWeights: comma-separated lists
            for name in filter(None, entry.split(",")):
                log.info("Finetuning from %s", name)
                for net in [self.net, *self.test_nets]:
                    net.copy_from(name)

    # --- construction ---------------------------------------------------------------------
    def _error(self, message: str, field: str | None = None) -> SolverError:
        return SolverError(message, file=self._file, field=field)

    def _check_param(self) -> None:
        p = self.param
        if p.average_loss < 1:
            raise self._error("average_loss should be non-negative. (average_loss %d)" % p.average_loss,
                              "average_loss")
        if p.iter_size < 1:
            raise self._error("iter_size must be at least 1 (iter_size %d)" % p.iter_size, "iter_size")
        if p.regularization_type not in ("L1", "L2"):
            raise self._error("Unknown regularization type: %s (L1 or L2)" % p.regularization_type,
                              "regularization_type")
        if p.lr_policy not in LR_POLICIES:
            raise self._error("Unknown learning rate policy: %s (known: %s)"
                              % (p.lr_policy or "(none: lr_policy is not set)", ", ".join(LR_POLICIES)),
                              "lr_policy")
        if p.snapshot and not p.snapshot_prefix:
            raise self._error("In solver params, snapshot is specified but snapshot_prefix is not", "snapshot_prefix")
        if p.snapshot:
            folder = os.path.dirname(self.snapshot_filename(".tempfile")) or "."
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                raise self._error("Cannot write to snapshot prefix '%s'.  Make sure that the directory exists "
                                  "and is writeable. (tried %s)" % (p.snapshot_prefix, os.path.abspath(folder)),
                                  "snapshot_prefix")

    def _read_net(self, path: str, field: str):
        try:
            return read_net_param(path)
        except CaffeFileNotFoundError as e:
            if not os.path.isabs(path) and self._file:
                beside = os.path.join(os.path.dirname(os.path.abspath(self._file)), path)
                e.message += (" (%s is relative: like Caffe, caffelite resolves it against the current "
                              "directory %s%s)" % (field, os.getcwd(),
                                                   "; it exists beside the solver file" if os.path.exists(beside)
                                                   else ""))
                e.args = (e.message,)
            e.field = e.field or field
            raise

    def _make_net(self, net_param, state, where: str) -> Net:
        net_param.state.CopyFrom(state)
        try:
            return Net(net_param, phase=state.phase)
        except CaffeliteError as e:
            raise e.add_context(file=where) from None

    def _init_train_net(self) -> Net:
        p = self.param
        fields = ("net", "net_param", "train_net", "train_net_param")
        given = [f for f in fields if p.HasField(f)]
        if not given:
            raise self._error("SolverParameter must specify a train net using one of these fields: "
                              + ", ".join(fields), "net")
        if len(given) > 1:
            raise self._error("SolverParameter must not contain more than one of these fields specifying a "
                              "train_net: %s (given: %s)" % (", ".join(fields), ", ".join(given)), given[1])
        field = given[0]
        if field in ("net", "train_net"):
            net_param, where = self._read_net(getattr(p, field), field), getattr(p, field)
            log.info("Creating training net from %s file: %s", field, where)
        else:
            net_param, where = caffe_pb2.NetParameter(), self._file
            net_param.CopyFrom(getattr(p, field))
            log.info("Creating training net specified in %s.", field)
        state = caffe_pb2.NetState(phase=TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        return self._make_net(net_param, state, where)

    def _init_test_nets(self) -> list[Net]:
        p = self.param
        generic = p.HasField("net") + p.HasField("net_param")
        if generic > 1:
            raise self._error("Both net_param and net_file may not be specified.", "net_param")
        explicit = len(p.test_net_param) + len(p.test_net)
        if (generic and len(p.test_iter) < explicit) or (not generic and len(p.test_iter) != explicit):
            raise self._error("test_iter must be specified for each test network. (%d test_iter, %d test nets)"
                              % (len(p.test_iter), explicit), "test_iter")
        instances = len(p.test_iter) if generic else explicit
        if len(p.test_state) and len(p.test_state) != instances:
            raise self._error("test_state must be unspecified or specified once per test net. "
                              "(%d test_state, %d test nets)" % (len(p.test_state), instances), "test_state")
        if instances and p.test_interval <= 0:
            raise self._error("test_interval must be > 0 when test nets are given (test_interval %d)"
                              % p.test_interval, "test_interval")
        sources = []
        for tp in p.test_net_param:
            param = caffe_pb2.NetParameter()
            param.CopyFrom(tp)
            sources.append((param, self._file, "test_net_param"))
        for path in p.test_net:
            sources.append((self._read_net(path, "test_net"), path, "test_net file: " + path))
        for _ in range(instances - explicit):
            if p.HasField("net_param"):
                param = caffe_pb2.NetParameter()
                param.CopyFrom(p.net_param)
                sources.append((param, self._file, "net_param"))
            else:
                sources.append((self._read_net(p.net, "net"), p.net, "net file: " + p.net))
        nets = []
        for i, (net_param, where, what) in enumerate(sources):
            state = caffe_pb2.NetState(phase=TEST)
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            log.info("Creating test net (#%d) specified by %s", i, what)
            nets.append(self._make_net(net_param, state, where))
        self.mean_scores = [[] for _ in nets]
        return nets

    # --- pycaffe surface ------------------------------------------------------------------
    def add_callback(self, on_start: Callable | None = None, on_gradients_ready: Callable | None = None) -> None:
        """pycaffe's ``Solver.add_callback``: call ``on_start()`` before each iteration's passes and
        ``on_gradients_ready()`` after them, before the update."""
        self._callbacks.append((on_start, on_gradients_ready))

    def set_action_function(self, func: Callable[[], str] | None) -> None:
        """Caffe's SetActionFunction: ``func()`` returns "none", "stop" or "snapshot" (polled each iteration)."""
        self._action_function = func

    def requested_action(self) -> str:
        return self._action_function() if self._action_function else "none"

    def share_weights(self, net: Net) -> None:
        """pycaffe's ``Solver.share_weights``: make ``net`` use the trained parameters."""
        net.share_with(self.net)

    # --- training -------------------------------------------------------------------------
    def _update_smoothed_loss(self, loss: float, start_iter: int, average_loss: int) -> None:
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            size = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            idx = (self.iter - start_iter) % average_loss
            self.smoothed_loss += (loss - self._losses[idx]) / average_loss
            self._losses[idx] = loss

    def step(self, iters: int) -> None:
        """Caffe's Solver::Step: ``iters`` iterations (fewer if a stop is requested)."""
        p = self.param
        start_iter, stop_iter = self.iter, self.iter + int(iters)
        self._losses = []
        self.smoothed_loss = 0.0
        timer, iters_last = time.perf_counter(), self.iter
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization):
                self.test_all()
                if self.requested_early_exit:
                    break
            for on_start, _ in self._callbacks:
                if on_start:
                    on_start()
            display = bool(p.display) and self.iter % p.display == 0
            loss = 0.0
            for _ in range(p.iter_size):
                loss += self.net.forward_backward()
            loss /= p.iter_size
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - iters_last) / (lapse or 1.0)
                log.info("Iteration %d (%g iter/s, %.4gs/%d iters), loss = %g", self.iter, per_s, lapse,
                         p.display, self.smoothed_loss)
                timer, iters_last = time.perf_counter(), self.iter
                self._log_outputs(self.net, "Train", None)
            for _, on_gradients_ready in self._callbacks:
                if on_gradients_ready:
                    on_gradients_ready()
            self.apply_update()
            self.iter += 1  # the number of updates done
            request = self.requested_action()
            if (p.snapshot and self.iter % p.snapshot == 0) or request == "snapshot":
                self.snapshot()
            if request == "stop":
                self.requested_early_exit = True
                break

    def solve(self, resume_file: str | None = None) -> None:
        """Caffe's Solver::Solve: restore if asked, train to max_iter, snapshot, final display and test."""
        p = self.param
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        # a stop request (Ctrl-C) always snapshots, even without snapshot_after_train: no training is lost
        if (p.snapshot_after_train or self.requested_early_exit) and (not p.snapshot or self.iter % p.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            log.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0:
            loss = self.net.forward_from_to()
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            log.info("Iteration %d, loss = %g", self.iter, self.smoothed_loss)
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def _log_outputs(self, net: Net, which: str, scores) -> None:
        weights = net.blob_loss_weights
        index = 0
        for name in net.outputs:
            values = np.asarray(net.blobs[name].data).ravel() if scores is None else None
            count = net.blobs[name].count
            for k in range(count):
                value = float(values[k]) if scores is None else scores[index]
                weight = weights.get(name, 0.0)
                extra = " (* %g = %g loss)" % (weight, weight * value) if weight else ""
                log.info("    %s net output #%d: %s = %g%s", which, index, name, value, extra)
                index += 1

    def test_all(self) -> None:
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            self.test(i)

    def test(self, test_net_id: int = 0) -> list[float]:
        """Caffe's Solver::Test: ``test_iter`` forward passes with the trained weights; mean outputs."""
        p = self.param
        log.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        net = self.test_nets[test_net_id]
        net.share_with(self.net)
        scores: list[float] = []
        loss = 0.0
        n = p.test_iter[test_net_id]
        for i in range(n):
            request = self.requested_action()
            while request != "none":
                if request == "snapshot":
                    self.snapshot()
                elif request == "stop":
                    self.requested_early_exit = True
                request = self.requested_action()
            if self.requested_early_exit:
                break
            iter_loss = net.forward_from_to()
            if p.test_compute_loss:
                loss += iter_loss
            values = np.concatenate([np.asarray(net.blobs[name].data, dtype=np.float64).ravel()
                                     for name in net.outputs]) if net.outputs else np.zeros(0)
            scores = list(values) if i == 0 else [a + b for a, b in zip(scores, values)]
        if self.requested_early_exit:
            log.info("Test interrupted.")
            return []
        if p.test_compute_loss:
            log.info("Test loss: %g", loss / n)
        means = [float(s) / n for s in scores]
        self.mean_scores[test_net_id] = means
        self._log_outputs(net, "Test", means)
        return means

    # --- snapshots ------------------------------------------------------------------------
    def snapshot_filename(self, extension: str) -> str:
        return "%s_iter_%d%s" % (self.param.snapshot_prefix, self.iter, extension)

    def snapshot(self) -> str:
        """Caffe's Solver::Snapshot: write the weights and the solver state; returns the state's path."""
        hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        model = self.snapshot_filename(".caffemodel.h5" if hdf5 else ".caffemodel")
        if hdf5:
            log.info("Snapshotting to HDF5 file %s", model)
            self.net.save_hdf5(model, write_diff=self.param.snapshot_diff)
        else:
            log.info("Snapshotting to binary proto file %s", model)
            _atomic_write(model, self.net.to_proto(self.param.snapshot_diff).SerializeToString())
        return self.snapshot_solver_state(model)

    def snapshot_solver_state(self, model_filename: str) -> str:
        raise NotImplementedError

    def restore(self, state_file: str) -> None:
        """Caffe's Solver::Restore: a ``.h5`` state is HDF5, anything else a binary SolverState."""
        path = os.fspath(state_file)
        if path.endswith(".h5"):
            self.restore_solver_state_hdf5(path)
        else:
            self.restore_solver_state_binary(path)

    def _learned_net_path(self, learned_net: str, state_file: str) -> str:
        """learned_net as Caffe resolves it (the current directory); if it is not there but the file
        of that name sits beside the state file, use that one (where Caffe would abort)."""
        if os.path.exists(learned_net):
            return learned_net
        beside = os.path.join(os.path.dirname(state_file), os.path.basename(learned_net))
        if not os.path.isabs(learned_net) and os.path.exists(beside):
            log.info("learned_net %s is not in %s; using %s beside the solver state", learned_net,
                     os.getcwd(), beside)
            return beside
        raise CaffeFileNotFoundError("the solver state's learned_net file not found: %s (resolved against the "
                                     "current directory, as Caffe does; not beside the state either: %s)"
                                     % (os.path.abspath(learned_net), os.path.abspath(beside)),
                                     file=state_file, field="learned_net")

    def restore_solver_state_binary(self, path: str) -> None:
        raise NotImplementedError

    def restore_solver_state_hdf5(self, path: str) -> None:
        raise NotImplementedError

    def apply_update(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return "<%sSolver iter %d, net '%s'>" % (self.type, self.iter, self.net.name)


@register_solver
class SGDSolver(Solver):
    r"""Stochastic gradient descent with momentum.

    .. math:: V_{t+1} = \mu V_t + \eta_i g, \qquad W_{t+1} = W_t - V_{t+1}

    Caffe: src/caffe/solvers/sgd_solver.cpp.
    """

    type = "SGD"
    history_sets = 1  # history blobs per learnable parameter (2 for AdaDelta and Adam)

    def __init__(self, source, **kwargs):
        super().__init__(source, **kwargs)
        self._check_rule()
        # the train net's learnable blobs and their multipliers are fixed once it is built: look them
        # up once (the net's properties build new lists on every access)
        params = self._params = self.net.learnable_params
        self._lr_mults = [F32(m) for m in self.net.params_lr]
        self._decay_mults = [F32(m) for m in self.net.params_weight_decay]
        # regularize's decay * w, one buffer for all parameters (Caffe's temp_)
        self._scratch = np.empty(max((b.count for b in params), default=0), F32)
        self.history = [np.zeros(b.shape, F32) for _ in range(self.history_sets) for b in params]

    def _check_rule(self) -> None:
        """Constructor checks of the subclasses (Caffe's constructor_sanity_check)."""

    # --- the update -----------------------------------------------------------------------
    def get_learning_rate(self) -> float:
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    def clip_gradients(self) -> None:
        clip = self.param.clip_gradients
        if clip < 0:
            return
        params = self._params
        sumsq = sum(float(np.dot(b.diff.ravel(), b.diff.ravel())) for b in params)
        norm = math.sqrt(sumsq)
        if norm > clip:
            scale = F32(clip / norm)
            log.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale factor %g",
                     norm, clip, scale)
            for b in params:
                b.diff[...] *= scale

    def normalize(self, param_id: int) -> None:
        if self.param.iter_size != 1:
            diff = self._params[param_id].diff
            diff *= F32(1.0 / self.param.iter_size)

    def regularize(self, param_id: int) -> None:
        local_decay = F32(self.param.weight_decay) * self._decay_mults[param_id]
        if not local_decay:  # nothing to add: skip two passes over the parameter
            return
        blob = self._params[param_id]
        data, diff = blob.data, blob.diff
        term = self._scratch[:data.size].reshape(data.shape) if data.dtype == F32 else np.empty_like(data)
        if self.param.regularization_type == "L2":
            np.multiply(data, local_decay, out=term)
        else:
            np.sign(data, out=term)
            term *= local_decay
        diff += term

    def compute_update_value(self, param_id: int, rate: float) -> None:
        local_rate = F32(rate) * self._lr_mults[param_id]
        history = self.history[param_id]
        diff = self._params[param_id].diff
        # _axpby(local_rate, diff, momentum, history) without its temporary: the diff is overwritten next
        history *= F32(self.param.momentum)
        diff *= local_rate
        history += diff
        np.copyto(diff, history)

    def apply_update(self) -> None:
        """Caffe's SGDSolver::ApplyUpdate: rate, clip, then per parameter normalize, regularize, update."""
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            log.info("Iteration %d, lr = %g", self.iter, rate)
        self.clip_gradients()
        for param_id in range(len(self._params)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        for blob in self._params:  # Net::Update
            np.subtract(blob.data, blob.diff, out=blob.data)

    # --- state I/O ------------------------------------------------------------------------
    def snapshot_solver_state(self, model_filename: str) -> str:
        if self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5:
            from caffelite.hdf5 import save_solver_state_hdf5

            path = self.snapshot_filename(".solverstate.h5")
            log.info("Snapshotting solver state to HDF5 file %s", path)
            save_solver_state_hdf5(path, self.iter, model_filename, self.current_step, self.history)
            return path
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=model_filename, current_step=self.current_step)
        for h in self.history:
            blob_proto = state.history.add()
            blob_proto.shape.dim.extend(h.shape)
            blob_proto.data.extend(h.ravel().tolist())
        path = self.snapshot_filename(".solverstate")
        log.info("Snapshotting solver state to binary proto file %s", path)
        _atomic_write(path, state.SerializeToString())
        return path

    def _set_history(self, arrays: list[np.ndarray], shapes: list[tuple], source: str) -> None:
        if len(arrays) != len(self.history):
            raise FileFormatError("Incorrect length of history blobs. (the state holds %d, this %s solver on "
                                  "this net needs %d)" % (len(arrays), self.type, len(self.history)), file=source)
        for i, (values, shape) in enumerate(zip(arrays, shapes)):
            if values.size != self.history[i].size:
                raise FileFormatError("history blob %d has shape %s (%d values); the parameter it belongs to "
                                      "has shape %s" % (i, list(shape), values.size, list(self.history[i].shape)),
                                      file=source)
            self.history[i][...] = values.reshape(self.history[i].shape)

    def restore_solver_state_binary(self, path: str) -> None:
        state = read_binary_proto(path, caffe_pb2.SolverState(), "solver state (.solverstate)")
        if state.HasField("learned_net"):
            self.net.copy_from(self._learned_net_path(state.learned_net, path))
        self._set_history([proto_values(bp) for bp in state.history], [proto_shape(bp) for bp in state.history], path)
        self.iter = state.iter
        self.current_step = state.current_step
        log.info("SGDSolver: restored iteration %d from %s", self.iter, path)

    def restore_solver_state_hdf5(self, path: str) -> None:
        from caffelite.hdf5 import load_solver_state_hdf5

        it, learned_net, current_step, history = load_solver_state_hdf5(path)
        if learned_net is not None:
            self.net.copy_from(self._learned_net_path(learned_net, path))
        self._set_history(history, [h.shape for h in history], path)
        self.iter, self.current_step = it, current_step


@register_solver
class NesterovSolver(SGDSolver):
    r"""Nesterov's accelerated gradient.

    .. math:: V_{t+1} = \mu V_t + \eta_i g, \qquad W_{t+1} = W_t - ((1 + \mu) V_{t+1} - \mu V_t)

    Caffe: src/caffe/solvers/nesterov_solver.cpp.
    """

    type = "Nesterov"

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self._params[param_id]
        local_rate = F32(rate) * self._lr_mults[param_id]
        momentum = self.param.momentum
        history = self.history[param_id]
        update = history.copy()
        _axpby(local_rate, blob.diff, momentum, history)
        _axpby(1.0 + F32(momentum), history, -momentum, update)
        blob.diff[...] = update


@register_solver
class AdaGradSolver(SGDSolver):
    r"""AdaGrad: :math:`H \mathrel{+}= g^2`, :math:`\Delta = \eta_i\, g / (\sqrt{H} + \delta)`.

    Caffe: src/caffe/solvers/adagrad_solver.cpp.
    """

    type = "AdaGrad"

    def _check_rule(self) -> None:
        if self.param.momentum != 0:
            raise self._error("Momentum cannot be used with AdaGrad. (momentum %g)" % self.param.momentum,
                              "momentum")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self._params[param_id]
        local_rate = F32(rate) * self._lr_mults[param_id]
        history = self.history[param_id]
        diff = blob.diff
        history += np.square(diff)
        update = np.sqrt(history)
        update += F32(self.param.delta)
        np.divide(diff, update, out=update)
        np.multiply(update, local_rate, out=diff)


@register_solver
class RMSPropSolver(SGDSolver):
    r"""RMSProp: :math:`H = (1-\rho) g^2 + \rho H`, :math:`\Delta = \eta_i\, g / (\sqrt{H} + \delta)`.

    Caffe: src/caffe/solvers/rmsprop_solver.cpp.
    """

    type = "RMSProp"

    def _check_rule(self) -> None:
        if self.param.momentum != 0:
            raise self._error("Momentum cannot be used with RMSProp. (momentum %g)" % self.param.momentum,
                              "momentum")
        if not 0 <= self.param.rms_decay < 1:
            raise self._error("rms_decay should lie between 0 and 1. (rms_decay %g)" % self.param.rms_decay,
                              "rms_decay")

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self._params[param_id]
        local_rate = F32(rate) * self._lr_mults[param_id]
        decay = self.param.rms_decay
        history = self.history[param_id]
        diff = blob.diff
        _axpby(1.0 - F32(decay), np.square(diff), decay, history)
        update = np.sqrt(history)
        update += F32(self.param.delta)
        np.divide(diff, update, out=update)
        np.multiply(update, local_rate, out=diff)


@register_solver
class AdaDeltaSolver(SGDSolver):
    r"""AdaDelta (history of squared gradients :math:`G`, of squared updates :math:`U`).

    .. math:: G = (1-\mu) g^2 + \mu G, \quad
              \Delta = g \sqrt{(U + \delta) / (G + \delta)}, \quad
              U = (1-\mu) \Delta^2 + \mu U, \quad \text{step} = \eta_i \Delta

    Caffe: src/caffe/solvers/adadelta_solver.cpp.
    """

    type = "AdaDelta"
    history_sets = 2

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self._params[param_id]
        local_rate = F32(rate) * self._lr_mults[param_id]
        momentum, delta = self.param.momentum, F32(self.param.delta)
        grad_history = self.history[param_id]
        update_history = self.history[len(self._params) + param_id]
        diff = blob.diff
        _axpby(1.0 - F32(momentum), np.square(diff), momentum, grad_history)
        update = (update_history + delta) / (grad_history + delta)
        diff *= np.sqrt(update)
        _axpby(1.0 - F32(momentum), np.square(diff), momentum, update_history)
        diff *= local_rate


@register_solver
class AdamSolver(SGDSolver):
    r"""Adam, with Caffe's bias correction folded into the rate (:math:`t` = iter + 1).

    .. math:: m = \beta_1 m + (1-\beta_1) g, \quad v = \beta_2 v + (1-\beta_2) g^2, \quad
              \Delta = \eta_i \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m}{\sqrt{v} + \hat\epsilon}

    Caffe: src/caffe/solvers/adam_solver.cpp.
    """

    type = "Adam"
    history_sets = 2

    def compute_update_value(self, param_id: int, rate: float) -> None:
        blob = self._params[param_id]
        local_rate = F32(rate) * self._lr_mults[param_id]
        beta1, beta2 = float(F32(self.param.momentum)), float(F32(self.param.momentum2))
        m = self.history[param_id]
        v = self.history[len(self._params) + param_id]
        t = self.iter + 1
        correction = F32(math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
        diff = blob.diff
        _axpby(1.0 - F32(beta1), diff, beta1, m)
        _axpby(1.0 - F32(beta2), np.square(diff), beta2, v)
        update = np.sqrt(v)
        update += F32(self.param.delta)
        np.divide(m, update, out=update)
        np.multiply(update, local_rate * correction, out=diff)
