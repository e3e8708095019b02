"""``caffelite plot-log LOG -o curve.png``: training curves from a Caffe-style training log.

Reads the lines Caffe's solver writes (and ``caffelite train`` writes the same way)::

    Iteration 100 (12.3 iter/s, 8.1s/100 iters), loss = 0.52      (older Caffe: "Iteration 100, loss = 0.52")
    Iteration 100, lr = 0.01
    Iteration 500, Testing net (#0)
        Test net output #0: accuracy = 0.97

and draws the training loss, each test output, and the learning rate (when logged) against the
iteration.  Needs matplotlib (``pip install caffelite[plot]``).
Caffe: tools/extra/parse_log.py, tools/extra/plot_training_log.py.example.
"""

from __future__ import annotations

import argparse
import os
import re

from caffelite.errors import CaffeFileNotFoundError, FileFormatError
from caffelite.transform import import_optional

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)"
_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + _NUM)
_LR = re.compile(r"Iteration (\d+), lr = " + _NUM)
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUT = re.compile(r"Test net output #(\d+): (\S+) = " + _NUM)


def parse_log(text: str) -> dict:
    """Parse a training log.

    Returns ``{"loss": [(iter, loss)], "lr": [(iter, lr)], "test": {(net, name): [(iter, value)]}}``;
    a test output belongs to the latest "Testing net (#k)" line.
    """
    out: dict = {"loss": [], "lr": [], "test": {}}
    test_iter, test_net = None, 0
    for line in text.splitlines():
        m = _LOSS.search(line)
        if m:
            out["loss"].append((int(m.group(1)), float(m.group(2))))
            continue
        m = _LR.search(line)
        if m:
            out["lr"].append((int(m.group(1)), float(m.group(2))))
            continue
        m = _TESTING.search(line)
        if m:
            test_iter, test_net = int(m.group(1)), int(m.group(2))
            continue
        m = _TEST_OUT.search(line)
        if m and test_iter is not None:
            out["test"].setdefault((test_net, m.group(2)), []).append((test_iter, float(m.group(3))))
    return out


def plot(parsed: dict, output: str, title: str = "") -> None:
    """Draw the parsed curves into a PNG (matplotlib's Agg canvas, no display needed)."""
    import_optional("matplotlib", "plot", "plot-log")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    has_lr = bool(parsed["lr"])
    fig = Figure(figsize=(8, 6 if has_lr else 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(2 if has_lr else 1, 1, 1)
    if parsed["loss"]:
        it, val = zip(*parsed["loss"])
        ax.plot(it, val, color="tab:blue", label="train loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("train loss")
    handles, labels = ax.get_legend_handles_labels()
    if parsed["test"]:
        ax2 = ax.twinx()
        colours = ["tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
        for k, ((net, name), points) in enumerate(sorted(parsed["test"].items())):
            it, val = zip(*points)
            ax2.plot(it, val, marker="o", color=colours[k % len(colours)], label="test #%d %s" % (net, name))
        ax2.set_ylabel("test outputs")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="best")
    ax.set_title(title or "training curve")
    if has_lr:
        ax3 = fig.add_subplot(2, 1, 2)
        it, val = zip(*parsed["lr"])
        ax3.plot(it, val, color="tab:green")
        ax3.set_xlabel("iteration")
        ax3.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(output, format="png", dpi=100)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plot-log", help="plot the training curve of a Caffe-style training log",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", metavar="LOG", help="the training log (caffelite train or Caffe output)")
    p.add_argument("-o", "--output", default="curve.png", help="the PNG to write (default curve.png)")
    p.add_argument("--title", default="", help="title of the plot")
    return p


def run(args) -> int:
    if not os.path.isfile(args.log):
        raise CaffeFileNotFoundError("log file %s does not exist" % args.log, file=args.log)
    with open(args.log, encoding="utf-8", errors="replace") as f:
        parsed = parse_log(f.read())
    if not parsed["loss"] and not parsed["test"]:
        raise FileFormatError("no 'Iteration N, loss = X' or 'Test net output' lines in %s: "
                              "is it a Caffe training log?" % args.log, file=args.log)
    plot(parsed, args.output, args.title or os.path.basename(args.log))
    n_test = sum(len(v) for v in parsed["test"].values())
    print("Wrote %s (%d loss points, %d test points, %d lr points)"
          % (args.output, len(parsed["loss"]), n_test, len(parsed["lr"])))
    return 0
