"""Solvers: Caffe's golden trajectories, learning-rate policies, snapshots, signals and the CLI."""

import json
import math
import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest

import caffelite
from caffelite import solvers
from caffelite.cli import main as cli_main
from caffelite.errors import CaffeFileNotFoundError, SolverError, UnsupportedError
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text

HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "solvers"
DIGITS = HERE / "data" / "digits.npz"


# --- golden trajectories (BVLC Caffe), run as ../shared/tools/golden_check.py's `solvers` mode ---
def _digits():
    z = np.load(DIGITS)
    return z["images"].astype(np.float32)[:, None] / 16.0, z["labels"].astype(np.float32)


def _golden_runs():
    runs = []
    for case in sorted(p.name for p in GOLDEN.iterdir() if (p / "trajectory.json").is_file()):
        runs.append(pytest.param(case, False, id=case))
        if (GOLDEN / case / "caffe_snapshot").is_dir():
            runs.append(pytest.param(case, True, id=case + "-from-caffe-snapshot"))
    return runs


def _feed(solver, x, y, it, batch):
    j = (it * batch) % (len(x) - batch)
    solver.net.blobs["data"].data[...] = x[j:j + batch]
    solver.net.blobs["label"].data[...] = y[j:j + batch]


@pytest.mark.parametrize("case, from_caffe", _golden_runs())
def test_golden_trajectory(case, from_caffe, tmp_path, monkeypatch):
    folder = GOLDEN / case
    traj = json.loads((folder / "trajectory.json").read_text())
    steps, batch, resume_at = len(traj["losses"]), traj.get("batch", 16), traj.get("resume_at")
    x, y = _digits()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text((folder / "solver.prototxt").read_text())
    solver = caffelite.get_solver("solver.prototxt")
    solver.net.copy_from(str(GOLDEN / "init.caffemodel"))
    losses, start = [], 0
    if from_caffe:  # the state BVLC Caffe wrote half-way: its files must restore here
        for f in (folder / "caffe_snapshot").iterdir():
            (tmp_path / f.name).write_bytes(f.read_bytes())
        solver.restore("snap_iter_%d.solverstate" % resume_at)
        start, losses = resume_at, list(traj["losses"][:resume_at])
    for it in range(start, steps):
        if resume_at is not None and it == resume_at and not from_caffe:
            solver.snapshot()
            solver = caffelite.get_solver("solver.prototxt")
            solver.restore("snap_iter_%d.solverstate" % it)
        _feed(solver, x, y, it, batch)
        solver.step(1)
        losses.append(float(np.asarray(solver.net.blobs["loss"].data).reshape(-1)[0]))
    ref = np.array(traj["losses"])
    loss_err = np.max(np.abs(np.array(losses) - ref) / np.maximum(1, np.abs(ref)))
    assert loss_err < 1e-3, "loss trajectory differs from Caffe's (rel err %.3g)" % loss_err
    params = {"%s/%d" % (k, i): b.data for k, v in solver.net.params.items() for i, b in enumerate(v)}
    for key, want in np.load(folder / "final_params.npz").items():
        err = np.max(np.abs(params[key] - want)) / max(1.0, float(np.max(np.abs(want))))
        assert err < 1e-3, "%s differs from Caffe's final value (rel err %.3g)" % (key, err)


def test_our_snapshot_is_byte_identical_to_caffes(tmp_path, monkeypatch):
    """Restore Caffe's snapshot, write ours at the same point: the same bytes Caffe wrote."""
    folder = GOLDEN / "adam_resume"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text((folder / "solver.prototxt").read_text())
    for f in (folder / "caffe_snapshot").iterdir():
        (tmp_path / ("caffe_" + f.name)).write_bytes(f.read_bytes())
    state = caffe_pb2.SolverState.FromString((tmp_path / "caffe_snap_iter_15.solverstate").read_bytes())
    assert state.learned_net == "snap_iter_15.caffemodel"
    state.learned_net = "caffe_snap_iter_15.caffemodel"
    (tmp_path / "caffe_snap_iter_15.solverstate").write_bytes(state.SerializeToString())
    solver = caffelite.get_solver("solver.prototxt")
    solver.restore("caffe_snap_iter_15.solverstate")
    solver.snapshot()
    ours = caffe_pb2.SolverState.FromString((tmp_path / "snap_iter_15.solverstate").read_bytes())
    assert ours.learned_net == "snap_iter_15.caffemodel" and ours.iter == 15 and len(ours.history) == 8
    assert (tmp_path / "snap_iter_15.caffemodel").read_bytes() == \
        (tmp_path / "caffe_snap_iter_15.caffemodel").read_bytes()
    state.learned_net = "snap_iter_15.caffemodel"
    assert ours.SerializeToString() == state.SerializeToString()


