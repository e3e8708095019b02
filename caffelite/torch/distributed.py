r"""Several processes, one training: Caffe's multi-GPU semantics on torch.distributed.

Caffe: src/caffe/parallel.cpp (``NCCL``: broadcast the root's weights, all-reduce and average the
gradients, root solver logs, tests and snapshots), src/caffe/layers/data_layer.cpp and
hdf5_data_layer.cpp (``Skip``: rank :math:`r` of :math:`N` takes records :math:`r, r+N, r+2N, \dots`).

Each of :math:`N` processes runs the net at its own batch size :math:`B` on its own records; the
gradients are averaged (DistributedDataParallel), so one iteration sees :math:`N B` records, exactly
the records one process with ``iter_size: N`` sees, and the update is the same.

``launch`` is the local launcher behind ``--gpu 0,1`` / ``--nproc N``: it starts one worker per rank
with torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), forwards Ctrl-C and SIGHUP to the workers once (they stop or snapshot together at
the end of an iteration, as one Caffe run does) and SIGTERM too, and when a worker dies it stops the
others and exits non-zero naming the rank, the cause and the last snapshot on disk.  torchrun's own agent is
not used here because it turns Ctrl-C into SIGTERM for the workers, which would lose the final
snapshot; across machines, torchrun starts the same workers (see the README section).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist

from caffelite.errors import SolverError
from caffelite.proto import caffe_pb2

__all__ = ["launch", "world", "init_worker", "split_records", "agree_action", "gpu_ids"]

log = logging.getLogger("caffelite.tools")


# --- who am I -----------------------------------------------------------------------------------
def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment variables; (0, 1, 0) when alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, size, local


def init_worker(device: torch.device) -> tuple[int, int]:
    """Join the process group (NCCL on CUDA, gloo on the CPU) when ``WORLD_SIZE`` > 1; (rank, size)."""
    rank, size, _ = world()
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and not dist.is_nccl_available():
            raise SolverError("--gpu with several GPUs needs torch built with NCCL", field="gpu")
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=size,
                                **({"device_id": device} if backend == "nccl" else {}))
    return rank, size


def agree_action(action: str, device: torch.device) -> str:
    """Every rank's requested action combined (stop wins over snapshot over none), the same on all ranks,
    so all of them stop or snapshot at the same iteration."""
    flags = torch.tensor([action == "snapshot", action == "stop"], dtype=torch.int32, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return "stop" if flags[1] else "snapshot" if flags[0] else "none"


def gpu_ids(text: str) -> list[int]:
    """Caffe's ``-gpu`` flag: ``0,1`` or ``all`` (every visible GPU)."""
    if text.strip() == "all":
        count = torch.cuda.device_count()
        if not count:
            raise SolverError("--gpu all: no CUDA device is visible to torch", field="gpu")
        return list(range(count))
    try:
        ids = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SolverError("--gpu takes device ids like 0,1 or 'all' (got %r)" % text, field="gpu") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise SolverError("--gpu takes distinct device ids like 0,1 or 'all' (got %r)" % text, field="gpu")
    return ids


# --- Caffe's Skip: rank r of N takes records r, r+N, r+2N, ... ----------------------------------
class _RankReader:
    """An LMDB cursor seen by rank ``rank`` of ``size``: every ``size``-th record from ``rank`` on."""

    def __init__(self, reader, rank: int, size: int):
        self.reader, self.rank, self.size = reader, rank, size
        self.path = reader.path
        reader.skip(rank)

    def read(self, n: int, advance: bool = True) -> list[bytes]:
        return self.reader.read(n * self.size, advance)[::self.size][:n]

    def skip(self, n: int) -> None:
        self.reader.skip(n * self.size)


