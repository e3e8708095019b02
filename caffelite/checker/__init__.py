"""``caffelite check``: find what BVLC Caffe would abort on, or silently do, in a net or solver.

The checker parses the prototxt (keeping every field's line and column, see
:mod:`caffelite.textloc`), upgrades it, filters it by phase (TRAIN and TEST unless one is
asked for) with the rules ``Net`` builds with (:mod:`caffelite.net_passes`), and infers every
blob's shape (:mod:`caffelite.shape_inference`).  What Caffe would refuse, or accept with
surprising results, becomes a :class:`Diagnostic` ``file:line:col: severity: [code] message``.
Shapes that cannot be known (data files absent, Python layers not imported, layers caffelite
does not implement yet) are reported as unknown, which is never an error.

Every code, its severity and the Caffe behaviour behind it is in :data:`CODES`
(``caffelite check --list-codes`` prints them).  Python-layer modules are never imported unless
``allow_python_layers`` is true: a prototxt may come from anyone.

Modules: :mod:`~caffelite.checker.codes` (the documented codes), :mod:`~caffelite.checker.report`
(diagnostics, their places and text/JSON output), :mod:`~caffelite.checker.net_rules`,
:mod:`~caffelite.checker.solver_rules`, and :mod:`~caffelite.checker.driver` (files in, results out).
"""

# Besides __all__, the names caffelite.checker held when it was one module stay importable from it.
from caffelite.checker.codes import CODES, ERROR, FORK_FIELDS, NOTE, WARNING, list_codes  # noqa: F401
from caffelite.checker.driver import check_file, check_text, infer_shapes, parse_shape  # noqa: F401
from caffelite.checker.net_rules import (  # noqa: F401
    BVLC_TYPES,
    FILE_DATA_TYPES,
    LABELED_TYPES,
    LARGE_SPATIAL,
    LOSS_TYPES,
    NO_BACKWARD,
    NORMALIZED_LOSSES,
    SOFTMAX_REWRITE,
    WEIGHTED_TYPES,
)
from caffelite.checker.report import CheckResult, Diagnostic
from caffelite.checker.solver_rules import LR_POLICIES, check_solver_param  # noqa: F401

__all__ = ["CODES", "Diagnostic", "CheckResult", "check_file", "check_text", "list_codes", "infer_shapes"]
