"""``caffelite train``: train a net with a solver (Caffe's ``caffe train``).

Caffe: tools/caffe.cpp (``train``), src/caffe/util/signal_handler.cpp.

The log goes to stderr (and to ``--log FILE``) in glog's line format, so Caffe's log parsers
(``tools/extra/parse_log.py``, ``caffelite plot-log``) read it unchanged.  Ctrl-C stops after the
current iteration and always leaves a snapshot to ``--snapshot`` from (even with
``snapshot_after_train: false``, where Caffe would lose the training); SIGHUP snapshots and goes on
(``--sigint_effect`` / ``--sighup_effect``).
"""

from __future__ import annotations

import argparse
import logging

from caffelite.errors import SolverError
from caffelite.tools.common import ToolLogging, add_common, gpu_flag, solve, stages_from

log = logging.getLogger("caffelite.tools")


# --- train -------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train or finetune a model (caffe train)",
        description="Train a net with a solver definition, as `caffe train` does. Caffe's single-dash "
                    "spellings (-solver, -weights, -snapshot, ...) work too.")
    p.add_argument("--solver", metavar="SOLVER", help="the solver definition protocol buffer text file")
    p.add_argument("--weights", metavar="W1[,W2...]",
                   help="pretrained .caffemodel(s) to finetune from (comma-separated); not with --snapshot")
    p.add_argument("--snapshot", metavar="STATE", help="a .solverstate(.h5) to resume training from")
    p.add_argument("--stage", default="", help="comma-separated NetState stages of the training net")
    p.add_argument("--level", type=int, default=0, help="NetState level of the training net")
    p.add_argument("--sigint_effect", "--sigint-effect", default="stop", choices=("stop", "snapshot", "none"),
                   help="what Ctrl-C does: stop (default; the final snapshot is still written), snapshot, none")
    p.add_argument("--sighup_effect", "--sighup-effect", default="snapshot",
                   choices=("stop", "snapshot", "none"), help="what SIGHUP does (default: snapshot)")
    p.add_argument("--iterations", type=int, metavar="N", help="train to iteration N instead of max_iter")
    # --engine torch: caffelite/torch/train.py (its --gpu is Caffe's: one process per GPU)
    p.add_argument("--engine", choices=("numpy", "torch"), default="numpy",
                   help="numpy (default) or torch: the nets on PyTorch, with --device, --gpu and --nproc")
    p.add_argument("--device", metavar="DEV", help="with --engine torch: cpu (default), cuda or cuda:N")
    p.add_argument("--nproc", type=int, metavar="N", help="with --engine torch: N CPU processes (gloo)")
    add_common(p)
    return p


def run(args) -> int:
    from caffelite.proto import caffe_pb2
    from caffelite.solvers import SignalHandler, create_solver, snapshot_prefix_property
    from caffelite.upgrade import read_solver_param

    if not args.solver:
        raise SolverError("Need a solver definition to train. (give --solver FILE)", field="solver")
    if args.snapshot and args.weights:
        raise SolverError("Give a snapshot to resume training or weights to finetune but not both.",
                          field="weights")
    if args.engine == "torch":
        from caffelite.tools.train_torch import run as run_torch

        return run_torch(args)
    if args.device or args.nproc:
        raise SolverError("--device and --nproc need --engine torch", field="engine")
    gpu_flag(args)
    with ToolLogging(args.log) as logs:
        param = read_solver_param(args.solver)
        snapshot_prefix_property(param, args.solver)
        param.train_state.level = args.level
        param.train_state.stage.extend(stages_from(args.stage))
        if args.iterations is not None:
            param.max_iter = args.iterations
        if param.solver_mode == caffe_pb2.SolverParameter.GPU and param.HasField("solver_mode"):
            log.info("solver_mode: GPU ignored: caffelite runs on the CPU")
        if args.snapshot:
            del param.weights[:]
        elif args.weights:
            del param.weights[:]
            param.weights.append(args.weights)
        log.info("Use CPU.")
        solver = create_solver(param, args.solver)
        with SignalHandler(args.sigint_effect, args.sighup_effect) as signals:
            solve(solver, param, args, logs, signals, log)
    return 0
