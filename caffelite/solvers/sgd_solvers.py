r"""The six update rules, as Caffe's sgd_solvers: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam.

Caffe: include/caffe/sgd_solvers.hpp, src/caffe/solvers/*_solver.cpp.  ``SGDSolver.apply_update``
is Caffe's ``SGDSolver::ApplyUpdate``:

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

import numpy as np

from caffelite.errors import FileFormatError
from caffelite.proto import caffe_pb2
from caffelite.protoio import atomic_write, proto_shape, proto_values, read_binary_proto
from caffelite.solvers.lr_policies import learning_rate
from caffelite.solvers.solver import Solver, register_solver

__all__ = ["SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver"]

log = logging.getLogger("caffelite.solver")
F32 = np.float32


def _axpby(alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> None:
    """y = alpha x + beta y in place (Caffe's caffe_cpu_axpby: scale y, then add)."""
    y *= F32(beta)
    y += F32(alpha) * x


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
        atomic_write(path, state.SerializeToString())
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
