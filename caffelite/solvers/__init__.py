"""Solvers: learning-rate policies, the Solver loop, the six update rules, signal handling.

Caffe: src/caffe/solver.cpp, src/caffe/solvers/*_solver.cpp, include/caffe/sgd_solvers.hpp,
src/caffe/util/signal_handler.cpp.

===============  ================================================================================
lr_policies      ``lr_policy`` as pure functions (``learning_rate``)
solver           ``Solver``: nets, step, test, snapshot / restore; the registry and ``get_solver``
sgd_solvers      the update rules: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam
signals          ``SignalHandler``: Ctrl-C / SIGHUP as stop / snapshot actions
===============  ================================================================================
"""

from caffelite.solvers.lr_policies import (
    LR_POLICIES,
    learning_rate,
    lr_exp,
    lr_fixed,
    lr_inv,
    lr_multistep,
    lr_poly,
    lr_sigmoid,
    lr_step,
)
from caffelite.solvers.sgd_solvers import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
)
from caffelite.solvers.signals import ACTIONS, SignalHandler
from caffelite.solvers.solver import (
    Solver,
    create_solver,
    get_solver,
    register_solver,
    snapshot_prefix_property,
    solver_param,
    solver_type_list,
)

__all__ = [
    "LR_POLICIES", "learning_rate", "lr_fixed", "lr_step", "lr_exp", "lr_inv", "lr_multistep", "lr_poly",
    "lr_sigmoid", "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
    "AdaDeltaSolver", "AdamSolver", "get_solver", "create_solver", "register_solver", "solver_type_list",
    "SignalHandler", "snapshot_prefix_property", "solver_param", "ACTIONS",
]
