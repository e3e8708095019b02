"""Batch-1 inference of real deploy nets, caffelite against OpenCV 4.14's dnn (``readNetFromCaffe``).

Each net comes from the corpus with its input set to batch 1 and random He-scaled weights saved as a
``.caffemodel`` (see :func:`prepare`); the same prototxt, weights and input go to three worker
processes: caffelite with its default threads, caffelite with one thread, and OpenCV 4.14 (installed
apart from the test environment, which holds OpenCV 5: ``make bench`` puts it in ``.venv/opencv4``).
The workers run in turns (a few forwards each, repeated, after WARMUP untimed ones), so a change in the
machine's load hits all of them; the figures are medians.  Every net runs twice: on the machine as it
is, and with a competing busy process on one core.  Reported per net: median ms of each engine,
caffelite / OpenCV, caffelite / caffelite one-thread, the max output difference (relative to the
output's largest value), each worker's peak resident memory, and the load average.

Last, FCN-8s at 500x500: caffelite's peak memory for one forward (its own process) beside BVLC Caffe's
by Caffe's allocation rule (:func:`caffe_peak_mb`).

Run: ``python -m benchmarks.inference`` (or ``make bench``); ``--nets AlexNet,MobileNet`` picks nets,
``--profile NET`` prints caffelite's time per layer, ``--memory`` runs the FCN-8s part alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPENCV4 = os.environ.get("CAFFELITE_OPENCV4", os.path.join(ROOT, ".venv", "opencv4"))

# (name, corpus file, target caffelite / OpenCV on a quiet machine, from issue 12)
NETS = [
    ("AlexNet", "BVLC__caffe/models/bvlc_alexnet/deploy.prototxt", 1.0),
    ("GoogLeNet", "BVLC__caffe/models/bvlc_googlenet/deploy.prototxt", 1.0),
    ("ResNet-50", "KaimingHe__deep-residual-networks/prototxt/ResNet-50-deploy.prototxt", 1.0),
    ("SqueezeNet 1.1", "forresti__SqueezeNet/SqueezeNet_v1.1/deploy.prototxt", 1.0),
    ("MobileNet", "shicai__MobileNet-Caffe/mobilenet_deploy.prototxt", 1.5),
]
ROUNDS, PER_ROUND = 5, 3  # turns per engine, forwards per turn
WARMUP = 8  # untimed forwards first, for every engine


def prepare(rel: str, folder: str) -> tuple[str, str, str]:
    """(prototxt, caffemodel, input .npy) of the corpus net at batch 1 with He-scaled random weights."""
    import caffelite
    from benchmarks.nets import corpus_path
    from caffelite.protoio import write_text_proto
    from caffelite.upgrade import read_net_param

    param = read_net_param(corpus_path(rel))
    for layer in param.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                shape.dim[0] = 1
    for shape in param.input_shape:
        shape.dim[0] = 1
    if param.input_dim:
        param.input_dim[0] = 1
    stem = os.path.join(folder, os.path.basename(os.path.dirname(rel)) + "_" + os.path.basename(rel)[:-9])
    write_text_proto(stem + ".prototxt", param)
    net = caffelite.Net(stem + ".prototxt", caffelite.TEST)
    rng = np.random.default_rng(0)
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].layer_type()
        if kind == "BatchNorm":  # mean, variance, moving-average factor
            blobs[0].data[...] = rng.normal(0, 0.1, blobs[0].shape)
            blobs[1].data[...] = rng.uniform(0.5, 1.5, blobs[1].shape)
            blobs[2].data[...] = 1
            continue
        for i, b in enumerate(blobs):
            fan_in = int(np.prod(b.shape[1:])) if b.data.ndim > 1 else 1
            if kind == "Scale" and i == 0:
                b.data[...] = rng.uniform(0.5, 1.5, b.shape)
            elif b.data.ndim > 1:
                b.data[...] = rng.normal(0, np.sqrt(2.0 / fan_in), b.shape)
            else:
                b.data[...] = rng.normal(0, 0.01, b.shape)
    net.save(stem + ".caffemodel")
    data = rng.uniform(-1, 1, net.blobs[net.inputs[0]].shape).astype(np.float32)
    np.save(stem + ".npy", data)
    return stem + ".prototxt", stem + ".caffemodel", stem + ".npy"


# --- workers: one engine each, driven over stdin ("run K" -> JSON times; "out PATH" -> saves the output) ---
def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def compared_blob(prototxt: str) -> tuple[str, str]:
    """(blob, layer producing it) whose values the engines are compared on: the input of a final Softmax
    (random weights saturate the probabilities), else the last layer's top."""
    from caffelite.upgrade import read_net_param
    layers = list(read_net_param(prototxt).layer)
    last = layers[-1]
    blob = last.bottom[0] if last.type == "Softmax" else last.top[0]
    producer = [lp.name for lp in layers if blob in lp.top and lp.type != "Softmax"][-1]
    return blob, producer


