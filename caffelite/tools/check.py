"""``caffelite check NET.prototxt``: report what BVLC Caffe would abort on, or silently do.

The logic lives in :mod:`caffelite.checker`; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys

from caffelite.common import TEST, TRAIN


def _input(text: str) -> tuple[str, tuple[int, ...]]:
    from caffelite.checker import parse_shape

    name, sep, shape = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=SHAPE, e.g. data=1,3,224,224 (got %r)" % text)
    try:
        return name, parse_shape(shape)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _code(text: str) -> str:
    from caffelite.checker import CODES
    from caffelite.suggest import did_you_mean

    if text not in CODES:
        raise argparse.ArgumentTypeError("unknown diagnostic code %r.%s (caffelite check --list-codes lists them)"
                                         % (text, did_you_mean(text, CODES)))
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="validate a net (and solver) prototxt: errors Caffe aborts on, loss semantics, shapes",
        description="Parse, upgrade, filter by phase and shape-infer a Caffe net; report diagnostics as "
                    "file:line:col: severity: [code] message. Exit status 0 without errors, 1 with errors, "
                    "2 when a file cannot be read.")
    p.add_argument("net", nargs="?", help="net (or solver) prototxt")
    p.add_argument("--solver", help="solver prototxt to check with the net: the net is checked in the states the "
                                    "solver builds (train_state, each test_state); its base_lr is used in hints")
    p.add_argument("--input", action="append", type=_input, default=[], metavar="NAME=SHAPE",
                   help="shape of an input or data-layer top, e.g. data=1,3,224,224 (repeatable)")
    p.add_argument("--phase", choices=["TRAIN", "TEST"], help="check one phase only (default: both)")
    p.add_argument("--stage", action="append", default=None,
                   help="NetState stage (repeatable); default: each stage the net's rules mention, and none")
    p.add_argument("--weights", metavar="W1[,W2...]",
                   help=".caffemodel(s) the net starts from (default: the solver's weights, when present): checked "
                        "to fit the net as Caffe's CopyTrainedLayersFrom does; layers they give need no weight_filler")
    p.add_argument("--ignore", action="append", default=[], metavar="CODE", type=_code,
                   help="do not report this diagnostic code (repeatable); in the prototxt, "
                        "'# caffelite: ignore[CODE]' silences it on one line or layer (see --list-codes)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    p.add_argument("--allow-python-layers", action="store_true",
                   help="import the modules of Python layers to set them up (runs code the prototxt names)")
    p.add_argument("--shapes", action="store_true", help="also print every blob's inferred shape")
    p.add_argument("--list-codes", action="store_true", help="print every diagnostic code and exit")
    return p


def run(args) -> int:
    from caffelite.checker import check_file, list_codes

    if args.list_codes:
        print(list_codes())
        return 0
    if not args.net:
        print("caffelite check: error: give a NET.prototxt (or --list-codes)", file=sys.stderr)
        return 2
    phases = None if args.phase is None else [TRAIN if args.phase == "TRAIN" else TEST]
    result = check_file(args.net, solver=args.solver, inputs=dict(args.input), phases=phases,
                        stages=args.stage, allow_python_layers=args.allow_python_layers, weights=args.weights,
                        ignore=args.ignore)
    if args.format == "json":
        print(result.to_json())
    else:
        print(result.format_text())
        if args.shapes:
            for phase, shapes in result.shapes.items():
                print("shapes (%s):" % phase)
                for name, shape in shapes.items():
                    print("  %-24s %s" % (name, "unknown" if shape is None else "x".join(map(str, shape)) or "scalar"))
    return result.exit_status
