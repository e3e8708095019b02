"""Digits LeNet (trained by ``make demo``'s example) -> ONNX -> onnxruntime, predicting what caffelite predicts.

1. train LeNet on the 8x8 digits with examples/digits/train.py (or take ``--weights`` from an earlier run);
2. ``caffelite export lenet_train_test.prototxt --weights lenet_iter_N.caffemodel --input data=400,1,8,8
   -o lenet.onnx --verify``: the Data layers become the graph input ``data``; the loss and Accuracy layers are
   left out, so their bottom ``ip2`` (the class scores) is the output;
3. run the 400 test digits through onnxruntime and through caffelite: the same scores, the same classes.

The Data layer's ``transform_param`` (here ``scale: 0.0625``) is preprocessing, not part of the graph: the
model's input is the transformed image, as in a Caffe deploy net.

Usage: python examples/onnx_export/export_digits.py [--weights lenet_iter_1000.caffemodel] [--max-iter N]
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import tempfile

import numpy as np

import caffelite
import caffelite.onnx
from caffelite import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "digits")
N_TEST = 400


def test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 400 test digits of examples/digits/train.py (same split), transformed as its Data layer does."""
    z = np.load(os.path.join(DIGITS, "data", "digits.npz"))
    order = np.random.default_rng(1701).permutation(len(z["labels"]))
    images, labels = z["images"][order][-N_TEST:], z["labels"][order][-N_TEST:]
    return images[:, None].astype(np.float32) * np.float32(0.0625), labels


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a trained lenet .caffemodel (default: train one now)")
    ap.add_argument("--max-iter", type=int, default=1000, help="training iterations when training here")
    ap.add_argument("--workdir", help="where to keep the model files (default: a temporary folder)")
    args = ap.parse_args(argv)
    temporary = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="caffelite-onnx-") if temporary else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    try:
        weights = args.weights
        if weights is None:
            train = runpy.run_path(os.path.join(DIGITS, "train.py"))["main"]
            train(["--workdir", workdir, "--max-iter", str(args.max_iter)])
            weights = os.path.join(workdir, "lenet_iter_%d.caffemodel" % args.max_iter)
        prototxt = os.path.join(DIGITS, "lenet_train_test.prototxt")
        model = os.path.join(workdir, "lenet.onnx")
        status = cli.main(["export", prototxt, "--weights", weights, "--input", "data=%d,1,8,8" % N_TEST,
                           "-o", model, "--verify"])
        if status != 0:
            raise SystemExit("caffelite export --verify failed")

        images, labels = test_digits()
        import onnxruntime

        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        onnx_scores = session.run(["ip2"], {"data": images})[0]
        exported = caffelite.onnx.convert(prototxt, weights, {"data": images.shape})
        net = exported.net  # caffelite's net, as exported: the Data layer is an input
        net.blobs["data"].data[...] = images
        net.forward()
        caffe_scores = net.blobs["ip2"].data.copy()
        same = bool(np.array_equal(onnx_scores.argmax(1), caffe_scores.argmax(1)))
        rel = float(np.abs(onnx_scores - caffe_scores).max() / np.abs(caffe_scores).max())
        accuracy = float((onnx_scores.argmax(1) == labels).mean())
        print("onnxruntime: test accuracy %.4f; same classes as caffelite: %s; max relative difference %.2g"
              % (accuracy, same, rel))
        return {"accuracy": accuracy, "same_classes": same, "max_rel": rel}
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
