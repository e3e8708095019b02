"""``caffelite train --engine torch``: launch the ranks, or be one (or the only) process.

The command-line half of caffelite/torch/train.py (which holds the solver on PyTorch): Caffe's
tools/caffe.cpp ``train`` with ``-gpu 0,1`` / ``--nproc N`` / torchrun starting one process a rank.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import torch

from caffelite.errors import SolverError
from caffelite.solvers import SignalHandler, snapshot_prefix_property
from caffelite.tools.common import ToolLogging, solve, stages_from
from caffelite.torch.distributed import gpu_ids, init_worker, launch, world
from caffelite.torch.train import create_solver, resolve_device
from caffelite.upgrade import read_solver_param

tool_log = logging.getLogger("caffelite.tools")


def _worker_argv(args) -> list[str]:
    """The same ``train`` command for one rank (the launcher adds --device)."""
    argv = ["train", "--solver", args.solver, "--engine", "torch",
            "--sigint_effect", args.sigint_effect, "--sighup_effect", args.sighup_effect,
            "--level", str(args.level)]
    for flag, value in (("--weights", args.weights), ("--snapshot", args.snapshot), ("--stage", args.stage),
                        ("--log", args.log)):
        if value:
            argv += [flag, value]
    if args.iterations is not None:
        argv += ["--iterations", str(args.iterations)]
    return argv


def run(args) -> int:
    """``caffelite train --engine torch``: launch the ranks, or be one (or the only) process."""
    rank, size, local = world()
    if size == 1:  # not a worker yet: several processes asked for?
        gpus = gpu_ids(args.gpu) if args.gpu else []
        if args.nproc is not None and args.nproc < 1:
            raise SolverError("--nproc must be at least 1 (got %d)" % args.nproc, field="nproc")
        if gpus and args.nproc:
            raise SolverError("Give --gpu (one process per GPU) or --nproc (CPU processes), not both", field="nproc")
        if len(gpus) > 1 or (args.nproc or 1) > 1:
            read_solver_param(args.solver)  # a bad solver file is reported once, not by every rank
            with ToolLogging(None):
                devices = ["cuda:%d" % g for g in gpus] if gpus else None
                if gpus:
                    tool_log.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
                return launch(_worker_argv(args), len(gpus) or args.nproc, devices, args.solver)
    signals = SignalHandler(args.sigint_effect, args.sighup_effect)
    with contextlib.ExitStack() as stack:
        if size > 1:  # a rank catches signals from the start: they act after an iteration all ranks agree on
            stack.enter_context(signals)
        code = _train(args, signals, local)
    if size > 1:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End a rank whose work is done and whose process group is gone, without the interpreter's own exit:
    torch's C++ teardown at exit can abort a rank whose peers have already left (SIGABRT, "terminate called
    without an active exception", about one run in 15 on two CPU ranks), which would fail a finished run."""
    logging.shutdown()  # the log handlers flushed and closed; snapshots are already closed files
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _train(args, signals, local: int) -> int:
    """One process's run (alone, or one rank of several)."""
    device = resolve_device(args, local)
    rank, size = init_worker(device)
    try:
        with ToolLogging(args.log if rank == 0 else None) as logs:
            if rank != 0:  # Caffe's workers are quiet: rank 0 logs
                logging.getLogger("caffelite").setLevel(logging.WARNING)
            param = read_solver_param(args.solver)
            snapshot_prefix_property(param, args.solver)
            param.train_state.level = args.level
            param.train_state.stage.extend(stages_from(args.stage))
            if args.iterations is not None:
                param.max_iter = args.iterations
            if args.snapshot:
                del param.weights[:]
            elif args.weights:
                del param.weights[:]
                param.weights.append(args.weights)
            if device.type == "cuda":
                tool_log.info("GPU %d: %s", device.index, torch.cuda.get_device_name(device))
            else:
                tool_log.info("Use CPU.")
            if size > 1:
                tool_log.info("Rank %d of %d: batches of the net's batch size on every rank (%s backend)",
                              rank, size, torch.distributed.get_backend())
            solver = create_solver(param, args.solver, device, rank, size)
            with signals if size == 1 else contextlib.nullcontext():
                solve(solver, param, args, logs, signals, tool_log, show_bar=rank == 0)
            if size > 1:  # every rank leaves together: a rank tearing gloo down while rank 0 still
                torch.distributed.barrier()  # writes its snapshot can abort the other at exit
    finally:
        if size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
