"""``make bench``: every benchmark, as ratios against a reference run in the same process."""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

for name in ("softmax_loss", "nets", "training", "blas_threads", "inference", "onnx_export",
             "torch_engine"):
    try:
        module = importlib.import_module("benchmarks." + name)
    except ModuleNotFoundError as e:
        if e.name != "benchmarks." + name:
            raise
        continue
    result = module.main()
    if hasattr(module, "report"):
        module.report(result)
    print()