def _worker(engine: str, prototxt: str, weights: str, data_path: str) -> None:
    data = np.load(data_path)
    blob, producer = compared_blob(prototxt)
    if engine == "opencv":
        import cv2
        net = cv2.dnn.readNetFromCaffe(prototxt, weights)

        def forward():
            net.setInput(data)
            return net.forward(producer)
    else:
        import caffelite
        if engine == "caffelite-1":
            caffelite.set_num_threads(1)
        net = caffelite.Net(prototxt, caffelite.TEST, weights=weights)
        name = net.inputs[0]

        def forward():
            net.blobs[name].data[...] = data
            net.forward()
            return net.blobs[blob].data
    for _ in range(WARMUP):  # allocation, page faults, and caffelite's tuners' first trials (threads or not)
        out = forward()
    for line in sys.stdin:
        cmd, arg = line.split()
        if cmd == "run":
            times = []
            for _ in range(int(arg)):
                t0 = time.perf_counter()
                out = forward()
                times.append(time.perf_counter() - t0)
            reply = {"times": times, "rss_mb": _peak_mb()}
        else:
            np.save(arg, np.asarray(out, np.float32))
            reply = {}
        print(json.dumps(reply), flush=True)


class Worker:
    def __init__(self, engine: str, files, env: dict):
        self.engine = engine
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.inference", "--worker", engine, *files],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the %s worker stopped (see its error above)" % self.engine)
        return json.loads(reply)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _busy_core() -> subprocess.Popen:
    """A competing process spinning on one core (the last one this process may use)."""
    core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    code = "import os\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {%d})\nwhile True: pass" % core
    return subprocess.Popen([sys.executable, "-c", code])


def opencv_available() -> bool:
    env = dict(os.environ, PYTHONPATH=OPENCV4)
    r = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], env=env,
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.startswith("4.")


