"""examples/onnx_export: the digits LeNet, trained briefly, exported to ONNX, predicts caffelite's classes."""

import os
import runpy

import pytest

pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_digits_lenet_to_onnx(capsys):
    main = runpy.run_path(os.path.join(ROOT, "examples", "onnx_export", "export_digits.py"))["main"]
    result = main(["--max-iter", "30"])
    assert result["same_classes"] and result["max_rel"] <= 1e-4
    out = capsys.readouterr().out
    train_accuracy = float(out.split("final test accuracy: ")[1].split()[0])
    assert abs(result["accuracy"] - train_accuracy) < 1e-9  # onnxruntime scores the test digits as caffelite did
    assert "verify: equal within 1e-4" in out
