"""What exporting buys: batch-1 inference of exported nets in onnxruntime beside caffelite's own forward, and the
time to export ResNet-152 with its weights (the issue's target: under 5 s).

Each net comes from the corpus, gets random He-scaled weights, and is exported with ``caffelite.onnx``; both
runtimes then run the same input, alternating blocks of iterations in the same process (median times).  The
ratio is onnxruntime's time over caffelite's (< 1: onnxruntime is faster).  onnxruntime uses its default
settings (all graph optimisations, its default threads).

Run: ``python -m benchmarks.onnx_export`` (or ``make bench``).  Needs the [onnx] extra and onnxruntime.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np

import caffelite
from benchmarks.nets import RESNET152, corpus_path

NETS = [
    ("AlexNet", "BVLC__caffe/models/bvlc_alexnet/deploy.prototxt", 227),
    ("GoogLeNet", "BVLC__caffe/models/bvlc_googlenet/deploy.prototxt", 224),
    ("ResNet-50", "KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", 224),
    ("SqueezeNet-1.1", "forresti__SqueezeNet/SqueezeNet_v1.1/deploy.prototxt", 227),
    ("MobileNet", "shicai__MobileNet-Caffe/mobilenet_deploy.prototxt", 224),
]


def _he(net: caffelite.Net, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for i, blob in enumerate(layer.blobs):
            shape = blob.data.shape
            if layer.layer_param.type == "BatchNorm":
                blob.data[...] = [np.zeros(shape), np.ones(shape), np.ones(shape)][i]
            elif len(shape) >= 2:
                blob.data[...] = rng.standard_normal(shape, dtype=np.float32) * np.sqrt(2.0 / np.prod(shape[1:]))
            else:
                blob.data[...] = 1.0 if layer.layer_param.type == "Scale" and i == 0 else 0.0


def _median_alternating(runs: dict, blocks: int = 5, per_block: int = 2) -> dict:
    times = {name: [] for name in runs}
    for _ in range(blocks):
        for name, fn in runs.items():
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> dict:
    try:
        import onnxruntime as ort

        import caffelite.onnx as conx
    except ImportError as e:
        print("onnx export benchmark skipped: %s (pip install caffelite[onnx] onnxruntime)" % e)
        return {}
    results = {"nets": []}
    for name, rel, size in NETS:
        prototxt = corpus_path(rel)
        net = caffelite.Net(prototxt, caffelite.TEST)
        net.blobs["data"].reshape(1, 3, size, size)
        net.reshape()
        _he(net)
        exported = conx.convert(net, inputs={"data": (1, 3, size, size)})
        session = ort.InferenceSession(exported.model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(1).standard_normal((1, 3, size, size), dtype=np.float32)
        cnet = exported.net
        cnet.blobs["data"].data[...] = x

        def run_ort(session=session, x=x, outputs=exported.outputs):
            session.run(outputs, {"data": x})

        run_ort()
        cnet.forward()
        t = _median_alternating({"caffelite": cnet.forward, "onnxruntime": run_ort})
        results["nets"].append((name, t["caffelite"], t["onnxruntime"]))
        del session, exported, net, cnet

    # ResNet-152: export from the prototxt and a .caffemodel, as `caffelite export` does
    prototxt = corpus_path(RESNET152)
    net = caffelite.Net(prototxt, caffelite.TEST)
    _he(net)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "resnet152.caffemodel")
        net.save(weights)
        del net
        times = []
        for _ in range(2):
            start = time.perf_counter()
            conx.export(prototxt, os.path.join(tmp, "resnet152.onnx"), weights=weights)
            times.append(time.perf_counter() - start)
        results["resnet152_export_s"] = min(times)
        results["resnet152_onnx_mb"] = os.path.getsize(os.path.join(tmp, "resnet152.onnx")) / 1e6
    return results


def report(results: dict) -> None:
    if not results:
        return
    print("ONNX export: batch-1 inference, caffelite forward vs the exported model in onnxruntime")
    print("  %-16s %12s %14s %8s" % ("net", "caffelite ms", "onnxruntime ms", "ratio"))
    for name, caffe_t, ort_t in results["nets"]:
        print("  %-16s %12.1f %14.1f %8.3f" % (name, caffe_t * 1e3, ort_t * 1e3, ort_t / caffe_t))
    print("  ResNet-152 export with weights (prototxt + .caffemodel -> %.0f MB .onnx): %.2f s (target < 5 s)"
          % (results["resnet152_onnx_mb"], results["resnet152_export_s"]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    report(main())
