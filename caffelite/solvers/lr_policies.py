r"""Learning-rate policies: pure functions of the solver parameters and the iteration.

Caffe: src/caffe/solvers/sgd_solver.cpp (``SGDSolver::GetLearningRate``).  Each policy takes
``(param, iter, current_step)`` and returns ``(rate, current_step)``: pure, so a restored solver
(which restores current_step) continues exactly.  Rates are computed in float32, as Caffe's are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from caffelite.errors import SolverError

__all__ = ["LR_POLICIES", "learning_rate", "lr_fixed", "lr_step", "lr_exp", "lr_inv", "lr_multistep", "lr_poly",
           "lr_sigmoid"]

log = logging.getLogger("caffelite.solver")
F32 = np.float32


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
