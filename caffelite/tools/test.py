"""``caffelite test``: score a trained model over some batches (Caffe's ``caffe test``).

Caffe: tools/caffe.cpp (``test``).  Logs each batch's outputs, then the mean of every output
over ``--iterations`` batches (with its weighted loss for loss outputs) and the mean loss.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from caffelite.errors import NetError
from caffelite.tools.common import ToolLogging, add_common, gpu_flag, stages_from

log = logging.getLogger("caffelite.tools")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "test", help="score a model over some batches (caffe test)",
        description="Run a trained model forward for --iterations batches and report each output's "
                    "mean, as `caffe test` does.")
    add_net_arguments(p, "TEST", "the trained weights (.caffemodel or .h5)", "number of batches (default 50)")
    return p


def add_net_arguments(p, phase: str, weights_help: str, iterations_help: str) -> None:
    """The options that choose and load a net (shared by ``test`` and ``time``), and the common ones."""
    p.add_argument("--model", metavar="PROTOTXT", help="the model definition protocol buffer text file")
    p.add_argument("--weights", metavar="W1[,W2...]", help=weights_help)
    p.add_argument("--iterations", type=int, default=50, metavar="N", help=iterations_help)
    p.add_argument("--phase", default=phase, type=str.upper, choices=("TRAIN", "TEST"),
                   help="the net's phase (default %s)" % phase)
    p.add_argument("--stage", default="", help="comma-separated NetState stages")
    p.add_argument("--level", type=int, default=0, help="NetState level")
    add_common(p)


def load_net(args, default_phase: str):
    """The net a tool runs: --model in --phase with --level/--stage, then --weights (comma-separated)."""
    from caffelite.common import TEST, TRAIN
    from caffelite.net import Net

    phase = TRAIN if (args.phase or default_phase) == "TRAIN" else TEST
    net = Net(args.model, phase, level=args.level, stages=stages_from(args.stage))
    for name in filter(None, (getattr(args, "weights", None) or "").split(",")):
        net.copy_from(name)
    return net


def run(args) -> int:
    gpu_flag(args)
    if not args.model:
        raise NetError("Need a model definition to score. (give --model FILE)", field="model")
    if not args.weights:
        raise NetError("Need model weights to score. (give --weights FILE)", field="weights")
    if args.iterations < 1:
        raise NetError("--iterations must be at least 1 (got %d)" % args.iterations, field="iterations")
    with ToolLogging(args.log):
        net = load_net(args, "TEST")
        log.info("Use CPU.")
        log.info("Running for %d iterations.", args.iterations)
        outputs = net.output_blob_table()  # Caffe's outputs by blob index, as caffe test reports them
        names = [name for name, _, _ in outputs]
        totals = None
        loss = 0.0
        for i in range(args.iterations):
            loss += net.forward_from_to()
            values = [np.asarray(blob.data, dtype=np.float64).ravel() for _, blob, _ in outputs]
            totals = [v.copy() for v in values] if totals is None else [t + v for t, v in zip(totals, values)]
            for name, v in zip(names, values):
                for x in v:
                    log.info("Batch %d, %s = %g", i, name, x)
        loss /= args.iterations
        log.info("Loss: %g", loss)
        for (name, _, w), total in zip(outputs, totals or []):
            for x in total / args.iterations:
                log.info("%s = %g%s", name, x, " (* %g = %g loss)" % (w, w * x) if w else "")
    return 0
