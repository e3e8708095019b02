r"""Caffe's six solvers as one torch optimizer: the same update, in the same order, as Caffe's.

Caffe: src/caffe/solvers/{sgd,nesterov,adagrad,rmsprop,adadelta,adam}_solver.cpp, src/caffe/solver.cpp.

``solver(solver_param_or_path, module)`` returns a :class:`CaffeOptimizer` for the module's
learnable parameters.  The learning-rate schedule lives inside it, as in Caffe (``lr_policy`` at
the optimizer's own ``iter``, with caffelite's pure policy functions), so one ``step()`` is
Caffe's ``ApplyUpdate``:

1. :math:`\eta = \mathrm{policy}(\mathrm{iter})`;
2. clip: if :math:`\lVert g \rVert_2 > c` over all parameters, scale every gradient by :math:`c / \lVert g \rVert_2`;
3. normalize: :math:`g \leftarrow g / \mathrm{iter\_size}` (the caller ran ``iter_size`` backward passes);
4. regularize: :math:`g \leftarrow g + \lambda w` (L2) or :math:`g + \lambda\,\mathrm{sign}(w)` (L1),
   :math:`\lambda` = ``weight_decay`` × ``decay_mult``;
5. the rule's update with :math:`\eta_i = \eta \cdot` ``lr_mult`` (SGD keeps :math:`\eta_i g` inside its
   history: :math:`V \leftarrow \mu V + \eta_i g`, which is not ``torch.optim.SGD``'s form);
6. :math:`w \leftarrow w - \Delta`; ``iter`` += 1.

A training loop::

    net = caffelite.torch.CaffeNet("train.prototxt", phase=caffelite.TRAIN)
    opt = caffelite.torch.solver("solver.prototxt", net)
    for _ in range(max_iter):
        opt.zero_grad()
        for _ in range(opt.param.iter_size):
            net.total_loss(net(**inputs)).backward()
        opt.step()

For torch's own optimizers, :class:`CaffeLR` is Caffe's ``lr_policy`` as an ``LRScheduler``.

Scalars are rounded to float32 as Caffe's ``Dtype`` rounds them, and ``y = a x + b y`` is computed as
``caffe_cpu_axpby`` (scale, then add), so the updates follow caffelite's NumPy solvers to the last bits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import torch

from caffelite.errors import FileFormatError, SolverError
from caffelite.proto import caffe_pb2
from caffelite.solvers import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    learning_rate,
    solver_param,
)

__all__ = ["CaffeOptimizer", "CaffeLR", "solver", "solver_param", "param_groups", "HISTORY_SETS"]

log = logging.getLogger("caffelite.solver")
F32 = np.float32

# caffelite's solver classes by Caffe type: their checks, and the loop of `train --engine torch`
SOLVER_CLASSES = {cls.type: cls for cls in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver,
                                            AdaDeltaSolver, AdamSolver)}
# history blobs per learnable parameter, in Caffe's SolverState order (all of set 0, then all of set 1)
HISTORY_SETS = {name: cls.history_sets for name, cls in SOLVER_CLASSES.items()}


def check_solver_param(param: caffe_pb2.SolverParameter, source: str | None = None) -> None:
    """The checks caffelite's NumPy solver makes (same messages): type, lr_policy, regularization,
    iter_size, and the rule's own (momentum with AdaGrad/RMSProp, rms_decay)."""
    cls = SOLVER_CLASSES.get(param.type)
    if cls is None:
        raise SolverError("Unknown solver type: %s (known types: %s)" % (param.type, ", ".join(HISTORY_SETS)),
                          file=source, field="type")
    probe = cls.__new__(cls)  # the checks only read param, file and iter: no net needed
    probe.param, probe._file, probe.iter = param, source, 0
    probe._check_param()
    probe._check_rule()


def _mults(spec) -> tuple[float, float]:
    """(lr_mult, decay_mult) from a ParamSpec, a mapping or a pair."""
    if spec is None:
        return 1.0, 1.0
    if hasattr(spec, "lr_mult"):
        return float(spec.lr_mult), float(spec.decay_mult)
    if isinstance(spec, dict):
        return float(spec.get("lr_mult", 1.0)), float(spec.get("decay_mult", 1.0))
    lr_mult, decay_mult = spec
    return float(lr_mult), float(decay_mult)


def param_groups(module: torch.nn.Module) -> list[dict]:
    """One group per learnable parameter, in the module's (Caffe's ``learnable_params``) order, with
    its name and Caffe's ``lr_mult`` / ``decay_mult`` (from ``module.param_specs`` when it has one)."""
    specs = getattr(module, "param_specs", None) or {}
    groups, seen = [], set()
    for name, p in module.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        lr_mult, decay_mult = _mults(specs.get(name))
        groups.append({"params": [p], "name": name, "lr_mult": lr_mult, "decay_mult": decay_mult})
    return groups


