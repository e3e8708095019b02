"""Train LeNet on the 8x8 digits, the way Caffe's MNIST example trains: LMDBs, Data layers, a solver.

1. split data/digits.npz at random (fixed seed) into 1397 training and 400 test digits;
2. convert each split to an LMDB of Datum records with ``caffelite convert-imageset``
   (Caffe's examples/mnist/create_mnist.sh step), in a build folder that is not committed;
3. train with lenet_solver.prototxt (``caffelite.get_solver`` + ``solve``, as ``caffelite train``
   does) from that folder, since the prototxt's data sources are relative to the working directory;
4. print the final test accuracy (the target is >= 0.95).

Usage: python examples/digits/train.py [--workdir DIR] [--max-iter N] [--plot curve.png]
Then, by hand: cd DIR && caffelite train -solver lenet_solver.prototxt
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import caffelite
import caffelite.upgrade
from caffelite import cli

HERE = os.path.dirname(os.path.abspath(__file__))
N_TEST = 400


def prepare(workdir: str) -> None:
    """Write the train/test LMDBs and copy the prototxts into ``workdir``."""
    z = np.load(os.path.join(HERE, "data", "digits.npz"))
    # a fixed random split: the file's last rows come from writers unlike the rest
    order = np.random.default_rng(1701).permutation(len(z["labels"]))
    images, labels = z["images"][order], z["labels"][order]
    splits = {"train": slice(0, len(images) - N_TEST), "test": slice(len(images) - N_TEST, None)}
    for name, rows in splits.items():
        npz = os.path.join(workdir, "digits_%s.npz" % name)
        np.savez(npz, images=images[rows], labels=labels[rows])
        db = os.path.join(workdir, "digits_%s_lmdb" % name)
        if os.path.exists(db):
            shutil.rmtree(db)
        if cli.main(["convert-imageset", npz, db]) != 0:
            raise SystemExit("convert-imageset failed for the %s split" % name)
    for fn in ("lenet_train_test.prototxt", "lenet_solver.prototxt"):
        shutil.copy(os.path.join(HERE, fn), workdir)


def test_accuracy(solver) -> float:
    """Mean accuracy of the test net over test_iter batches (the whole 400-digit test set)."""
    net = solver.test_nets[0]
    net.share_with(solver.net)
    values = []
    for _ in range(solver.param.test_iter[0]):
        net.forward()
        values.append(float(np.asarray(net.blobs["accuracy"].data).ravel()[0]))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="build folder for the LMDBs, snapshots and log (default: a temporary one)")
    ap.add_argument("--max-iter", type=int, default=None, help="override the solver's max_iter")
    ap.add_argument("--plot", help="also draw the training curve into this PNG (needs matplotlib)")
    args = ap.parse_args(argv)

    temporary = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="caffelite-digits-") if temporary else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    plot = os.path.abspath(args.plot) if args.plot else None
    cwd = os.getcwd()
    root = logging.getLogger("caffelite")
    log_file = logging.FileHandler(os.path.join(workdir, "train.log"), mode="w")
    console = logging.StreamHandler(sys.stdout)
    for handler in (log_file, console):
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        start = time.perf_counter()
        prepare(workdir)
        os.chdir(workdir)  # data sources and the solver's net path are relative to it, as in Caffe
        param = caffelite.upgrade.read_solver_param("lenet_solver.prototxt")
        if args.max_iter is not None:
            param.max_iter = args.max_iter
        solver = caffelite.solvers.create_solver(param, "lenet_solver.prototxt")
        solver.solve()
        accuracy = test_accuracy(solver)
        log_file.flush()
        if plot:
            cli.main(["plot-log", os.path.join(workdir, "train.log"), "-o", plot])
        print("final test accuracy: %.4f (%d digits, %.1f s)" % (accuracy, N_TEST, time.perf_counter() - start))
        return accuracy
    finally:
        os.chdir(cwd)
        for handler in (log_file, console):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
