"""The classic pycaffe classification flow, on caffelite: train a small digits net, then classify images.

Written as a pycaffe script (the "classification" notebook's steps), with one caffelite line:
``import caffelite.compat`` before ``import caffe``.  Remove that line and the script runs on
BVLC's pycaffe.

1. train a small InnerProduct/ReLU net on the 8x8 digits with ``caffe.SGDSolver``, feeding
   batches into the train net's Input blobs (a few hundred iterations, a few seconds);
   save ``digits_mlp.caffemodel`` and the training mean as Caffe's ``mean.binaryproto``;
2. write a few held-out digits as image files (PGM);
3. the classification flow: ``caffe.Net(deploy, weights, caffe.TEST)``; the mean from the
   ``.binaryproto`` (``caffe.io.blobproto_to_array``) averaged to a per-channel value;
   a ``caffe.io.Transformer`` (transpose, raw scale, mean, input scale);
   ``caffe.io.load_image``, ``net.forward()``, and the top-5 classes of each image.

Usage: python examples/pycaffe_classify/classify.py [--workdir DIR] [--iters N]
Needs Pillow for ``caffe.io.load_image`` (``pip install 'caffelite[image]'``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np

# isort: off
import caffelite.compat  # noqa: F401  (the one caffelite line: `import caffe` is caffelite from here on)
import caffe
# isort: on

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "digits", "data", "digits.npz")
BATCH = 64
N_TEST = 400
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

TRAIN_NET = """name: "digits_mlp"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %(batch)d dim: 1 dim: 8 dim: 8 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: %(batch)d } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 64 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

DEPLOY_NET = """name: "digits_mlp"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param { num_output: 64 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
"""

SOLVER = """net: "%(net)s"
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 100
max_iter: %(iters)d
snapshot_after_train: false
random_seed: 1701
"""


def load_digits():
    """The digits as 0..255 images (N x 1 x 8 x 8) and labels, split into train and test."""
    z = np.load(DIGITS)
    order = np.random.RandomState(1701).permutation(len(z["labels"]))
    images = z["images"][order].astype(np.float32)[:, np.newaxis] * (255.0 / 16.0)
    labels = z["labels"][order].astype(np.float32)
    return (images[:-N_TEST], labels[:-N_TEST]), (images[-N_TEST:], labels[-N_TEST:])


def train(workdir, train_set, iters):
    """Train with caffe.SGDSolver, feeding each batch into the Input blobs; save weights and mean."""
    images, labels = train_set
    mean = images.mean(axis=0)  # the mean image (1 x 8 x 8), as compute_image_mean makes
    with open(os.path.join(workdir, "mean.binaryproto"), "wb") as f:
        f.write(caffe.io.array_to_blobproto(mean[np.newaxis]).SerializeToString())
    mu = mean.mean(axis=(1, 2))[:, np.newaxis, np.newaxis]  # train with the per-channel mean
    with open(os.path.join(workdir, "train.prototxt"), "w") as f:
        f.write(TRAIN_NET % {"batch": BATCH})
    with open(os.path.join(workdir, "solver.prototxt"), "w") as f:
        f.write(SOLVER % {"net": os.path.join(workdir, "train.prototxt"), "iters": iters})

    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(os.path.join(workdir, "solver.prototxt"))
    rng = np.random.RandomState(0)
    for it in range(iters):
        batch = rng.randint(0, len(images), BATCH)
        solver.net.blobs["data"].data[...] = (images[batch] - mu) / 255.0
        solver.net.blobs["label"].data[...] = labels[batch]
        solver.step(1)
        if it % 100 == 0 or it == iters - 1:
            print("iteration %4d  loss %.4f" % (it, float(solver.net.blobs["loss"].data)))
    weights = os.path.join(workdir, "digits_mlp.caffemodel")
    solver.net.save(weights)
    return weights


def write_images(workdir, test_set, count):
    """Save ``count`` held-out digits as 8-bit PGM files (what a user would have on disk)."""
    images, labels = test_set
    paths = []
    for i in range(count):
        path = os.path.join(workdir, "digit_%d.pgm" % i)
        with open(path, "wb") as f:
            f.write(b"P5\n8 8\n255\n" + np.round(images[i, 0]).astype(np.uint8).tobytes())
        paths.append((path, int(labels[i])))
    return paths


def classify(workdir, weights, test_set, image_files):
    """The pycaffe classification flow: Net, mean, Transformer, load_image, forward, top-5."""
    deploy = os.path.join(workdir, "deploy.prototxt")
    with open(deploy, "w") as f:
        f.write(DEPLOY_NET)
    net = caffe.Net(deploy, weights, caffe.TEST)

    # the mean image from Caffe's binaryproto, averaged over pixels: one value per channel
    blob = caffe.proto.caffe_pb2.BlobProto()
    with open(os.path.join(workdir, "mean.binaryproto"), "rb") as f:
        blob.ParseFromString(f.read())
    mu = caffe.io.blobproto_to_array(blob)[0].mean(1).mean(1)
    print("mean pixel value per channel:", mu)

    transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    transformer.set_transpose("data", (2, 0, 1))  # H x W x C -> C x H x W
    transformer.set_raw_scale("data", 255)        # load_image gives [0, 1]; the net saw [0, 255]
    transformer.set_mean("data", mu)              # subtract the per-channel mean
    transformer.set_input_scale("data", 1 / 255.0)

    # accuracy over the held-out digits, in one batch
    images, labels = test_set
    net.blobs["data"].reshape(len(images), 1, 8, 8)
    batch = [transformer.preprocess("data", im.transpose(1, 2, 0) / 255.0) for im in images]
    net.blobs["data"].data[...] = np.array(batch)
    accuracy = float((net.forward()["prob"].argmax(axis=1) == labels).mean())
    print("accuracy on %d held-out digits: %.3f" % (len(labels), accuracy))

    # classify image files, as the notebook classifies cat.jpg
    net.blobs["data"].reshape(len(image_files), 1, 8, 8)
    for i, (path, _) in enumerate(image_files):
        image = caffe.io.load_image(path, color=False)  # H x W x 1 in [0, 1]
        net.blobs["data"].data[i] = transformer.preprocess("data", image)
    output = net.forward()
    results = []
    for i, (path, label) in enumerate(image_files):
        prob = output["prob"][i]
        top_inds = prob.argsort()[::-1][:5]
        print("%s (true: %s): predicted %s; top-5: %s" % (
            os.path.basename(path), LABELS[label], LABELS[prob.argmax()],
            ", ".join("%s %.3f" % (LABELS[k], prob[k]) for k in top_inds)))
        results.append({"file": path, "label": label, "top5": [int(k) for k in top_inds]})
    return accuracy, results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="folder for the prototxts, weights and images (default: a temporary one)")
    ap.add_argument("--iters", type=int, default=600, help="training iterations (default 600)")
    ap.add_argument("--images", type=int, default=5, help="how many image files to classify (default 5)")
    args = ap.parse_args(argv)
    temporary = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="pycaffe-classify-") if temporary else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    try:
        caffe.set_random_seed(1701)
        train_set, test_set = load_digits()
        weights = train(workdir, train_set, args.iters)
        image_files = write_images(workdir, test_set, args.images)
        accuracy, results = classify(workdir, weights, test_set, image_files)
        return {"accuracy": accuracy, "results": results}
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