def split_records(layers, rank: int, size: int) -> list[str]:
    """Make the TRAIN-phase Data (LMDB) and HDF5Data layers among ``layers`` (caffelite layer objects,
    already set up) read rank ``rank``'s share of the records, as Caffe's ``Skip`` does; returns the
    names of the data layers that read the same records on every rank (Caffe's other data layers)."""
    from caffelite.common import TRAIN

    same = []
    if size <= 1:
        return same
    for layer in layers:
        kind = layer.layer_param.type
        if getattr(layer, "phase", TRAIN) != TRAIN:
            continue
        if kind == "Data":
            layer.reader = _RankReader(layer.reader, rank, size)
        elif kind == "HDF5Data":
            step = layer._next
            for _ in range(rank):
                step()

            def next_record(step=step):
                for _ in range(size):
                    step()
            layer._next = next_record
        elif kind in ("ImageData", "WindowData", "DummyData", "MemoryData"):
            same.append(layer.layer_param.name)
    return same


# --- the local launcher -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_snapshot(solver_file: str | None) -> str | None:
    """The newest ``<prefix>_iter_N.solverstate(.h5)`` of the solver's snapshot_prefix, if any."""
    if not solver_file:
        return None
    try:
        from caffelite.solvers import snapshot_prefix_property
        from caffelite.upgrade import read_solver_param

        param = read_solver_param(solver_file)
        snapshot_prefix_property(param, solver_file)
    except Exception:  # the launcher's message must not fail on a solver the workers rejected
        return None
    states = []
    for path in glob.glob(glob.escape(param.snapshot_prefix) + "_iter_*.solverstate*"):
        m = re.search(r"_iter_(\d+)\.solverstate(\.h5)?$", path)
        if m:
            states.append((int(m.group(1)), path))
    return max(states)[1] if states else None


def _describe(code: int) -> str:
    if code < 0:
        try:
            return "was killed by signal %s" % signal.Signals(-code).name
        except ValueError:
            return "was killed by signal %d" % -code
    return "exited with status %d" % code


def launch(worker_argv: list[str], nproc: int, devices: list[str] | None = None,
           solver_file: str | None = None, poll_s: float = 0.2) -> int:
    """Run ``python -m caffelite <worker_argv>`` as ``nproc`` ranks on this machine; 0 when all end well.

    ``devices``: one ``--device`` per rank (``cuda:0``, ``cuda:1``, ...), or None for the CPU.
    Raises SolverError naming the failed rank (and the others are stopped) when a worker fails.
    """
    port = _free_port()
    procs: list[subprocess.Popen] = []
    # the workers import this caffelite, installed or not
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

    def forward(signum, frame):  # once to every worker: they agree on the action at the iteration's end
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    # SIGINT / SIGHUP: the workers stop or snapshot together; SIGTERM ends them (never left orphaned)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)}
    try:
        for rank in range(nproc):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(nproc),
                       RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nproc),
                       GROUP_RANK="0", ROLE_RANK=str(rank), PYTHONPATH=path)
            argv = [sys.executable, "-m", "caffelite", *worker_argv]
            if devices:
                argv += ["--device", devices[rank]]
            # a session of its own: the terminal's Ctrl-C reaches the launcher only, which forwards it once;
            # SIGINT / SIGHUP ignored until the worker's own handler is in place (a signal then is not fatal)
            procs.append(subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_ignore_interrupts))
            log.info("Started rank %d of %d (pid %d%s)", rank, nproc, procs[-1].pid,
                     ", " + devices[rank] if devices else "")
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                _stop(procs)
                last = _last_snapshot(solver_file)
                raise SolverError("rank %d of %d (pid %d) %s; the other ranks were stopped. %s"
                                  % (rank, nproc, procs[rank].pid, _describe(code),
                                     "The last snapshot on disk is %s (resume with --snapshot %s)." % (last, last)
                                     if last else "No snapshot was written."))
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    finally:
        _stop(procs)
        for s, h in previous.items():
            signal.signal(s, h)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _stop(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM the workers still running (they may be blocked in a collective), SIGKILL after a grace."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in alive:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def solver_mode_note(param: caffe_pb2.SolverParameter) -> str | None:
    """Caffe's solver_mode / device_id are decided by the command line here."""
    if param.HasField("solver_mode") or param.HasField("device_id"):
        return "solver_mode / device_id in the solver file are ignored: --engine torch uses --device / --gpu"
    return None
