"""The driver of ``caffelite check``: read the file, parse it, and run the net or solver rules on it.

A net is parsed keeping every field's line and column (:mod:`caffelite.textloc`), checked for
fields BVLC Caffe does not have, upgraded, then checked in each NetState it is meant for (TRAIN
and TEST, and each stage the net mentions, unless one is asked for).  A solver is checked, with
the nets it gives inline and the net files it names that exist here.
"""

from __future__ import annotations

import os

from google.protobuf import text_format

from caffelite.checker.codes import ERROR, NOTE, WARNING
from caffelite.checker.net_rules import LOSS_TYPES, NetChecker
from caffelite.checker.report import CheckResult, Diagnostic, error_text
from caffelite.checker.solver_rules import check_solver_param
from caffelite.common import TEST, TRAIN
from caffelite.errors import CaffeliteError
from caffelite.proto import caffe_pb2
from caffelite.shape_inference import stage_variants
from caffelite.textloc import Field, Message, parse_locations
from caffelite.upgrade import upgrade_net_as_needed

__all__ = ["check_file", "check_text", "infer_shapes", "parse_shape"]


def parse_shape(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` or ``1x3x224x224`` as a shape tuple."""
    parts = text.replace("x", ",").replace("X", ",").replace("×", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise ValueError("bad shape %r: expected integers like 1,3,224,224" % text) from None
    if any(d < 0 for d in dims):
        raise ValueError("bad shape %r: negative dimension" % text)
    return dims


def _read(path: str) -> tuple[str | None, str | None]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, "cannot read %s: %s" % (path, e.strerror or e)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, "%s is not a UTF-8 text prototxt (byte %d); is it a binary .caffemodel?" % (path, e.start)


def _parse(checker: NetChecker, message) -> bool:
    checker.check_fields(checker.tree, message.DESCRIPTOR)
    try:
        text_format.Parse(checker.text, message, allow_unknown_field=True)
    except text_format.ParseError as e:
        msg = str(e)
        prefix = "%s:%s : " % (e.GetLine(), e.GetColumn())
        msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        if msg.startswith("'") and "': " in msg:  # protobuf quotes the offending line first
            msg = msg.split("': ", 1)[1]
        if "has no field named" in msg and any(d.code == "unknown-field" for d in checker.diags.values()):
            return False
        where = Field("", e.GetLine() or 0, e.GetColumn() or 1)
        checker.report("parse-error", msg.replace("caffelite.", ""), where if e.GetLine() else None)
        return False
    except (ValueError, TypeError) as e:
        checker.report("parse-error", str(e))
        return False
    return True


def _looks_like_solver(text: str) -> bool:
    tree = parse_locations(text)
    names = {f.name for f in tree.fields}
    solver_only = {"base_lr", "lr_policy", "max_iter", "net", "train_net", "solver_mode", "test_iter",
                   "snapshot_prefix", "solver_type", "net_param"}
    return bool(names & solver_only) and not names & {"layer", "layers"}


def check_text(text: str, source: str = "<string>", *, inputs: dict | None = None,
               phases: list[int] | None = None, stages: list[str] | None = None,
               allow_python_layers: bool = False, solver_base_lr: float | None = None) -> CheckResult:
    """Check prototxt text (a net, or a solver when it looks like one)."""
    if _looks_like_solver(text):
        return _check_solver_text(text, source, inputs or {}, phases, allow_python_layers)
    checker = NetChecker(source, text, inputs or {}, allow_python_layers, solver_base_lr)
    result = CheckResult(source)
    param = caffe_pb2.NetParameter()
    if _parse(checker, param):
        _check_net(checker, param, phases, stages)
    result.diagnostics = checker.finish()
    result.shapes = checker.shapes
    return result


def _check_net(checker: NetChecker, param, phases, stages=None) -> None:
    legacy = len(param.layers) > 0 or len(param.input_dim) > 0
    if legacy:
        checker.report("legacy-format", "net in a deprecated format (%s); Caffe upgrades it on load. "
                       "`caffelite upgrade` writes the current format." %
                       ("V1 `layers`" if len(param.layers) else "net-level input_dim"),
                       checker.tree.fields[0] if checker.tree.fields else None)
    try:
        upgrade_net_as_needed(param, checker.source)
    except CaffeliteError as e:
        checker.report("upgrade-failed", error_text(e))
        return
    if len(param.layers) and not len(param.layer):
        checker.report("upgrade-failed", "this V0/V1 net could not be upgraded here (caffelite.upgrade does not "
                       "convert it yet); nothing else checked.", severity=NOTE)
        return
    checker.map_layers(param)
    checker.trainable_net = any(lp.type in LOSS_TYPES for lp in param.layer)
    for phase in phases or [TRAIN, TEST]:
        name = "TRAIN" if phase == TRAIN else "TEST"
        variants = [(given, "%s stage=%s" % (name, ",".join(given)) if given else name)
                    for given in stage_variants(param, stages)]
        if len(variants) > 1:  # the net is meant to be run with a stage: check each, and without one
            variants[0] = ((), name + " (no stage)")
        for given, label in variants:
            checker.analyse(param, phase, given, label)
        labels = {label for _, label in variants}
        for d in checker.diags.values():
            seen = labels.intersection(d.phases)
            if len(labels) > 1 and d.severity == ERROR and seen and seen != labels:
                d.severity = WARNING  # Caffe builds the net in the other stages
                d.hint = d.hint or ("an error only in some NetStates; it does not occur in %s. Check one "
                                    "state with --stage NAME" % ", ".join(sorted(labels - seen)))
    checker.phase_name = ""
    checker.all_phases = sorted(checker.shapes)


def _check_solver_text(text, source, inputs, phases, allow_python) -> CheckResult:
    """Check a solver, the nets it gives inline, and the net files it names that exist here."""
    checker = NetChecker(source, text, inputs, allow_python)
    result = CheckResult(source)
    param = caffe_pb2.SolverParameter()
    extra: list[Diagnostic] = []
    if _parse(checker, param):
        check_solver_param(checker, param)
        base_lr = param.base_lr if param.HasField("base_lr") else None
        for fld in ("net_param", "train_net_param"):
            if not param.HasField(fld):
                continue
            sub = NetChecker(source, text, inputs, allow_python, base_lr)  # locations inside the solver file
            sub.tree = checker.tree.get(fld).message or Message()
            _check_net(sub, getattr(param, fld), phases)
            for d in sub.finish():
                checker.diags[(d.code, d.line, d.column, d.message)] = d
            checker.shapes.update(sub.shapes)
        for fld in ("net", "train_net"):
            path = getattr(param, fld)
            if path and os.path.isfile(path):  # Caffe resolves it against the working directory
                net_text, _ = _read(path)
                if net_text is not None:
                    extra += check_text(net_text, path, inputs=inputs, phases=phases,
                                        allow_python_layers=allow_python, solver_base_lr=base_lr).diagnostics
    result.diagnostics = checker.finish() + extra
    result.shapes = checker.shapes
    return result


def check_file(path: str, *, solver: str | None = None, inputs: dict | None = None,
               phases: list[int] | None = None, stages: list[str] | None = None,
               allow_python_layers: bool = False) -> CheckResult:
    """Check a net prototxt (and optionally a solver): what ``caffelite check`` prints."""
    path = os.fspath(path)
    text, err = _read(path)
    if text is None:
        result = CheckResult(path, unreadable=True)
        result.diagnostics.append(Diagnostic("file-unreadable", err, path))
        return result
    base_lr = None
    solver_result = None
    if solver is not None:
        stext, serr = _read(solver)
        if stext is None:
            result = CheckResult(path, unreadable=True)
            result.diagnostics.append(Diagnostic("file-unreadable", serr, solver))
            return result
        solver_result = _check_solver_text(stext, solver, inputs or {}, phases, allow_python_layers)
        sp = caffe_pb2.SolverParameter()
        try:
            text_format.Parse(stext, sp, allow_unknown_field=True)
            base_lr = sp.base_lr if sp.HasField("base_lr") else None
        except text_format.ParseError:
            pass
    result = check_text(text, path, inputs=inputs, phases=phases, stages=stages,
                        allow_python_layers=allow_python_layers, solver_base_lr=base_lr)
    if solver_result is not None:
        result.diagnostics = solver_result.diagnostics + result.diagnostics
    return result


def infer_shapes(path: str, phase: int = TEST, inputs: dict | None = None, stages: list[str] | None = None,
                 allow_python_layers: bool = False) -> dict[str, list[int] | None]:
    """Blob name -> shape (None when unknown) of a net in one phase, as the checker infers them."""
    result = check_file(path, inputs=inputs, phases=[phase], stages=list(stages or []),
                        allow_python_layers=allow_python_layers)
    return next(iter(result.shapes.values()), {})
