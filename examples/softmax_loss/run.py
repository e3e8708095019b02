"""The seed article's worked example, run through caffelite.

Scores [1.2, 0.8] for one sample, label 1: Caffe subtracts the max ([0, -0.4]), exponentiates and
normalises ([0.5987, 0.4013]), and the loss is -log 0.4013 = 0.9130.  The gradient with respect to
the scores is (p - onehot(label)) / normalizer.
"""

import os

import numpy as np

import caffelite

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> dict:
    net = caffelite.Net(os.path.join(HERE, "net.prototxt"), caffelite.TRAIN)
    scores = np.array([[1.2, 0.8]], np.float32)
    net.blobs["fc1"].data[...] = scores
    net.blobs["label"].data[...] = [1]
    out = net.forward()
    net.backward()
    shifted = scores - scores.max(axis=1, keepdims=True)
    result = {"shifted": shifted[0], "prob": out["prob"][0], "loss": float(out["loss"]),
              "gradient": net.blobs["fc1"].diff[0]}
    print("scores         ", scores[0])
    print("minus the max  ", np.round(result["shifted"], 4))
    print("probabilities  ", np.round(result["prob"], 4))
    print("loss -log p[1] ", "%.4f" % result["loss"])
    print("d loss / d fc1 ", np.round(result["gradient"], 4), " = p - onehot(1), normalizer 1 (FULL)")
    print("loss weights    loss=%g prob=%g" % (net.blob_loss_weights["loss"], net.blob_loss_weights["prob"]))
    return result


if __name__ == "__main__":
    main()
