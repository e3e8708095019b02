"""Every golden layer case computed by BVLC Caffe, run through caffelite.torch.CaffeNet: forward within
1e-5 (relative, with an absolute floor of 1e-5 of the array's scale) and autograd gradients within 1e-4.

On a GPU machine: ``pytest -m cuda tests/test_torch_golden.py tests/test_torch_nets.py`` runs the same
checks on CUDA (TF32 off)."""

import os

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install caffelite[torch])")

from tests.golden_runner import GOLDEN, case_names  # noqa: E402
from tests.torch_support import DEVICES, run_torch_case, torch_one_thread  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LAYERS = os.path.join(GOLDEN, "layers")
CASES = case_names("layers")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_golden_case_on_torch(name, device):
    bad = run_torch_case(os.path.join(LAYERS, name), device)
    assert not bad, "; ".join(bad)
