"""``caffelite explain NET.prototxt``: run the net and print what Caffe computes in its loss layers.

The logic lives in :mod:`caffelite.explain`; this module is the command line.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain", help="step-by-step trace of what a loss (or Accuracy) layer computes",
        description="Run the net (TRAIN phase unless --phase) on given or random inputs and print, step by step, "
                    "what Caffe computes in each loss and Accuracy layer: for SoftmaxWithLoss the max subtraction, "
                    "exponentials, probabilities, -log, ignored positions, normalization, loss and gradient. "
                    "Each recomputed value is compared with what the layer produced; differences are marked.")
    p.add_argument("net", help="net prototxt (blobs nothing produces become inputs)")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="layer to explain (repeatable; default: every loss and Accuracy layer); NAME#K picks the "
                        "K-th of several layers named NAME")
    p.add_argument("--phase", choices=["TRAIN", "TEST"], default="TRAIN",
                   help="the phase whose net is built (default TRAIN; TEST-only layers such as Accuracy need TEST)")
    p.add_argument("--stage", action="append", default=None, help="NetState stage (repeatable)")
    p.add_argument("--level", type=int, default=0, help="NetState level (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="BLOB=VALUES", dest="values",
                   help="values of a blob as JSON nested lists, e.g. --set 'fc1=[[1.2,0.8]]' --set 'label=[1]'")
    p.add_argument("--input", action="append", default=[], metavar="NAME=SHAPE", dest="shapes",
                   help="shape of an input (or data-layer top) to fill at random, e.g. data=2,1,28,28")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="language of the trace")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--allow-python-layers", action="store_true",
                   help="import and run the Python layers the net names")
    return p


def run(args) -> int:
    import sys

    from caffelite.checker import parse_shape
    from caffelite.common import TEST, TRAIN
    from caffelite.explain import explain_file, parse_values

    try:
        values = parse_values(args.values)
        shapes = {}
        for item in args.shapes:
            name, sep, shape = item.partition("=")
            if not sep or not name:
                raise ValueError("expected NAME=SHAPE, e.g. data=2,1,28,28 (got %r)" % item)
            shapes[name] = parse_shape(shape)
    except ValueError as e:
        print("caffelite explain: error: %s" % e, file=sys.stderr)
        return 2
    sys.stdout.write(explain_file(args.net, layers=args.layer, values=values, shapes=shapes, lang=args.lang,
                                  seed=args.seed, allow_python_layers=args.allow_python_layers,
                                  phase=TEST if args.phase == "TEST" else TRAIN, stages=args.stage, level=args.level))
    return 0
