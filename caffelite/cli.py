"""``caffelite``: the command line (the role of Caffe's ``caffe`` tool and its helper programs).

Each subcommand lives in ``caffelite/tools/<name>.py`` with ``add_parser(subparsers)`` (which
returns its parser) and ``run(args) -> int``.  Caffe's single-dash long options (``-solver``,
``-weights``, ...) are accepted as well as ``--solver``, so existing shell scripts run.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from caffelite._version import __version__
from caffelite.compute.parallel import set_num_threads
from caffelite.errors import CaffeliteError

# subcommand -> module under caffelite.tools (a module not present yet is simply not offered)
COMMANDS = {
    "train": "train",
    "test": "test",
    "time": "time",
    "check": "check",
    "explain": "explain",
    "draw": "draw",
    "upgrade": "upgrade",
    "export": "export",
    "convert-imageset": "convert_imageset",
    "compute-image-mean": "compute_image_mean",
    "plot-log": "plot_log",
    "run-pycaffe": "run_pycaffe",
}


# commands whose arguments belong to another program: passed through without the -flag rewrite
RAW_ARGV_COMMANDS = {"run-pycaffe"}


def _available():
    for command, module in COMMANDS.items():
        if importlib.util.find_spec("caffelite.tools." + module) is not None:
            yield command, importlib.import_module("caffelite.tools." + module)


def caffe_style_argv(argv: list[str]) -> list[str]:
    """Accept Caffe's gflags spellings: ``-solver x`` and ``-solver=x`` become ``--solver``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[1].isalpha():
            name = arg[1:].split("=", 1)[0]
            if name.replace("_", "").replace("-", "").isalnum() and len(name) > 1:
                arg = "-" + arg
        out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffelite",
        description="Caffe, reborn in pure Python: train, test, time, check and explain Caffe nets.")
    parser.add_argument("--version", action="version", version="caffelite " + __version__)
    threads = dict(type=int, metavar="N", help="compute with N threads (default: OMP_NUM_THREADS / "
                   "OPENBLAS_NUM_THREADS, else every core)")
    parser.add_argument("--threads", **threads)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.command_parsers = {}  # command -> its parser, whose usage an error in its options shows
    for command, module in _available():
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
        parser.command_parsers[command] = p
        p.add_argument("--threads", default=argparse.SUPPRESS, **threads)  # also after the command
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in RAW_ARGV_COMMANDS:
        argv = caffe_style_argv(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top-level one
        parser.command_parsers.get(args.command, parser).error("unrecognized arguments: %s" % " ".join(unknown))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1 (got %d)" % args.threads)
        set_num_threads(args.threads)
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except CaffeliteError as e:
        print("caffelite %s: error: %s" % (args.command, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("caffelite %s: interrupted" % args.command, file=sys.stderr)
        return 130
    except BrokenPipeError:  # `caffelite check ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 128 + 13  # killed by SIGPIPE
