"""``--engine torch``: Caffe's golden solver trajectories, cross-engine snapshots, the command line."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import caffelite  # noqa: E402
from caffelite.cli import main as cli_main  # noqa: E402
from caffelite.proto import caffe_pb2  # noqa: E402
from caffelite.torch.train import get_solver  # noqa: E402
from tests.test_solvers import GOLDEN, _digits, _feed, _golden_runs  # noqa: E402
from tests.torch_support import DEVICES, use_device  # noqa: E402

TOL = 1e-4


def _engine_solver(engine, device="cpu"):
    return get_solver("solver.prototxt", device) if engine == "torch" else caffelite.get_solver("solver.prototxt")


def _run_golden(case, from_caffe, tmp_path, monkeypatch, engines=("torch", "torch"), device="cpu"):
    """The golden run of tests/test_solvers.py; ``engines``: before and after the restart."""
    folder = GOLDEN / case
    traj = json.loads((folder / "trajectory.json").read_text())
    steps, batch, resume_at = len(traj["losses"]), traj.get("batch", 16), traj.get("resume_at")
    x, y = _digits()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text((folder / "solver.prototxt").read_text())
    solver = _engine_solver(engines[0], device)
    solver.net.copy_from(str(GOLDEN / "init.caffemodel"))
    losses, start = [], 0
    if from_caffe:  # the state BVLC Caffe wrote half-way
        for f in (folder / "caffe_snapshot").iterdir():
            (tmp_path / f.name).write_bytes(f.read_bytes())
        solver.restore("snap_iter_%d.solverstate" % resume_at)
        start, losses = resume_at, list(traj["losses"][:resume_at])
    for it in range(start, steps):
        if resume_at is not None and it == resume_at and not from_caffe:
            solver.snapshot()
            solver = _engine_solver(engines[1], device)
            solver.restore("snap_iter_%d.solverstate" % it)
        _feed(solver, x, y, it, batch)
        solver.step(1)
        losses.append(float(np.asarray(solver.net.blobs["loss"].data).reshape(-1)[0]))
    ref = np.array(traj["losses"])
    loss_err = np.max(np.abs(np.array(losses) - ref) / np.maximum(1, np.abs(ref)))
    assert loss_err < TOL, "loss trajectory differs from Caffe's (rel err %.3g)" % loss_err
    params = {"%s/%d" % (k, i): b.data for k, v in solver.net.params.items() for i, b in enumerate(v)}
    for key, want in np.load(folder / "final_params.npz").items():
        err = np.max(np.abs(params[key] - want)) / max(1.0, float(np.max(np.abs(want))))
        assert err < TOL, "%s differs from Caffe's final value (rel err %.3g)" % (key, err)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case, from_caffe", _golden_runs())
def test_golden_trajectory_on_torch(case, from_caffe, device, tmp_path, monkeypatch):
    """The 21 runs BVLC Caffe recorded (17 solver settings, 4 restarts from Caffe's own snapshots); on a GPU
    machine ``pytest -m cuda tests/test_torch_train.py`` runs them on CUDA too."""
    _run_golden(case, from_caffe, tmp_path, monkeypatch, device=str(use_device(device)))


@pytest.mark.parametrize("engines", [("torch", "numpy"), ("numpy", "torch")], ids=["torch-to-numpy", "numpy-to-torch"])
@pytest.mark.parametrize("case", ["adam_resume", "sgd_step_resume"])
def test_snapshots_resume_on_either_engine(case, engines, tmp_path, monkeypatch):
    _run_golden(case, False, tmp_path, monkeypatch, engines)


@pytest.mark.parametrize("effect, stop_at, files", [
    ("stop", 4, ["snap_iter_4.caffemodel", "snap_iter_4.solverstate"]),
    ("snapshot", 12, ["snap_iter_4.caffemodel", "snap_iter_4.solverstate"]),
])
def test_sigint_on_the_torch_engine(effect, stop_at, files, tmp_path, monkeypatch):
    """Ctrl-C stops after the iteration with a snapshot (or only snapshots), as on the NumPy engine."""
    from caffelite.solvers import SignalHandler
    from tests.test_solvers import _signal_at, _write_solver

    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" snapshot_after_train: false')
    solver = get_solver("solver.prototxt")
    _signal_at(solver, 3, signal.SIGINT)
    with SignalHandler(sigint_effect=effect) as handler:
        solver.set_action_function(handler.action)
        solver.solve()
    assert solver.iter == stop_at and solver.requested_early_exit == (effect == "stop")
    assert sorted(p.name for p in tmp_path.glob("snap_*")) == files
    numpy_solver = caffelite.get_solver("solver.prototxt")  # the NumPy engine resumes it
    numpy_solver.restore("snap_iter_4.solverstate")
    assert numpy_solver.iter == 4


# --- the command line --------------------------------------------------------------------------
def _weights(path):
    net = caffe_pb2.NetParameter.FromString(Path(path).read_bytes())
    return {"%s/%d" % (layer.name, i): np.array(b.data) for layer in net.layer for i, b in enumerate(layer.blobs)}


def test_cli_train_engine_torch_logs_snapshots_and_matches_numpy(tiny, capsys):
    assert cli_main(["train", "-solver", "solver.prototxt", "-engine", "torch", "-log", "train.log"]) == 0
    text = (tiny / "train.log").read_text()
    for needle in ("Use CPU.", "Iteration 0 (", " iters), loss = ", "Iteration 6, loss = ", "Iteration 2, lr = 0.1",
                   "Iteration 4, lr = 0.05", "Iteration 3, Testing net (#0)", "Test net output #0: acc = ",
                   "Train net output #0: loss = ",
                   "Snapshotting to binary proto file tiny_iter_4.caffemodel", "Optimization Done."):
        assert needle in text, needle
    assert sorted(p.name for p in tiny.glob("tiny_iter_*")) == [
        "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate", "tiny_iter_6.caffemodel", "tiny_iter_6.solverstate"]
    on_torch = _weights("tiny_iter_6.caffemodel")
    capsys.readouterr()
    assert cli_main(["train", "-solver", "solver.prototxt"]) == 0  # the NumPy engine, same seed and data
    for key, want in _weights("tiny_iter_6.caffemodel").items():
        np.testing.assert_allclose(on_torch[key], want, rtol=1e-5, atol=1e-6)
    # either engine resumes the other's state
    assert cli_main(["train", "--solver", "solver.prototxt", "--engine", "torch", "--snapshot",
                     "tiny_iter_4.solverstate", "--iterations", "8"]) == 0
    err = capsys.readouterr().err
    assert "Resuming from tiny_iter_4.solverstate" in err and "Iteration 4, lr = 0.05" in err
    assert (tiny / "tiny_iter_8.solverstate").exists()


def test_cli_engine_torch_flags(tiny, capsys):
    assert cli_main(["train", "-solver", "solver.prototxt", "-device", "cpu"]) == 1
    assert "--device and --nproc need --engine torch" in capsys.readouterr().err
    assert cli_main(["train", "-solver", "solver.prototxt", "-engine", "torch", "-nproc", "2", "-gpu", "0"]) == 1
    assert "not both" in capsys.readouterr().err
    assert cli_main(["train", "-solver", "solver.prototxt", "-engine", "torch", "-device", "tpu"]) == 1
    assert "expected cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli_main(["train", "-solver", "solver.prototxt", "-engine", "torch", "-gpu", "0"]) == 1
        assert "torch sees no CUDA device" in capsys.readouterr().err


# --- several processes ---------------------------------------------------------------------------
DIGITS_HDF5_NET = """name: "digits_h5"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "train.txt" batch_size: 8 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


def _digits_hdf5(folder, solver_extra):
    h5py = pytest.importorskip("h5py")
    x, y = _digits()
    with h5py.File(folder / "digits.h5", "w") as f:
        f["data"], f["label"] = x[:200], y[:200]
    (folder / "train.txt").write_text("digits.h5\n")
    (folder / "net.prototxt").write_text(DIGITS_HDF5_NET)
    (folder / "solver.prototxt").write_text('net: "net.prototxt" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" '
                                            'weight_decay: 0.001 random_seed: 3 snapshot_prefix: "snap" '
                                            + solver_extra)


def _caffelite(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "caffelite", *argv], capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("iter_size", [1, 2])
def test_two_gloo_processes_equal_one_with_iter_size_2(iter_size, tmp_path, monkeypatch):
    """Caffe's multi-GPU semantics: rank r of 2 takes records r, r+2, ...; gradients averaged.  With
    ``iter_size: k`` on each of the 2 ranks, one process needs ``iter_size: 2k``."""
    two, one = tmp_path / "two", tmp_path / "one"
    for folder, extra in ((two, "max_iter: 5 iter_size: %d" % iter_size), (one, "max_iter: 5 iter_size: %d"
                                                                             % (2 * iter_size))):
        folder.mkdir()
        _digits_hdf5(folder, extra)
    run2 = _caffelite("train", "--solver", "solver.prototxt", "--engine", "torch", "--nproc", "2", cwd=two)
    assert run2.returncode == 0, run2.stderr[-3000:]
    assert "Started rank 1 of 2" in run2.stderr and "Rank 0 of 2" in run2.stderr
    assert "Rank 1 of 2" not in run2.stderr  # rank 0 alone logs
    monkeypatch.chdir(one)  # the one-process run in this process: one interpreter start less
    assert cli_main(["train", "--solver", "solver.prototxt", "--engine", "torch"]) == 0
    assert sorted(p.name for p in two.glob("snap_*")) == ["snap_iter_5.caffemodel", "snap_iter_5.solverstate"]
    got, want = _weights(two / "snap_iter_5.caffemodel"), _weights(one / "snap_iter_5.caffemodel")
    assert set(got) == set(want) == {"conv1/0", "conv1/1", "ip1/0", "ip1/1"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)
    caffelite.set_random_seed(3)
    start = caffelite.Net("net.prototxt", caffelite.TRAIN).params["ip1"][0].data.ravel()
    assert not np.allclose(want["ip1/0"], start, atol=1e-3)  # it did train


def _launch(folder):
    return subprocess.Popen([sys.executable, "-m", "caffelite", "train", "--solver", "solver.prototxt",
                             "--engine", "torch", "--nproc", "2"], cwd=folder, stderr=subprocess.PIPE, text=True)


def test_a_killed_rank_stops_the_launcher_and_keeps_the_last_snapshot(tmp_path):
    _digits_hdf5(tmp_path, "max_iter: 100000 snapshot: 3 display: 0")
    with _launch(tmp_path) as proc:
        try:
            pids = {}
            while len(pids) < 2:
                line = proc.stderr.readline()
                assert line, "the launcher ended before starting its ranks"
                m = re.search(r"Started rank (\d) of 2 \(pid (\d+)", line)
                if m:
                    pids[int(m.group(1))] = int(m.group(2))
            deadline = time.monotonic() + 240
            while not (tmp_path / "snap_iter_6.solverstate").exists():
                assert time.monotonic() < deadline and proc.poll() is None, "no snapshot written"
                time.sleep(0.2)
            os.kill(pids[1], signal.SIGKILL)
            err = proc.stderr.read()
            assert proc.wait(timeout=60) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "rank 1 of 2 (pid %d) was killed by signal SIGKILL; the other ranks were stopped" % pids[1] in err
    last = re.search(r"The last snapshot on disk is (\S+) \(resume", err).group(1)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # rank 0 was stopped and reaped
    # the newest snapshot is whole: either engine resumes it
    state = caffe_pb2.SolverState.FromString((tmp_path / last).read_bytes())
    assert state.iter >= 6 and (tmp_path / state.learned_net).exists()
    run = _caffelite("train", "--solver", "solver.prototxt", "--snapshot", last, "--iterations", str(state.iter + 1),
                     cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]


def test_sighup_snapshots_and_ctrl_c_stops_every_rank_at_the_same_iteration(tmp_path):
    """The launcher forwards SIGHUP and SIGINT to every rank; the ranks agree on the iteration."""
    _digits_hdf5(tmp_path, "max_iter: 100000 display: 0 snapshot_after_train: false")
    with _launch(tmp_path) as proc:
        try:
            out = ""
            while "Starting Optimization" not in out:
                line = proc.stderr.readline()
                assert line, "the run ended early"
                out += line
            proc.send_signal(signal.SIGHUP)  # snapshot and go on
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob("snap_iter_*.solverstate")):
                assert time.monotonic() < deadline and proc.poll() is None, "SIGHUP wrote no snapshot"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            out += proc.stderr.read()
            assert proc.wait(timeout=120) == 0, out[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    # SIGHUP's snapshot, then the stop's (the same file when no iteration ended between the two signals)
    assert "Optimization stopped early." in out and out.count("Snapshotting solver state") == 2, out[-3000:]
    states = sorted(tmp_path.glob("snap_iter_*.solverstate"))
    assert 1 <= len(states) <= 2 and not list(tmp_path.glob(".snap*")), out[-3000:]


# --- Caffe's Skip: which records each rank reads ----------------------------------------------------
def _labels_read(net, batches):
    out = []
    for _ in range(batches):
        net.forward()
        out.append(net.blobs["label"].data.astype(int).tolist())
    return out


@pytest.mark.parametrize("kind", ["Data", "HDF5Data"])
def test_rank_r_of_n_reads_records_r_plus_k_n(kind, tmp_path, monkeypatch):
    """Rank r of 2 takes records r, r+2, r+4, ... of the stream, wrapping round a 7-record source."""
    from caffelite.torch.distributed import split_records

    monkeypatch.chdir(tmp_path)
    labels = np.arange(7)
    if kind == "Data":
        from tests.test_data_layers import make_lmdb

        make_lmdb(tmp_path, np.zeros((7, 1, 2, 2), np.uint8), labels)
        layer = 'type: "Data" data_param { source: "db" backend: LMDB batch_size: 3 }'
    else:
        h5py = pytest.importorskip("h5py")
        with h5py.File("rows.h5", "w") as f:
            f["data"], f["label"] = np.zeros((7, 2), np.float32), labels.astype(np.float32)
        (tmp_path / "list.txt").write_text("rows.h5\n")
        layer = 'type: "HDF5Data" hdf5_data_param { source: "list.txt" batch_size: 3 }'
    (tmp_path / "net.prototxt").write_text('layer { name: "d" top: "data" top: "label" %s }' % layer)
    seen = []
    for rank in range(2):
        net = caffelite.Net("net.prototxt", caffelite.TRAIN)
        assert split_records(net.layers, rank, 2) == []
        seen.append(_labels_read(net, 3))
    assert seen[0] == [[0, 2, 4], [6, 1, 3], [5, 0, 2]]
    assert seen[1] == [[1, 3, 5], [0, 2, 4], [6, 1, 3]]
    single = caffelite.Net("net.prototxt", caffelite.TRAIN)
    assert split_records(single.layers, 0, 1) == [] and _labels_read(single, 1) == [[0, 1, 2]]


def test_pycaffe_surface_of_the_torch_solver(tmp_path, monkeypatch):
    """net.params and net.blobs read (and, on the CPU, write) the module's tensors."""
    from tests.test_solvers import _write_solver

    monkeypatch.chdir(tmp_path)
    _write_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed"')
    solver = get_solver("solver.prototxt")
    solver.net.copy_from(str(GOLDEN / "init.caffemodel"))
    weights = dict(solver.net.module.named_parameters())["ip1/0"]
    solver.net.params["ip1"][0].data[...] = 0.5
    assert torch.all(weights == 0.5)
    x, y = _digits()
    _feed(solver, x, y, 0, 16)
    solver.step(1)
    assert solver.net.params["ip1"][0].diff.shape == (10, 128) and np.any(solver.net.params["ip1"][0].diff != 0)
    assert solver.net.blobs["loss"].data.shape == () and "data" in solver.net.blobs


def test_snapshot_diff_writes_the_last_update(tmp_path, monkeypatch):
    """snapshot_diff: the .caffemodel holds the diffs as the last update left them, on both engines."""
    monkeypatch.chdir(tmp_path)
    from tests.test_solvers import _write_solver

    x, y = _digits()
    written = {}
    for engine in ("numpy", "torch"):
        _write_solver(tmp_path, 'base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" snapshot_diff: true '
                                'snapshot_prefix: "%s"' % engine)
        solver = _engine_solver(engine)
        solver.net.copy_from(str(GOLDEN / "init.caffemodel"))
        for it in range(2):
            _feed(solver, x, y, it, 16)
            solver.step(1)
        solver.snapshot()
        net = caffe_pb2.NetParameter.FromString(Path("%s_iter_2.caffemodel" % engine).read_bytes())
        written[engine] = {layer.name: np.array(layer.blobs[0].diff) for layer in net.layer if layer.blobs}
    assert set(written["torch"]) == {"conv1", "ip1"}
    for name, want in written["numpy"].items():
        assert np.any(want != 0)
        np.testing.assert_allclose(written["torch"][name], want, rtol=1e-5, atol=1e-7)


def test_gpu_flag_parsing():
    from caffelite.errors import SolverError
    from caffelite.torch.distributed import gpu_ids

    assert gpu_ids("0,1") == [0, 1] and gpu_ids("2") == [2]
    for bad in ("a,b", "0,0", "-1", ""):
        with pytest.raises(SolverError, match="--gpu takes"):
            gpu_ids(bad)
    if not torch.cuda.is_available():
        with pytest.raises(SolverError, match="no CUDA device"):
            gpu_ids("all")
    else:
        assert gpu_ids("all") == list(range(torch.cuda.device_count()))
