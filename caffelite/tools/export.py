"""``caffelite export NET.prototxt [--weights W.caffemodel] -o model.onnx``: the net as an ONNX model.

The logic lives in :mod:`caffelite.onnx`; this module is the command line.  ``--verify`` runs the
model in onnxruntime and the same inputs through caffelite, prints each output's differences, and
exits with status 1 when one exceeds a relative 1e-4.
"""

from __future__ import annotations

import argparse
import os
import sys


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError("expected NAME=N,C,H,W with positive sizes, e.g. data=1,3,224,224 (got %r)"
                                         % text)
    return name, shape


def _file_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=FILE.npy (got %r)" % text)
    return name, path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from caffelite.onnx.exporter import DEFAULT_OPSET

    p = subparsers.add_parser(
        "export", help="export a net (and its weights) to ONNX, verified against caffelite",
        description="Build the net as caffelite runs it (TEST phase by default), turn its data layers into graph "
                    "inputs, leave out loss and Accuracy layers (their bottoms become outputs), and write an ONNX "
                    "model whose every layer has Caffe's exact semantics.")
    p.add_argument("net", help="net prototxt (any Caffe format version)")
    p.add_argument("--weights", help=".caffemodel (or .h5) with the trained parameters (default: the fillers')")
    p.add_argument("-o", "--output-file", required=True, metavar="MODEL.onnx", help="where to write the model")
    p.add_argument("--input", action="append", type=_shape_arg, default=[], metavar="NAME=N,C,H,W",
                   help="shape of a data-layer top (needed where it comes from data files), or a new shape for a "
                        "declared input (same axes and channels); repeatable")
    p.add_argument("--phase", choices=["TRAIN", "TEST"], default="TEST", help="NetState phase (default TEST)")
    p.add_argument("--stage", action="append", default=None, help="NetState stage (repeatable)")
    p.add_argument("--level", type=int, default=0, help="NetState level (default 0)")
    p.add_argument("--output", action="append", default=None, metavar="BLOB",
                   help="expose this blob as an output instead of the default ones (repeatable)")
    p.add_argument("--dynamic-batch", action="store_true", help="make axis 0 of the inputs and outputs symbolic")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default %d: the newest that both "
                   "onnxruntime and OpenCV 5 load; 17 for older runtimes)" % DEFAULT_OPSET)
    p.add_argument("--verify", action="store_true",
                   help="check the model and compare onnxruntime's outputs with caffelite's (exit 1 beyond 1e-4)")
    p.add_argument("--verify-input", action="append", type=_file_arg, default=[], metavar="NAME=FILE.npy",
                   help="input values for --verify (default: standard normal of the declared shape); repeatable")
    return p


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def run(args) -> int:
    import numpy as np

    import caffelite
    from caffelite.errors import CaffeFileNotFoundError, NetError, ShapeError
    from caffelite.onnx import convert, random_feeds, save, verify

    if not os.path.isfile(args.net):
        raise CaffeFileNotFoundError("net file not found: %s" % args.net, file=args.net)
    if args.weights and not os.path.isfile(args.weights):
        raise CaffeFileNotFoundError("weights file not found: %s" % args.weights, file=args.weights)
    phase = caffelite.TRAIN if args.phase == "TRAIN" else caffelite.TEST
    exported = convert(args.net, args.weights, dict(args.input) or None, phase=phase, stages=args.stage,
                       level=args.level, outputs=args.output, dynamic_batch=args.dynamic_batch,
                       opset=args.opset)
    save(exported.model, args.output_file)
    size = sum(len(t.raw_data) for t in exported.model.graph.initializer)
    opset = exported.model.opset_import[0].version
    print("wrote %s: opset %d, %d nodes, %.1f MB of weights" % (args.output_file, opset, len(exported.model.graph.node),
                                                               size / 1e6))
    for name, shape in exported.inputs.items():
        print("  input  %-24s %s" % (name, _shape(shape)))
    for name, blob in exported.blobs.items():
        print("  output %-24s %s" % (name, _shape(exported.net.blobs[blob].shape)))
    if not args.verify:
        return 0
    feeds = random_feeds(exported)
    for name, path in args.verify_input:
        if name not in exported.inputs:
            raise NetError("--verify-input %s: not an input of the exported model (inputs: %s)"
                           % (name, ", ".join(exported.inputs)), file=path, field="verify-input")
        if not os.path.isfile(path):
            raise CaffeFileNotFoundError("input file not found: %s" % path, file=path)
        value = np.load(path).astype(np.float32)
        want = exported.inputs[name]
        if value.shape != tuple(want) and not (args.dynamic_batch and value.shape[1:] == tuple(want[1:])):
            raise ShapeError("--verify-input %s: %s has shape %s, the input is %s"
                             % (name, path, _shape(value.shape), _shape(want)), file=path, field="verify-input")
        feeds[name] = value
    diffs = verify(exported, feeds, model_path=args.output_file)
    worst = max(d.max_rel for d in diffs)
    print("verify: onnx.checker (full check) passed; onnxruntime vs caffelite:")
    for d in diffs:
        print("  %-24s max abs %.3g  max rel %.3g  %s" % (d.name, d.max_abs, d.max_rel, "ok" if d.ok() else "DIFFERS"))
    if worst > 1e-4:
        print("caffelite export: the ONNX model differs from caffelite's forward (max relative difference %.3g "
              "> 1e-4)" % worst, file=sys.stderr)
        return 1
    print("verify: equal within 1e-4 (max relative difference %.3g)" % worst)
    return 0