class CaffeOptimizer(torch.optim.Optimizer):
    r"""Caffe's update rules (``param.type``: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam) as a
    torch optimizer, with Caffe's learning-rate policy, ``iter_size``, ``clip_gradients``, L1/L2
    regularisation and the per-parameter ``lr_mult`` / ``decay_mult``.

    ``params``: groups as :func:`param_groups` makes them (one parameter each, with ``lr_mult`` and
    ``decay_mult``), or plain tensors (multipliers 1).  ``iter`` and ``current_step`` are Caffe's
    solver counters; the history tensors are Caffe's ``history_`` blobs (:meth:`history`).
    Gradients are read from ``p.grad`` (``None`` counts as zero, as Caffe's cleared diffs do).
    """

    def __init__(self, params: Iterable, param: caffe_pb2.SolverParameter, source: str | None = None):
        check_solver_param(param, source)
        groups = []
        for g in params:
            g = dict(g) if isinstance(g, dict) else {"params": [g]}
            if not isinstance(g["params"], list | tuple):
                g["params"] = [g["params"]]
            g.setdefault("lr_mult", 1.0)
            g.setdefault("decay_mult", 1.0)
            groups.append(g)
        super().__init__(groups, {"lr": float(F32(param.base_lr))})
        self.param = param
        self.source = source
        self.iter = 0
        self.current_step = 0
        self.sets = HISTORY_SETS[param.type]
        self._rule = getattr(self, "_update_" + param.type.lower())
        for p in self._params():
            self.state[p]["history"] = [torch.zeros_like(p, memory_format=torch.contiguous_format)
                                        for _ in range(self.sets)]

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    # --- Caffe's state ------------------------------------------------------------------------
    def history(self) -> list[torch.Tensor]:
        """Caffe's ``history_``: set 0 for every parameter, then set 1 (AdaDelta, Adam)."""
        params = self._params()
        return [self.state[p]["history"][k] for k in range(self.sets) for p in params]

    def set_history(self, arrays: list, source: str | None = None) -> None:
        """Load Caffe's ``history_`` blobs (NumPy arrays or tensors, in :meth:`history`'s order)."""
        mine = self.history()
        if len(arrays) != len(mine):
            raise FileFormatError("Incorrect length of history blobs. (the state holds %d, this %s solver on "
                                  "this net needs %d)" % (len(arrays), self.param.type, len(mine)), file=source)
        for i, (h, values) in enumerate(zip(mine, arrays)):
            values = torch.as_tensor(np.asarray(values, dtype=np.float32) if not torch.is_tensor(values) else values)
            if values.numel() != h.numel():
                raise FileFormatError("history blob %d has %d values; the parameter it belongs to has shape %s"
                                      % (i, values.numel(), list(h.shape)), file=source)
            with torch.no_grad():
                h.copy_(values.reshape(h.shape))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["caffe"] = {"iter": self.iter, "current_step": self.current_step}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        caffe = state_dict.pop("caffe", {})
        super().load_state_dict(state_dict)
        self.iter = int(caffe.get("iter", self.iter))
        self.current_step = int(caffe.get("current_step", self.current_step))

    # --- the schedule -------------------------------------------------------------------------
    def learning_rate(self) -> float:
        """Caffe's GetLearningRate at ``self.iter`` (advances ``current_step`` for multistep)."""
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    # --- the update ---------------------------------------------------------------------------
    def _grads(self) -> list[torch.Tensor]:
        grads = []
        for p in self._params():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        return grads

    def clip_gradients(self, grads: list[torch.Tensor]) -> None:
        clip = self.param.clip_gradients
        if clip < 0:
            return
        sumsq = sum(torch.dot(g.reshape(-1), g.reshape(-1)) for g in grads)  # on the device: one sync
        norm = math.sqrt(float(sumsq))
        if norm > clip:
            scale = float(F32(clip / norm))
            log.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale factor %g",
                     norm, clip, scale)
            for g in grads:
                g.mul_(scale)

    @torch.no_grad()
    def step(self, closure=None):
        """Caffe's ApplyUpdate and Net::Update for the gradients in ``p.grad``, then ``iter`` += 1."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rate = self.learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            log.info("Iteration %d, lr = %g", self.iter, rate)
        grads = self._grads()
        self.clip_gradients(grads)
        p = self.param
        for group in self.param_groups:
            group["lr"] = float(F32(rate) * F32(group["lr_mult"]))
            local_rate = F32(rate) * F32(group["lr_mult"])
            local_decay = F32(p.weight_decay) * F32(group["decay_mult"])
            for w in group["params"]:
                g = w.grad
                if p.iter_size != 1:  # Normalize
                    g.mul_(float(F32(1.0 / p.iter_size)))
                if local_decay:  # Regularize: caffe_axpy(local_decay, w or sign(w), g)
                    g.add_(torch.sign(w) if p.regularization_type == "L1" else w, alpha=float(local_decay))
                self._rule(w, g, self.state[w]["history"], local_rate)
                w.sub_(g)  # Net::Update
        self.iter += 1
        return loss

    # each rule turns g into the step Δ in place, as Caffe's ComputeUpdateValue does with the diff
    @staticmethod
    def _axpby(alpha, x, beta, y) -> None:
        """y = alpha x + beta y (caffe_cpu_axpby: scale y, then add alpha x)."""
        y.mul_(float(F32(beta)))
        y.add_(x * float(F32(alpha)))

    def _update_sgd(self, w, g, hist, local_rate) -> None:
        h = hist[0]
        h.mul_(float(F32(self.param.momentum))).add_(g, alpha=float(local_rate))  # caffe_cpu_axpby
        g.copy_(h)

    def _update_nesterov(self, w, g, hist, local_rate) -> None:
        h = hist[0]
        momentum = self.param.momentum
        previous = h.clone()
        self._axpby(local_rate, g, momentum, h)
        update = previous
        self._axpby(1.0 + F32(momentum), h, -momentum, update)
        g.copy_(update)

    def _update_adagrad(self, w, g, hist, local_rate) -> None:
        h = hist[0]
        h.add_(g * g)
        update = torch.sqrt(h).add_(float(F32(self.param.delta)))
        torch.div(g, update, out=update)
        torch.mul(update, float(local_rate), out=g)

    def _update_rmsprop(self, w, g, hist, local_rate) -> None:
        h = hist[0]
        decay = self.param.rms_decay
        self._axpby(1.0 - F32(decay), g * g, decay, h)
        update = torch.sqrt(h).add_(float(F32(self.param.delta)))
        torch.div(g, update, out=update)
        torch.mul(update, float(local_rate), out=g)

    def _update_adadelta(self, w, g, hist, local_rate) -> None:
        grad_history, update_history = hist
        momentum, delta = self.param.momentum, float(F32(self.param.delta))
        self._axpby(1.0 - F32(momentum), g * g, momentum, grad_history)
        update = (update_history + delta) / (grad_history + delta)
        g.mul_(torch.sqrt(update))
        self._axpby(1.0 - F32(momentum), g * g, momentum, update_history)
        g.mul_(float(local_rate))

    def _update_adam(self, w, g, hist, local_rate) -> None:
        m, v = hist
        beta1, beta2 = float(F32(self.param.momentum)), float(F32(self.param.momentum2))
        t = self.iter + 1  # Caffe's t: the update about to be made
        correction = F32(math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
        self._axpby(1.0 - F32(beta1), g, beta1, m)
        self._axpby(1.0 - F32(beta2), g * g, beta2, v)
        update = torch.sqrt(v).add_(float(F32(self.param.delta)))
        torch.div(m, update, out=update)
        torch.mul(update, float(local_rate * correction), out=g)


class CaffeLR(torch.optim.lr_scheduler.LRScheduler):
    r"""Caffe's ``lr_policy`` for any torch optimizer: group lr = :math:`\mathrm{policy}(it)` × the group's
    ``lr_mult`` (1 when it has none), with ``it`` counted by ``step()`` as Caffe's ``iter``.

    :class:`CaffeOptimizer` applies the policy itself; this is for torch's own optimizers
    (``torch.optim.SGD`` has the other momentum form, so the numbers are then not Caffe's).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, solver_param_or_path, last_epoch: int = -1):
        self.param, _ = solver_param(solver_param_or_path)
        self.current_step = 0
        learning_rate(self.param, 0)  # the policy's own checks, before torch calls get_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        rate, self.current_step = learning_rate(self.param, max(self.last_epoch, 0), self.current_step)
        return [float(F32(rate) * F32(g.get("lr_mult", 1.0))) for g in self.optimizer.param_groups]


def solver(solver_param_or_path, module: torch.nn.Module) -> CaffeOptimizer:
    """Caffe's solver for ``module``'s learnable parameters: a :class:`CaffeOptimizer` whose ``step()``
    applies the learning-rate policy, ``clip_gradients``, the ``iter_size`` normalisation, the
    regularisation and the rule of ``type`` exactly as Caffe does.

    ``solver_param_or_path``: a SolverParameter or a solver prototxt; only the update fields are
    used here (the net fields are for ``caffelite train --engine torch``).
    """
    param, path = solver_param(solver_param_or_path)
    return CaffeOptimizer(param_groups(module), param, path)
