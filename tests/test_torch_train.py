"""``--engine torch``: Caffe's golden solver trajectories, cross-engine snapshots, the command line."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import caffelite  # noqa: E402
from caffelite.cli import main as cli_main  # noqa: E402
from caffelite.proto import caffe_pb2  # noqa: E402
from caffelite.torch.train import get_solver  # noqa: E402
from tests.test_solvers import GOLDEN, _digits, _feed, _golden_runs  # noqa: E402

TOL = 1e-4


def _engine_solver(engine):
    return get_solver("solver.prototxt") if engine == "torch" else caffelite.get_solver("solver.prototxt")


def _run_golden(case, from_caffe, tmp_path, monkeypatch, engines=("torch", "torch")):
    """The golden run of tests/test_solvers.py; ``engines``: before and after the restart."""
    folder = GOLDEN / case
    traj = json.loads((folder / "trajectory.json").read_text())
    steps, batch, resume_at = len(traj["losses"]), traj.get("batch", 16), traj.get("resume_at")
    x, y = _digits()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solver.prototxt").write_text((folder / "solver.prototxt").read_text())
    solver = _engine_solver(engines[0])
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
            solver = _engine_solver(engines[1])
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


@pytest.mark.parametrize("case, from_caffe", _golden_runs())
def test_golden_trajectory_on_torch(case, from_caffe, tmp_path, monkeypatch):
    """The 21 runs BVLC Caffe recorded (17 solver settings, 4 restarts from Caffe's own snapshots)."""
    _run_golden(case, from_caffe, tmp_path, monkeypatch)


@pytest.mark.parametrize("engines", [("torch", "numpy"), ("numpy", "torch")], ids=["torch-to-numpy", "numpy-to-torch"])
@pytest.mark.parametrize("case", ["adam_resume", "sgd_step_resume"])
def test_snapshots_resume_on_either_engine(case, engines, tmp_path, monkeypatch):
    _run_golden(case, False, tmp_path, monkeypatch, engines)
