r"""The Solver loop: build the train and test nets, step, test, snapshot and restore.

Caffe: src/caffe/solver.cpp, include/caffe/solver_factory.hpp (the registry);
pycaffe: python/caffe/_caffe.cpp (the ``Solver`` surface).

One iteration (``Solver.step``) is Caffe's: zero the parameter diffs, run ``iter_size``
forward/backward passes, then ``apply_update``, which each update rule implements
(:mod:`caffelite.solvers.sgd_solvers`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np

from caffelite.common import TEST, TRAIN, set_random_seed
from caffelite.errors import CaffeFileNotFoundError, CaffeliteError, SolverError
from caffelite.net import Net
from caffelite.proto import caffe_pb2
from caffelite.protoio import atomic_write
from caffelite.solvers.lr_policies import LR_POLICIES
from caffelite.upgrade import read_net_param, read_solver_param, upgrade_solver_as_needed

__all__ = ["Solver", "create_solver", "get_solver", "register_solver", "snapshot_prefix_property",
           "solver_type_list"]

log = logging.getLogger("caffelite.solver")


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


def snapshot_prefix_property(param, solver_file: str) -> bool:
    """Caffe's UpgradeSnapshotPrefixProperty: no prefix → the solver file's path without extension;
    a directory → that directory joined with the solver file's stem.  Returns whether it changed."""
    stem = os.path.splitext(os.fspath(solver_file))[0]
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = stem
        log.info("snapshot_prefix was not specified and is set to %s", param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))
        log.info("snapshot_prefix was a directory and is replaced to %s", param.snapshot_prefix)
    else:
        return False
    return True


def solver_param(source) -> tuple[caffe_pb2.SolverParameter, str | None]:
    """A SolverParameter (copied and upgraded) or a solver file's path -> (param, path or None); a file's
    ``snapshot_prefix`` defaults to its path without the extension (see snapshot_prefix_property)."""
    if isinstance(source, caffe_pb2.SolverParameter):
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
    param, path = solver_param(source)
    return create_solver(param, path)


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
            param, path = solver_param(source)
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
        index = 0
        for name, blob, weight in net.output_blob_table():  # Caffe's outputs, by blob index
            values = np.asarray(blob.data).ravel() if scores is None else None
            for k in range(blob.count):
                value = float(values[k]) if scores is None else scores[index]
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
            outputs = net.output_blob_table()
            values = np.concatenate([np.asarray(blob.data, dtype=np.float64).ravel()
                                     for _, blob, _ in outputs]) if outputs else np.zeros(0)
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
            atomic_write(model, self.net.to_proto(self.param.snapshot_diff).SerializeToString())
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