# --- learning-rate policies -----------------------------------------------------------------
def _sp(**fields):
    return caffe_pb2.SolverParameter(base_lr=0.1, **fields)


@pytest.mark.parametrize("policy, fields, formula", [
    ("fixed", {}, lambda it: 0.1),
    ("step", {"gamma": 0.5, "stepsize": 3}, lambda it: 0.1 * 0.5 ** (it // 3)),
    ("exp", {"gamma": 0.9}, lambda it: 0.1 * 0.9 ** it),
    ("inv", {"gamma": 0.01, "power": 0.75}, lambda it: 0.1 * (1 + 0.01 * it) ** -0.75),
    ("poly", {"power": 2.0, "max_iter": 20}, lambda it: 0.1 * (1 - it / 20) ** 2),
    ("sigmoid", {"gamma": 0.5, "stepsize": 6}, lambda it: 0.1 / (1 + math.exp(-0.5 * (it - 6)))),
])
def test_lr_policy_formula(policy, fields, formula):
    param = _sp(lr_policy=policy, **fields)
    for it in range(0, 20):
        rate, _ = solvers.learning_rate(param, it, 0)
        assert rate == pytest.approx(formula(it), rel=1e-6), (policy, it)


def test_lr_multistep_advances_one_step_per_call():
    param = _sp(lr_policy="multistep", gamma=0.1, stepvalue=[2, 3, 10])
    step, rates = 0, []
    for it in range(12):
        rate, step = solvers.learning_rate(param, it, step)
        rates.append(rate)
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.001] + [0.001] * 6 + [0.0001] * 2, rel=1e-6)
    # a run restored at iteration 10 with current_step 0 catches up one step per iteration, as in Caffe
    assert solvers.learning_rate(param, 10, 0) == (pytest.approx(0.01), 1)
    assert solvers.learning_rate(param, 11, 1) == (pytest.approx(0.001), 2)


def test_lr_step_sets_current_step():
    assert solvers.learning_rate(_sp(lr_policy="step", gamma=0.5, stepsize=4), 9, 0)[1] == 2


@pytest.mark.parametrize("fields, message", [
    ({"lr_policy": "cosine"}, "Unknown learning rate policy: cosine"),
    ({"lr_policy": "step", "gamma": 0.5}, "stepsize must be > 0"),
    ({"lr_policy": "exp", "gamma": -1.0}, "gamma must be >= 0"),
])
def test_lr_policy_errors(fields, message):
    with pytest.raises(SolverError, match=message):
        solvers.learning_rate(_sp(**fields), 1, 0)


# --- a small solver on the digits net -------------------------------------------------------
def _write_solver(folder: Path, body: str, name: str = "solver.prototxt") -> Path:
    (folder / "net.prototxt").write_text((GOLDEN / "net.prototxt").read_text())
    path = folder / name
    path.write_text('net: "net.prototxt"\nsnapshot_prefix: "snap"\nrandom_seed: 3\nmax_iter: 12\n' + body)
    return path


def _train(solver, x, y, upto):
    while solver.iter < upto:
        _feed(solver, x, y, solver.iter, 16)
        solver.step(1)


