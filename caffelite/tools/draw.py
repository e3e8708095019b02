"""``caffelite draw NET.prototxt -o net.svg|png|dot``: the net as a graph (logic in :mod:`caffelite.draw`)."""

from __future__ import annotations

import argparse


def _input(text: str):
    from caffelite.tools.check import _input as parse

    return parse(text)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "draw", help="draw a net as a graph (DOT, or SVG/PNG/PDF with Graphviz)",
        description="Write the net as a Graphviz graph: layers as boxes (in-place layers folded into the "
                    "layer before them), blobs as octagons. .dot is always written; other formats need `dot`.")
    p.add_argument("net", help="net prototxt")
    p.add_argument("-o", "--output", required=True, help="output file: .dot, .svg, .png, .pdf, ...")
    p.add_argument("--phase", choices=["TRAIN", "TEST", "ALL"], default="ALL",
                   help="draw the layers of one phase (default ALL: every layer, as pycaffe's draw_net)")
    p.add_argument("--shapes", action="store_true", help="label edges with the inferred blob shapes")
    p.add_argument("--input", action="append", type=_input, default=[], metavar="NAME=SHAPE",
                   help="shape of an input or data-layer top, for --shapes")
    p.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"], help="graph direction")
    p.add_argument("--allow-python-layers", action="store_true",
                   help="import Python layers' modules to infer their shapes")
    return p


def run(args) -> int:
    from caffelite.common import TEST, TRAIN
    from caffelite.draw import draw_file

    phase = {"TRAIN": TRAIN, "TEST": TEST, "ALL": None}[args.phase]
    draw_file(args.net, args.output, phase=phase, show_shapes=args.shapes, rankdir=args.rankdir,
              inputs=dict(args.input), allow_python_layers=args.allow_python_layers)
    print("wrote %s" % args.output)
    return 0
