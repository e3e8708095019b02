"""Every golden layer case computed by BVLC Caffe matches caffelite, and the cases where Caffe
aborts behave as ../shared/golden/README.md asks (copied to tests/golden/README.md)."""

import os

import numpy as np
import pytest

import caffelite
from tests.golden_runner import GOLDEN, case_names, read_json, run_layer_case

LAYERS = os.path.join(GOLDEN, "layers")
RUNNABLE = [n for n in case_names("layers") if not n.startswith("data_")]  # data_* run in test_golden_data


@pytest.mark.parametrize("name", RUNNABLE)
def test_golden_case(name):
    bad = run_layer_case(os.path.join(LAYERS, name))
    assert not bad, "; ".join(bad)


def _meta(name):
    return read_json(os.path.join(LAYERS, name, "case.json"))


def _net(name, phase=caffelite.TEST):
    return caffelite.Net(os.path.join(LAYERS, name, "net.prototxt"), phase)


def test_caffe_abort_cases_are_documented():
    aborts = sorted(n for n in case_names("layers", runnable=False)
                    if "caffe_error" in _meta(n))
    assert aborts == ["infogain_force_backward_aborts", "sml_label_count_mismatch", "sml_label_out_of_range",
                      "sml_two_tops_default_weights", "sml_two_tops_two_weights"]


def test_label_out_of_range_names_value_position_and_range():
    net = _net("sml_label_out_of_range")
    shape = net.blobs["label"].shape
    labels = np.zeros(shape, np.float32)
    labels.flat[-1] = 7
    net.blobs["label"].data[...] = labels
    with pytest.raises(caffelite.LabelError) as err:
        net.forward()
    msg = str(err.value)
    assert "label value 7" in msg and "position" in msg and "valid labels are 0.." in msg
    assert err.value.layer == "loss"


def test_label_count_mismatch_has_caffes_message():
    with pytest.raises(caffelite.LabelError, match="Number of labels must match number of predictions"):
        _net("sml_label_count_mismatch")


@pytest.mark.parametrize("name", ["sml_two_tops_default_weights", "sml_two_tops_two_weights"])
def test_two_top_softmax_loss_runs_and_prob_equals_softmax(name):
    net = _net(name)
    x = np.array(np.random.default_rng(3).normal(size=net.blobs["data"].shape), np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = 1
    net.forward()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.blobs["prob"].data, p, rtol=1e-6)
    weights = net.blob_loss_weights
    assert weights["loss"] == 1.0 and weights["prob"] == 0.0
    np.testing.assert_allclose(net.blobs["loss"].data, -np.log(p[np.arange(len(p)), 1]).mean(), rtol=1e-6)
    net.backward()
    onehot = np.zeros_like(p)
    onehot[:, 1] = 1
    np.testing.assert_allclose(net.blobs["data"].diff, (p - onehot) / len(p), rtol=1e-5, atol=1e-7)


def test_runner_notices_a_wrong_number(tmp_path):
    """The golden comparison is not vacuous: a perturbed reference fails."""
    import shutil

    src = os.path.join(LAYERS, "seed_example")
    dst = tmp_path / "seed_example"
    shutil.copytree(src, dst)
    with np.load(dst / "arrays.npz") as z:
        ref = dict(z)
    key = next(k for k in ref if k.startswith("fwd/") and ref[k].size)
    ref[key] = ref[key] + 0.01
    np.savez(dst / "arrays.npz", **ref)
    assert run_layer_case(str(dst))