def _params(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


@pytest.mark.parametrize("body", [
    'type: "Adam" base_lr: 0.01 lr_policy: "fixed"',
    'type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "multistep" gamma: 0.5 stepvalue: 2 stepvalue: 3 '
    'stepvalue: 9',
    'type: "AdaDelta" base_lr: 1 momentum: 0.9 lr_policy: "fixed" snapshot_format: HDF5',
    'type: "Nesterov" base_lr: 0.05 momentum: 0.9 lr_policy: "step" gamma: 0.5 stepsize: 4 weight_decay: 0.01 '
    'snapshot_diff: true snapshot_format: HDF5',
], ids=["adam", "multistep", "adadelta-hdf5", "nesterov-hdf5"])
def test_snapshot_restore_continues_exactly(body, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, body)
    x, y = _digits()
    straight = caffelite.get_solver("solver.prototxt")
    _train(straight, x, y, 12)
    first = caffelite.get_solver("solver.prototxt")
    _train(first, x, y, 5)
    state = first.snapshot()
    assert os.path.exists(state) and state.startswith("snap_iter_5.solverstate")
    resumed = caffelite.get_solver("solver.prototxt")  # a fresh solver: new random weights
    resumed.restore(state)
    assert resumed.iter == 5 and resumed.current_step == first.current_step
    _train(resumed, x, y, 12)
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_hdf5_layout_is_caffes(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" type: "Adam" snapshot_format: HDF5 snapshot_diff: true')
    solver = caffelite.get_solver("solver.prototxt")
    solver.step(2)
    assert solver.snapshot() == "snap_iter_2.solverstate.h5"
    with h5py.File("snap_iter_2.caffemodel.h5", "r") as f:
        assert sorted(f) == ["data", "diff"]
        assert sorted(f["data"]) == sorted(solver.net.layer_dict)  # a group per layer
        np.testing.assert_array_equal(f["data/conv1/0"][()], solver.net.params["conv1"][0].data)
        np.testing.assert_array_equal(f["diff/ip1/1"][()], solver.net.params["ip1"][1].diff)
        assert len(f["data/relu1"]) == 0
    with h5py.File("snap_iter_2.solverstate.h5", "r") as f:
        assert f["iter"][()].tolist() == [2] and f["current_step"][()].tolist() == [0]
        assert f["learned_net"][()] == b"snap_iter_2.caffemodel.h5"
        assert f["learned_net"].id.get_type().get_strpad() == h5py.h5t.STR_NULLTERM
        assert sorted(f["history"], key=int) == [str(i) for i in range(8)]
    net = caffelite.Net("net.prototxt", caffelite.TEST)
    net.copy_from("snap_iter_2.caffemodel.h5")
    np.testing.assert_array_equal(net.params["ip1"][0].data, solver.net.params["ip1"][0].data)


def test_hdf5_weights_of_another_shape_are_refused(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed"')
    net = caffelite.Net("net.prototxt", caffelite.TEST)
    net.save_hdf5("w.h5")
    (tmp_path / "net.prototxt").write_text((tmp_path / "net.prototxt").read_text().replace(
        "num_output: 10", "num_output: 7"))
    other = caffelite.Net("net.prototxt", caffelite.TEST)
    with pytest.raises(caffelite.WeightsError, match="shape mismatch. Source shape is 10 128"):
        other.copy_from("w.h5")


def test_hdf5_needs_h5py(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_format: HDF5')
    solver = caffelite.get_solver("solver.prototxt")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(UnsupportedError, match="h5py"):
        solver.snapshot()


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_snapshots_get_the_mode_open_gives(tmp_path, monkeypatch, fmt):
    if fmt == "HDF5":
        pytest.importorskip("h5py")
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_format: %s' % fmt)
    solver = caffelite.get_solver("solver.prototxt")
    old = os.umask(0o027)
    try:
        with open("reference", "wb"):
            pass
        state = solver.snapshot()
    finally:
        os.umask(old)
    written = sorted(p.name for p in tmp_path.glob("snap_*"))
    assert len(written) == 2 and state in written
    expected = stat.S_IMODE(os.stat("reference").st_mode)
    assert expected == 0o640
    assert {name: oct(stat.S_IMODE(os.stat(name).st_mode)) for name in written} == {
        name: oct(expected) for name in written}


def test_interrupted_snapshot_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed"')
    solver = caffelite.get_solver("solver.prototxt")
    solver.snapshot()
    before = {p.name: p.read_bytes() for p in tmp_path.glob("snap_*")}
    solver.net.params["ip1"][0].data[...] += 1  # the next write would differ
    import caffelite.protoio as protoio

    real_fdopen = os.fdopen

    class Crashing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half written, then the "machine dies"
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(protoio.os, "fdopen", lambda fd, mode: Crashing(real_fdopen(fd, mode)))
    with pytest.raises(OSError):
        solver.snapshot()
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(("snap", ".snap"))}
    assert after == before  # the old files intact, no torn file, no temporary left behind


def test_interrupted_hdf5_snapshot_leaves_no_partial_file(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    import caffelite.hdf5 as hdf5

    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_format: HDF5')
    solver = caffelite.get_solver("solver.prototxt")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(hdf5.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        solver.snapshot()
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if "snap" in p.name] == []


# --- the solver's surface and checks ---------------------------------------------------------
def test_pycaffe_surface_and_test_nets_share_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" test_iter: 2 test_interval: 100 '
                                   'test_initialization: false display: 1')
    solver = caffelite.SGDSolver(str(path))
    assert solver.type == "SGD" and solver.param.base_lr == pytest.approx(0.1) and solver.iter == 0
    assert len(solver.test_nets) == 1 and solver.test_nets[0].phase == caffelite.TEST
    events = []
    solver.add_callback(lambda: events.append("start"), lambda: events.append("grad"))
    x, y = _digits()
    _feed(solver, x, y, 0, 16)
    solver.step(2)
    assert solver.iter == 2 and events == ["start", "grad"] * 2
    means = solver.test(0)
    test_w = solver.test_nets[0].params["ip1"][0].data
    assert np.shares_memory(test_w, solver.net.params["ip1"][0].data)
    assert len(means) == 1 and math.isfinite(means[0])


def test_test_state_stages_pick_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = (GOLDEN / "net.prototxt").read_text() + (
        'layer { name: "acc" type: "Accuracy" bottom: "ip1" bottom: "label" top: "acc" '
        'include { phase: TEST stage: "val" } }\n')
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "s.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" test_iter: 1 test_iter: 1 test_interval: 5 '
        'test_state { stage: "val" } test_state { } train_state { level: 2 }')
    solver = caffelite.get_solver("s.prototxt")
    assert solver.net.param.state.level == 2 and solver.net.param.state.phase == caffelite.TRAIN
    assert "acc" in solver.test_nets[0].blobs and "acc" not in solver.test_nets[1].blobs


@pytest.mark.parametrize("body, message", [
    ('type: "AdaGrad" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9', "Momentum cannot be used with AdaGrad"),
    ('type: "RMSProp" base_lr: 0.1 lr_policy: "fixed" rms_decay: 1.5', "rms_decay should lie between 0 and 1"),
    ('type: "Adamax" base_lr: 0.1 lr_policy: "fixed"', "Unknown solver type: Adamax"),
    ('base_lr: 0.1', "Unknown learning rate policy"),
    ('base_lr: 0.1 lr_policy: "fixed" regularization_type: "L3"', "Unknown regularization type: L3"),
    ('base_lr: 0.1 lr_policy: "fixed" test_iter: 1', "test_interval must be > 0"),
    ('base_lr: 0.1 lr_policy: "fixed" net_param { name: "x" }', "must not contain more than one"),
    ('base_lr: 0.1 lr_policy: "fixed" snapshot: 5 snapshot_prefix: "no/such/dir/x"', "Cannot write to snapshot"),
    ('base_lr: 0.1 lr_policy: "fixed" average_loss: 0', "average_loss should be non-negative"),
])
def test_solver_param_errors(body, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, body)
    with pytest.raises(SolverError, match=message):
        caffelite.get_solver("solver.prototxt")


def test_missing_files_name_the_path_tried(tmp_path, monkeypatch):
    sub = tmp_path / "exp"
    sub.mkdir()
    _write_solver(sub, 'base_lr: 0.1 lr_policy: "fixed"')
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the cwd, as in Caffe
    with pytest.raises(CaffeFileNotFoundError) as err:
        caffelite.get_solver("exp/solver.prototxt")
    assert str(tmp_path / "net.prototxt") in str(err.value) and "beside the solver file" in str(err.value)
    monkeypatch.chdir(sub)
    solver = caffelite.get_solver("solver.prototxt")
    with pytest.raises(CaffeFileNotFoundError, match="nothing.solverstate"):
        solver.restore("nothing.solverstate")
    state = caffe_pb2.SolverState(iter=3, learned_net="gone.caffemodel")
    (sub / "x.solverstate").write_bytes(state.SerializeToString())
    with pytest.raises(CaffeFileNotFoundError, match="gone.caffemodel"):
        solver.restore("x.solverstate")


def _solver_param(text):
    return parse_text(text, caffe_pb2.SolverParameter(), "solver.prototxt")


def test_snapshot_prefix_property(tmp_path):
    param = _solver_param("")
    assert solvers.snapshot_prefix_property(param, "models/x/solver.prototxt")
    assert param.snapshot_prefix == "models/x/solver"
    param = _solver_param('snapshot_prefix: "%s"' % tmp_path)
    assert solvers.snapshot_prefix_property(param, "models/x/solver.prototxt")
    assert param.snapshot_prefix == os.path.join(str(tmp_path), "solver")
    param = _solver_param('snapshot_prefix: "snapshots/run1"')
    assert solvers.snapshot_prefix_property(param, "solver.prototxt") is False
    assert param.snapshot_prefix == "snapshots/run1"


def test_snapshot_prefix_defaults_to_the_solver_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text((GOLDEN / "net.prototxt").read_text())
    (tmp_path / "out").mkdir()
    (tmp_path / "a.prototxt").write_text('net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed"')
    (tmp_path / "b.prototxt").write_text('net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" snapshot_prefix: "out"')
    assert caffelite.get_solver("a.prototxt").param.snapshot_prefix == "a"
    assert caffelite.get_solver("b.prototxt").param.snapshot_prefix == os.path.join("out", "b")


# --- signals -------------------------------------------------------------------------------
def _signal_at(solver, it, signum):
    def on_start():
        if solver.iter == it:
            os.kill(os.getpid(), signum)
    solver.add_callback(on_start)


def test_sigint_stops_with_a_snapshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed"')
    solver = caffelite.get_solver("solver.prototxt")
    _signal_at(solver, 3, signal.SIGINT)
    with solvers.SignalHandler() as handler:  # Caffe's defaults: SIGINT stops, SIGHUP snapshots
        solver.set_action_function(handler.action)
        solver.solve()
    assert solver.iter == 4 and solver.requested_early_exit
    assert sorted(p.name for p in tmp_path.glob("snap_*")) == ["snap_iter_4.caffemodel", "snap_iter_4.solverstate"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_sigint_snapshots_even_without_snapshot_after_train(tmp_path, monkeypatch):
    """Deliberately beyond Caffe: a Ctrl-C stop always leaves a snapshot, so no training is lost."""
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_after_train: false')
    solver = caffelite.get_solver("solver.prototxt")
    _signal_at(solver, 2, signal.SIGINT)
    with solvers.SignalHandler() as handler:
        solver.set_action_function(handler.action)
        solver.solve()
    assert solver.iter == 3 and solver.requested_early_exit
    assert sorted(p.name for p in tmp_path.glob("snap_*")) == ["snap_iter_3.caffemodel", "snap_iter_3.solverstate"]


def test_sigint_effect_snapshot_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_after_train: false')
    solver = caffelite.get_solver("solver.prototxt")
    _signal_at(solver, 5, signal.SIGINT)
    with solvers.SignalHandler(sigint_effect="snapshot") as handler:
        solver.set_action_function(handler.action)
        solver.solve()
    assert solver.iter == 12 and not solver.requested_early_exit
    assert sorted(p.name for p in tmp_path.glob("snap_*")) == ["snap_iter_6.caffemodel", "snap_iter_6.solverstate"]


# --- the command line ----------------------------------------------------------------------
# the `tiny` solver folder: tests/conftest.py


def test_cli_train_test_time(tiny, capsys):
    assert cli_main(["train", "-solver", "solver.prototxt", "-log", "train.log"]) == 0
    text = (tiny / "train.log").read_text()
    for needle in ("Iteration 0 (", " iters), loss = ", "Iteration 6, loss = ", "Iteration 2, lr = 0.1",
                   "Iteration 4, lr = 0.05", "Iteration 3, Testing net (#0)", "Test net output #0: acc = ",
                   "Train net output #0: loss = ",
                   "Snapshotting to binary proto file tiny_iter_4.caffemodel", "Optimization Done."):
        assert needle in text, needle
    assert text.splitlines()[0][0] == "I" and "] " in text.splitlines()[0]  # glog's line prefix
    assert "Iteration 6, loss = " in capsys.readouterr().err
    assert sorted(p.name for p in tiny.glob("tiny_iter_*")) == [
        "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate", "tiny_iter_6.caffemodel", "tiny_iter_6.solverstate"]

    assert cli_main(["train", "--solver", "solver.prototxt", "--snapshot", "tiny_iter_4.solverstate",
                     "--iterations", "8"]) == 0
    err = capsys.readouterr().err
    assert "Resuming from tiny_iter_4.solverstate" in err and "Iteration 4, lr = 0.05" in err
    assert (tiny / "tiny_iter_8.solverstate").exists()

    assert cli_main(["test", "-model", "net.prototxt", "-weights", "tiny_iter_6.caffemodel", "-iterations", "3"]) == 0
    err = capsys.readouterr().err
    assert "Batch 2, acc = " in err and "Loss: " in err and "] acc = " in err and "loss = " in err

    assert cli_main(["time", "-model", "net.prototxt", "-iterations", "2"]) == 0
    err = capsys.readouterr().err
    for needle in ("Iteration: 2 forward-backward time: ", "ip\tforward: ", "ip\tbackward: ",
                   "Average Forward pass: ", "Average Backward pass: ", "Total Time: ", "*** Benchmark ends ***"):
        assert needle in err, needle


def test_cli_train_finetunes_from_weights(tiny, capsys):
    net = caffelite.Net("net.prototxt", caffelite.TEST)
    net.params["ip"][0].data[...] = 7
    net.save("start.caffemodel")
    assert cli_main(["train", "-solver", "solver.prototxt", "-weights", "start.caffemodel", "-iterations", "1"]) == 0
    assert "Finetuning from start.caffemodel" in capsys.readouterr().err
    done = caffelite.Net("net.prototxt", caffelite.TEST, weights="tiny_iter_1.caffemodel")
    np.testing.assert_allclose(done.params["ip"][0].data, 7, atol=0.2)  # one small step away


@pytest.mark.parametrize("argv, message", [
    (["train"], "Need a solver definition to train."),
    (["train", "-solver", "solver.prototxt", "-weights", "a", "-snapshot", "b"], "but not both"),
    (["train", "-solver", "missing.prototxt"], "missing.prototxt"),
    (["test", "-model", "net.prototxt"], "Need model weights to score."),
    (["time"], "Need a model definition to time."),
])
def test_cli_errors(tiny, capsys, argv, message):
    assert cli_main(argv) == 1
    assert message in capsys.readouterr().err


def test_display_shows_the_loss_smoothed_over_average_loss(tmp_path, monkeypatch, caplog):
    import logging
    import re

    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.05 lr_policy: "fixed" display: 1 average_loss: 3')
    x, y = _digits()
    solver = caffelite.get_solver("solver.prototxt")
    losses = []
    solver.add_callback(on_gradients_ready=lambda: losses.append(float(solver.net.blobs["loss"].data)))
    caplog.set_level(logging.INFO, logger="caffelite")
    _train(solver, x, y, 6)  # one step(1) per iteration: each call starts a fresh window, as in Caffe
    solver.step(4)  # one call: the window slides over the last 3 losses
    shown = [float(m.group(1)) for m in re.finditer(r"iters\), loss = (\S+)", caplog.text)]
    assert shown[:6] == pytest.approx(losses[:6], rel=1e-5)
    want = [np.mean(losses[6:7]), np.mean(losses[6:8]), np.mean(losses[6:9]), np.mean(losses[7:10])]
    assert shown[6:] == pytest.approx(want, rel=1e-5)
