"""The examples run (smoke tests) and print what they promise."""

import os
import runpy

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_seed_softmax_loss_example(capsys):
    result = runpy.run_path(os.path.join(ROOT, "examples", "softmax_loss", "run.py"))["main"]()
    scores = np.array([1.2, 0.8])
    p = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(result["prob"], p, rtol=1e-6)
    np.testing.assert_allclose(result["loss"], -np.log(p[1]), rtol=1e-6)
    np.testing.assert_allclose(result["gradient"], p - [0, 1], rtol=1e-5)
    out = capsys.readouterr().out
    # the seed article's numbers, to its four decimals
    assert "[0.5987 0.4013]" in out and "0.9130" in out and "[ 0.  -0.4]" in out