def measure(files, engines, loaded: bool) -> dict:
    """Median seconds, peak memory and output of each engine, in turns; with a busy core when ``loaded``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, OPENCV4]))
    # The busy core first, and one worker warming up at a time: caffelite's tuners choose threads or not in
    # the warm-up forwards, so these run under the load they are timed in (three workers warming up at once
    # on two cores made the quiet run's tuners learn on a loaded machine and keep one thread).
    busy = _busy_core() if loaded else None
    workers = []
    try:
        for e in engines:
            workers.append(Worker(e, files, env))
            workers[-1].ask("run 0")  # answered once its warm-up is done
        times = {e: [] for e in engines}
        rss = {}
        load = os.getloadavg()
        for _ in range(ROUNDS):
            for w in workers:
                reply = w.ask("run %d" % PER_ROUND)
                times[w.engine] += reply["times"]
                rss[w.engine] = reply["rss_mb"]
        outs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for w in workers:
                w.ask("out " + os.path.join(tmp, w.engine + ".npy"))
                outs[w.engine] = np.load(os.path.join(tmp, w.engine + ".npy"))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        for w in workers:
            w.close()
    return {"ms": {e: 1e3 * statistics.median(t) for e, t in times.items()}, "rss_mb": rss, "out": outs,
            "load": (load, os.getloadavg())}


def main(nets=None) -> list[dict]:
    have_cv = opencv_available()
    if not have_cv:
        print("OpenCV 4.14 not found in %s (pip install --target %s opencv-python-headless==4.14.0.94): "
              "caffelite alone" % (OPENCV4, OPENCV4))
    engines = ["caffelite", "caffelite-1"] + (["opencv"] if have_cv else [])
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name, rel, target in NETS:
            if nets and name not in nets:
                continue
            files = prepare(rel, folder)
            row = {"net": name, "target": target}
            for loaded in (False, True):
                row["loaded" if loaded else "quiet"] = measure(files, engines, loaded)
            results.append(row)
            report_row(row)
    if not nets:
        fcn_memory()
    return results


FCN8S = "shelhamer__fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt"


def _fcn_worker() -> None:
    """One TEST forward of FCN-8s at 500x500 with random weights; prints peak memory and time as JSON."""
    import caffelite
    from benchmarks.nets import corpus_path
    net = caffelite.Net(corpus_path(FCN8S), caffelite.TEST)
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.standard_normal(b.shape, dtype=np.float32) * np.float32(0.01)
    net.blobs["data"].data[...] = rng.uniform(-1, 1, net.blobs["data"].shape)
    t0 = time.perf_counter()
    net.forward()
    print(json.dumps({"peak_mb": _peak_mb(), "seconds": time.perf_counter() - t0}))


def caffe_peak_mb(rel: str = FCN8S) -> float:
    """BVLC Caffe's memory for one TEST forward by its allocation rule: every blob, the weights, and the
    column buffer that each non-1x1 (de)convolution layer keeps for itself (base_conv_layer.hpp)."""
    import math

    import caffelite
    from benchmarks.nets import corpus_path
    net = caffelite.Net(corpus_path(rel), caffelite.TEST)
    total = sum(b.count for b in net.blobs.values()) + sum(b.count for bs in net.params.values() for b in bs)
    for layer in net.layers:
        if layer.layer_type() in ("Convolution", "Deconvolution") and not layer.geom.is_1x1:
            spatial = layer.in_spatial if layer.layer_type() == "Deconvolution" else layer.out_spatial
            channels = layer.num_output if layer.layer_type() == "Deconvolution" else layer.channels
            total += channels * math.prod(layer.geom.kernel) * math.prod(spatial)
    return total * 4 / 2 ** 20


def fcn_memory() -> None:
    """FCN-8s at 500x500, one forward in its own process: caffelite's peak memory against Caffe's rule."""
    r = subprocess.run([sys.executable, "-m", "benchmarks.inference", "--fcn-worker"], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    if r.returncode:
        print("FCN-8s: the worker failed:\n" + r.stderr[-2000:])
        return
    m = json.loads(r.stdout.strip().splitlines()[-1])
    print("FCN-8s 500x500  caffelite peak %.0f MB, forward %.1f s (load %.1f); BVLC Caffe by its allocation "
          "rule %.0f MB" % (m["peak_mb"], m["seconds"], os.getloadavg()[0], caffe_peak_mb()))


def report_row(row: dict) -> None:
    for cond in ("quiet", "loaded"):
        m = row[cond]
        ms = m["ms"]
        ref = m["out"].get("opencv")
        diff = ""
        if ref is not None:
            d = np.abs(m["out"]["caffelite"].reshape(ref.shape) - ref).max() / max(np.abs(ref).max(), 1e-30)
            diff = "  max diff %.1e" % d
        ratio = ("  vs OpenCV %.2f (target %.1f)" % (ms["caffelite"] / ms["opencv"], row["target"])
                 if "opencv" in ms else "")
        print("%-15s %-6s caffelite %7.1f ms  1-thread %7.1f ms  %s%s  vs 1-thread %.2f%s  peak MB %s  load %.1f/%.1f"
              % (row["net"], cond, ms["caffelite"], ms["caffelite-1"],
                 "OpenCV %7.1f ms" % ms["opencv"] if "opencv" in ms else "", ratio,
                 ms["caffelite"] / ms["caffelite-1"], diff,
                 "/".join("%.0f" % v for v in m["rss_mb"].values()), m["load"][0][0], m["load"][1][0]))
    if "opencv" in row["loaded"]["ms"]:
        q, lo = row["quiet"]["ms"]["caffelite"], row["loaded"]["ms"]["caffelite"]
        print("%-15s loaded / quiet %.2f (target <= 1.5)" % (row["net"], lo / q))


def report(results) -> None:
    """Printed as each net finishes (:func:`report_row`)."""


def profile(name: str, reps: int = 5) -> None:
    """caffelite's median forward time per layer for net ``name`` at batch 1."""
    import caffelite
    rel = dict((n, r) for n, r, _ in NETS)[name]
    with tempfile.TemporaryDirectory() as folder:
        prototxt, weights, data = prepare(rel, folder)
        net = caffelite.Net(prototxt, caffelite.TEST, weights=weights)
        net.blobs[net.inputs[0]].data[...] = np.load(data)
        net.forward()
        per = {i: [] for i in range(len(net.layers))}
        for _ in range(reps):
            for i in range(len(net.layers)):
                t0 = time.perf_counter()
                net.forward_from_to(i, i)
                per[i].append(time.perf_counter() - t0)
    rows = sorted(((statistics.median(t), i) for i, t in per.items()), reverse=True)
    total = sum(t for t, _ in rows)
    print("%s: %.1f ms in all (load %.1f)" % (name, 1e3 * total, os.getloadavg()[0]))
    by_type: dict = {}
    for t, i in rows:
        by_type[net.layers[i].layer_type()] = by_type.get(net.layers[i].layer_type(), 0.0) + t
    print("  by type: " + ", ".join("%s %.1f ms" % (k, 1e3 * v)
                                    for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])))
    for t, i in rows[:25]:
        layer = net.layers[i]
        print("  %-28s %-14s %7.2f ms %5.1f%%  %s" % (net._layer_names[i], layer.layer_type(), 1e3 * t,
                                                   100 * t / total, list(net._blob_list[net._top_ids[i][0]].shape)
                                                   if net._top_ids[i] else ""))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=4, metavar=("ENGINE", "PROTOTXT", "WEIGHTS", "INPUT"))
    ap.add_argument("--nets", help="comma-separated names (default: all)")
    ap.add_argument("--profile", metavar="NET")
    ap.add_argument("--fcn-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true", help="FCN-8s's peak memory only")
    a = ap.parse_args()
    if a.worker:
        _worker(*a.worker)
    elif a.fcn_worker:
        _fcn_worker()
    elif a.memory:
        fcn_memory()
    elif a.profile:
        profile(a.profile)
    else:
        main(a.nets.split(",") if a.nets else None)
