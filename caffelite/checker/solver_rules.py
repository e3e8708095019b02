"""Solver rules of ``caffelite check``: a learning-rate policy Caffe knows, and fields that agree with it.

Caffe: src/caffe/solver.cpp (``GetLearningRate``), src/caffe/util/upgrade_proto.cpp (``solver_type``).
"""

from __future__ import annotations

from caffelite.checker.codes import ERROR, WARNING
from caffelite.checker.report import Reporter, did_you_mean
from caffelite.proto import caffe_pb2

__all__ = ["LR_POLICIES", "check_solver_param"]

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def check_solver_param(checker: Reporter, p) -> None:
    """Solver diagnostics: lr_policy and contradictory fields."""
    def at(name):
        return checker.tree.get(name)

    if not p.lr_policy:
        checker.report("solver-lr-policy", "lr_policy is not set: Caffe aborts at the first iteration with "
                       "'Unknown learning rate policy: '.", at("base_lr"),
                       hint="add lr_policy: \"fixed\" (or step, multistep, exp, inv, poly, sigmoid)")
    elif p.lr_policy not in LR_POLICIES:
        checker.report("solver-lr-policy", "Unknown learning rate policy: %s.%s" % (
            p.lr_policy, did_you_mean(p.lr_policy, LR_POLICIES)), at("lr_policy"))
    policy = p.lr_policy
    uses = {"fixed": set(), "step": {"gamma", "stepsize"}, "exp": {"gamma"}, "inv": {"gamma", "power"},
            "multistep": {"gamma", "stepvalue"}, "poly": {"power"}, "sigmoid": {"gamma", "stepsize"}}
    if policy in uses:
        need = uses[policy]
        for fld in sorted(need):
            is_set = len(p.stepvalue) > 0 if fld == "stepvalue" else p.HasField(fld)
            if not is_set:
                sev = ERROR if fld == "stepsize" and policy == "step" else WARNING
                effect = {"gamma": "gamma defaults to 0, so the learning rate drops to 0",
                          "stepsize": "stepsize 0 divides by zero in Caffe's step policy" if policy == "step"
                          else "stepsize defaults to 0",
                          "power": "power defaults to 0, so the policy keeps the rate fixed",
                          "stepvalue": "without stepvalue the rate never changes"}[fld]
                checker.report("solver-fields", "lr_policy \"%s\" needs %s: %s." % (policy, fld, effect),
                               at("lr_policy"), severity=sev)
        for fld in ("stepsize", "stepvalue", "power"):
            is_set = len(p.stepvalue) > 0 if fld == "stepvalue" else p.HasField(fld)
            if is_set and fld not in need:
                checker.report("solver-fields", "%s is set but lr_policy \"%s\" does not use it." % (fld, policy),
                               at(fld))
        values = list(p.stepvalue)
        if any(b <= a for a, b in zip(values, values[1:])):
            checker.report("solver-fields", "stepvalue must increase (%s): Caffe steps through them in order."
                           % values, at("stepvalue"))
    if p.HasField("solver_type") and p.HasField("type"):
        checker.report("solver-fields", "both solver_type and type are set: Caffe's upgrade aborts ('old "
                       "solver_type field (enum) and new type field (string) cannot be both specified').",
                       at("solver_type"), severity=ERROR)
    elif p.HasField("solver_type"):
        checker.report("legacy-format", "solver_type is deprecated; write type: \"%s\"."
                       % caffe_pb2.SolverParameter.SolverType.Name(p.solver_type).replace("ADA", "Ada")
                       .replace("NESTEROV", "Nesterov").replace("RMSPROP", "RMSProp").replace("ADAM", "Adam"),
                       at("solver_type"))
    solver = p.type
    if p.HasField("solver_type") and not p.HasField("type"):
        solver = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}.get(
            p.solver_type, "SGD")
    if solver in ("AdaGrad", "RMSProp") and p.momentum != 0:
        checker.report("solver-fields", "Momentum cannot be used with %s (Caffe CHECK; momentum %g)."
                       % (solver, p.momentum), at("momentum"), severity=ERROR)
    nets = [f for f in ("net", "net_param", "train_net", "train_net_param") if p.HasField(f)]
    if len(nets) > 1:
        checker.report("solver-fields", "%s are mutually exclusive: give the train net once (Caffe CHECK)."
                       % ", ".join(nets), at(nets[1]), severity=ERROR)
    if not p.HasField("base_lr"):
        checker.report("solver-fields", "base_lr is not set (0): nothing is learned.", None)
    num_tests = len(p.test_net_param) + len(p.test_net)
    generic = p.HasField("net") or p.HasField("net_param")
    if (len(p.test_iter) < num_tests) if generic else (len(p.test_iter) != num_tests):
        besides = " besides the generic net" if generic else ""
        checker.report("solver-fields", "test_iter must be specified for each test network (Caffe CHECK: %d test_iter, "
                       "%d test net(s)%s)." % (len(p.test_iter), num_tests, besides),
                       at("test_iter") or at("test_net"), severity=ERROR)
    instances = max(len(p.test_iter), num_tests) if generic else num_tests
    if len(p.test_state) and len(p.test_state) != instances:
        checker.report("solver-fields", "test_state must be unspecified or specified once per test net (Caffe CHECK: "
                       "%d test_state, %d test net(s))." % (len(p.test_state), instances), at("test_state"),
                       severity=ERROR)
    if len(p.test_iter) and not p.test_interval:
        checker.report("solver-fields", "test_iter is set but test_interval is 0: Caffe never tests.",
                       at("test_iter"))
