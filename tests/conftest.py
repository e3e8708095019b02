"""Fixtures shared by several test modules."""

import pytest

TINY_NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
"""


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """A folder with a tiny DummyData net and its solver (6 iterations, tests and snapshots), as the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(TINY_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.1 momentum: 0.9 lr_policy: "step" gamma: 0.5 stepsize: 4 display: 2 '
        'max_iter: 6 test_iter: 2 test_interval: 3 snapshot: 4 snapshot_prefix: "tiny" random_seed: 1')
    return tmp_path
