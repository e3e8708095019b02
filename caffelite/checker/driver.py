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
from caffelite.suggest import parse_error_hint
from caffelite.textloc import Field, Message, parse_locations
from caffelite.upgrade import upgrade_net_as_needed

__all__ = ["check_file", "check_text", "infer_shapes", "parse_shape", "solver_net_states"]


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
        msg = msg.replace("caffelite.", "").rstrip() + parse_error_hint(msg)
        checker.report("parse-error", msg, where if e.GetLine() else None)
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
               allow_python_layers: bool = False, solver_base_lr: float | None = None,
               solver_states: list | None = None, weights: dict | None = None,
               ignore: list[str] | None = None) -> CheckResult:
    """Check prototxt text (a net, or a solver when it looks like one).

    ``solver_states``: the (phase, NetState, test net) a solver builds this net in (:func:`solver_net_states`);
    without it the net is checked in TRAIN and TEST, with and without each stage its rules mention.
    ``weights``: layer name -> LayerParameter of a .caffemodel (:func:`read_weights`); ``ignore``: codes
    not to report.
    """
    if _looks_like_solver(text):
        return _ignored(_check_solver_text(text, source, inputs or {}, phases, allow_python_layers,
                                           weights=weights), ignore)
    checker = NetChecker(source, text, inputs or {}, allow_python_layers, solver_base_lr, weights)
    result = CheckResult(source)
    param = caffe_pb2.NetParameter()
    if _parse(checker, param):
        _check_net(checker, param, phases, stages, solver_states)
    result.diagnostics = checker.finish()
    result.shapes = checker.shapes
    return _ignored(result, ignore)


def _ignored(result: CheckResult, ignore) -> CheckResult:
    if ignore:
        result.diagnostics = [d for d in result.diagnostics if d.code not in set(ignore)]
    return result


def read_weights(paths: str) -> dict:
    """Layer name -> LayerParameter (with its blobs) of .caffemodels, upgraded as Caffe reads them.

    ``paths``: comma-separated, as Caffe's ``-weights``; a later file's layer replaces an earlier one's.
    """
    from caffelite.upgrade import read_net_param_binary

    layers = {}
    for path in (p for p in paths.split(",") if p):
        layers.update((lp.name, lp) for lp in read_net_param_binary(path).layer)
    return layers


def _state_label(phase: int, state, instance: int | None) -> str:
    label = "TRAIN" if phase == TRAIN else "TEST"
    if instance is not None:
        label += " net #%d" % instance
    if len(state.stage):
        label += " stage=%s" % ",".join(state.stage)
    if state.level:
        label += " level=%d" % state.level
    return label


def solver_net_states(sp, role: tuple[str, int]) -> list[tuple[int, object, int | None]]:
    """The states a solver builds one of its nets in, as Caffe's Solver::InitTrainNet/InitTestNets do.

    ``role``: ("net", 0) for the generic net (``net``/``net_param``: the train net and every test net
    that has no net of its own), ("train_net", 0), or ("test_net", i) for the i-th of
    ``test_net_param`` then ``test_net``.  Returns (phase, the solver's NetState to merge after the
    net's own, test-net instance or None) for each state; Caffe merges phase, then the net's
    ``state``, then the solver's ``train_state``/``test_state(i)``.
    """
    kind, index = role
    out = []
    if kind in ("net", "train_net"):
        out.append((TRAIN, sp.train_state, None))
    num_tests = len(sp.test_net_param) + len(sp.test_net)
    if kind == "net":
        instances = list(range(num_tests, len(sp.test_iter)))
    elif kind == "test_net":
        instances = [index]
    else:
        instances = []
    for i in instances:
        out.append((TEST, sp.test_state[i] if i < len(sp.test_state) else caffe_pb2.NetState(),
                    i if len(sp.test_iter) > 1 else None))
    return out


def _check_net(checker: NetChecker, param, phases, stages=None, solver_states=None) -> None:
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
    if solver_states is not None:  # exactly the states the solver builds: an error in any one is an error
        seen = set()
        for phase, solver_state, instance in solver_states:
            state = caffe_pb2.NetState(phase=phase)
            state.MergeFrom(param.state)
            state.MergeFrom(solver_state)
            if phases and state.phase not in phases:
                continue
            key = state.SerializeToString(deterministic=True)
            if key in seen:
                continue
            seen.add(key)
            checker.analyse(param, state.phase, tuple(state.stage), _state_label(state.phase, state, instance),
                            state=state)
        checker.phase_name = ""
        checker.all_phases = sorted(checker.shapes)
        return
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


def _solver_net_refs(sp) -> list[tuple[str, object, tuple[str, int]]]:
    """Each net a solver gives: (field, path or inline NetParameter, role for :func:`solver_net_states`)."""
    refs = []
    for fld, role in (("net_param", ("net", 0)), ("train_net_param", ("train_net", 0)),
                      ("net", ("net", 0)), ("train_net", ("train_net", 0))):
        if sp.HasField(fld):
            refs.append((fld, getattr(sp, fld), role))
    for i, net in enumerate(sp.test_net_param):
        refs.append(("test_net_param", net, ("test_net", i)))
    for j, path in enumerate(sp.test_net):
        refs.append(("test_net", path, ("test_net", len(sp.test_net_param) + j)))
    return refs


def _same_file(named: str, path: str) -> bool:
    """Whether the solver's net path (relative to where Caffe runs) names ``path``."""
    if os.path.exists(named) and os.path.exists(path):
        return os.path.samefile(named, path)
    named, path = os.path.normpath(named), os.path.normpath(os.path.abspath(path))
    return path == os.path.abspath(named) or path.endswith(os.sep + named.lstrip(os.sep + "."))


def _states_for_path(sp, path: str) -> list:
    """The states the solver builds the net file ``path`` in (every state when it names no such file)."""
    states = []
    for _fld, ref, role in _solver_net_refs(sp):
        if isinstance(ref, str) and _same_file(ref, path):
            states += solver_net_states(sp, role)
    if not states:  # the solver names another copy of it: the train net and every test net
        states = [(TRAIN, sp.train_state, None)] + [
            (TEST, sp.test_state[i] if i < len(sp.test_state) else caffe_pb2.NetState(),
             i if len(sp.test_iter) > 1 else None) for i in range(len(sp.test_iter))]
    return states


def _check_solver_text(text, source, inputs, phases, allow_python, skip: str | None = None,
                       weights: dict | None = None) -> CheckResult:
    """Check a solver, the nets it gives inline, and the net files it names that exist here (but ``skip``).

    Each net is checked in the states the solver builds it in (train_state, each test_state).
    """
    checker = NetChecker(source, text, inputs, allow_python)
    result = CheckResult(source)
    param = caffe_pb2.SolverParameter()
    extra: list[Diagnostic] = []
    if _parse(checker, param):
        check_solver_param(checker, param)
        base_lr = param.base_lr if param.HasField("base_lr") else None
        inline_trees = {"test_net_param": [f.message for f in checker.tree.all("test_net_param")]}
        files: dict[str, list] = {}
        for fld, ref, role in _solver_net_refs(param):
            states = solver_net_states(param, role)
            if not isinstance(ref, str):
                sub = NetChecker(source, text, inputs, allow_python, base_lr, weights)  # places in the solver file
                if fld == "test_net_param":
                    trees = inline_trees[fld]
                    sub.tree = (trees[role[1]] if role[1] < len(trees) else None) or Message()
                else:
                    sub.tree = checker.tree.get(fld).message or Message()
                _check_net(sub, ref, phases, solver_states=states)
                for d in sub.finish():
                    checker.diags[(d.code, d.line, d.column, d.message)] = d
                checker.shapes.update(sub.shapes)
            elif os.path.isfile(ref) and not (skip is not None and _same_file(ref, skip)):
                files.setdefault(os.path.realpath(ref), [ref, []])[1].extend(states)
        for path, states in files.values():  # Caffe resolves the paths against the working directory
            net_text, _ = _read(path)
            if net_text is not None:
                extra += check_text(net_text, path, inputs=inputs, phases=phases, allow_python_layers=allow_python,
                                    solver_base_lr=base_lr, solver_states=states, weights=weights).diagnostics
    result.diagnostics = checker.finish() + extra
    result.shapes = checker.shapes
    return result


def check_file(path: str, *, solver: str | None = None, inputs: dict | None = None,
               phases: list[int] | None = None, stages: list[str] | None = None,
               allow_python_layers: bool = False, weights: str | None = None,
               ignore: list[str] | None = None) -> CheckResult:
    """Check a net prototxt (and optionally a solver): what ``caffelite check`` prints.

    With ``solver``, the net is checked in exactly the states the solver builds it in (its
    train_state, each test_state), and each diagnostic is reported once.  ``weights``: the
    .caffemodel(s) the net starts from (comma-separated; default: the solver's ``weights`` when
    those files exist): checked to fit, and the layers they give need no weight_filler.
    ``ignore``: codes not to report.
    """
    path = os.fspath(path)
    text, err = _read(path)
    if text is None:
        result = CheckResult(path, unreadable=True)
        result.diagnostics.append(Diagnostic("file-unreadable", err, path))
        return result
    base_lr = None
    solver_states = None
    stext = None
    if solver is not None:
        stext, serr = _read(solver)
        if stext is None:
            result = CheckResult(path, unreadable=True)
            result.diagnostics.append(Diagnostic("file-unreadable", serr, solver))
            return result
        sp = caffe_pb2.SolverParameter()
        try:
            text_format.Parse(stext, sp, allow_unknown_field=True)
        except text_format.ParseError:
            pass
        else:
            base_lr = sp.base_lr if sp.HasField("base_lr") else None
            if stages is None:
                solver_states = _states_for_path(sp, path)
            named = [w for entry in sp.weights for w in entry.split(",") if w]
            if weights is None and named and all(os.path.isfile(w) for w in named):
                weights = ",".join(named)  # the solver's own weights: what `caffe train` finetunes from
    weight_layers = None
    if weights is not None:
        try:
            weight_layers = read_weights(weights)
        except CaffeliteError as e:
            result = CheckResult(path, unreadable=True)
            result.diagnostics.append(Diagnostic("file-unreadable", "--weights: %s" % error_text(e), weights))
            return result
    solver_result = None
    if stext is not None:
        solver_result = _check_solver_text(stext, solver, inputs or {}, phases, allow_python_layers, skip=path,
                                           weights=weight_layers)
    result = check_text(text, path, inputs=inputs, phases=phases, stages=stages,
                        allow_python_layers=allow_python_layers, solver_base_lr=base_lr,
                        solver_states=solver_states, weights=weight_layers)
    if solver_result is not None:
        result.diagnostics = solver_result.diagnostics + result.diagnostics
    return _ignored(result, ignore)


def infer_shapes(path: str, phase: int = TEST, inputs: dict | None = None, stages: list[str] | None = None,
                 allow_python_layers: bool = False) -> dict[str, list[int] | None]:
    """Blob name -> shape (None when unknown) of a net in one phase, as the checker infers them."""
    result = check_file(path, inputs=inputs, phases=[phase], stages=list(stages or []),
                        allow_python_layers=allow_python_layers)
    return next(iter(result.shapes.values()), {})
