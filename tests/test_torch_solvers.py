"""caffelite.torch's Caffe optimizer against caffelite's NumPy solvers, update by update."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import caffelite  # noqa: E402
from caffelite.errors import FileFormatError, SolverError  # noqa: E402
from caffelite.proto import caffe_pb2  # noqa: E402
from caffelite.solvers import learning_rate  # noqa: E402
from caffelite.torch.solvers import CaffeOptimizer, solver, solver_param  # noqa: E402
from tests.test_solvers import GOLDEN, _digits, _feed  # noqa: E402

CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "solver.prototxt").is_file())


class Params(torch.nn.Module):
    """A stand-in module: the NumPy net's learnable blobs as torch parameters, with their multipliers."""

    def __init__(self, net):
        super().__init__()
        self.plist = torch.nn.ParameterList(torch.nn.Parameter(torch.tensor(b.data.copy()))
                                            for b in net.learnable_params)
        self.param_specs = {"plist.%d" % i: (lr, decay)
                            for i, (lr, decay) in enumerate(zip(net.params_lr, net.params_weight_decay))}


def _numpy_and_torch(case, tmp_path, monkeypatch, extra=""):
    monkeypatch.chdir(tmp_path)
    text = (GOLDEN / case / "solver.prototxt").read_text() + extra
    (tmp_path / "solver.prototxt").write_text(text)
    ref = caffelite.get_solver("solver.prototxt")
    ref.net.copy_from(str(GOLDEN / "init.caffemodel"))
    module = Params(ref.net)
    return ref, module, solver("solver.prototxt", module)


@pytest.mark.parametrize("case", CASES)
def test_update_matches_the_numpy_solver(case, tmp_path, monkeypatch):
    """The same gradients in, the same weights and history out, for every golden solver setting."""
    ref, module, opt = _numpy_and_torch(case, tmp_path, monkeypatch, " display: 1")
    x, y = _digits()
    params = ref.net.learnable_params
    for it in range(6):
        _feed(ref, x, y, it, 16)
        ref.net.clear_param_diffs()
        for _ in range(ref.param.iter_size):
            ref.net.forward_backward()
        for p, blob in zip(module.plist, params):
            p.grad = torch.tensor(blob.diff.copy())
        ref.apply_update()
        ref.iter += 1
        opt.step()
        assert opt.iter == ref.iter and opt.current_step == ref.current_step
        for p, blob in zip(module.plist, params):
            np.testing.assert_allclose(p.detach().numpy(), blob.data, rtol=1e-6, atol=1e-7)
    for h, want in zip(opt.history(), ref.history):
        np.testing.assert_allclose(h.numpy(), want, rtol=1e-5, atol=1e-8)
    last_rate = learning_rate(ref.param, ref.iter - 1, ref.current_step)[0]  # the rate of the last step
    assert opt.param_groups[0]["lr"] == pytest.approx(last_rate * ref.net.params_lr[0], rel=1e-6)


def test_state_dict_and_history_round_trip(tmp_path, monkeypatch):
    ref, module, opt = _numpy_and_torch("adam", tmp_path, monkeypatch)
    for p in module.plist:
        p.grad = torch.ones_like(p)
    opt.step()
    opt.step()
    state = opt.state_dict()
    again = solver("solver.prototxt", module)
    again.load_state_dict(state)
    assert again.iter == 2
    for a, b in zip(opt.history(), again.history()):
        assert torch.equal(a, b)
    doubled = [h.numpy() * 2 for h in opt.history()]
    again.set_history(doubled)
    assert np.array_equal(again.history()[0].numpy(), doubled[0])
    with pytest.raises(FileFormatError, match="Incorrect length of history blobs"):
        again.set_history(opt.history()[:1])


def test_missing_gradients_count_as_zero_and_decay_still_applies(tmp_path, monkeypatch):
    param = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", weight_decay=0.5, type="SGD")
    w = torch.nn.Parameter(torch.ones(3))
    opt = CaffeOptimizer([{"params": [w], "decay_mult": 2.0, "lr_mult": 1.0}], param)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), 1 - 0.1 * 0.5 * 2, rtol=1e-6)


@pytest.mark.parametrize("body, message", [
    ('type: "AdaGrad" base_lr: 0.1 lr_policy: "fixed" momentum: 0.9', "Momentum cannot be used with AdaGrad"),
    ('type: "Adamax" base_lr: 0.1 lr_policy: "fixed"', "Unknown solver type: Adamax"),
    ('base_lr: 0.1', "Unknown learning rate policy"),
    ('base_lr: 0.1 lr_policy: "fixed" regularization_type: "L3"', "Unknown regularization type: L3"),
    ('base_lr: 0.1 lr_policy: "fixed" iter_size: 0', "iter_size must be at least 1"),
])
def test_bad_solver_parameters_are_refused(body, message, tmp_path):
    (tmp_path / "s.prototxt").write_text(body)
    with pytest.raises(SolverError, match=message):
        solver(str(tmp_path / "s.prototxt"), torch.nn.Linear(2, 2))


def test_solver_param_accepts_a_message_and_upgrades_it():
    old = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="fixed", solver_type=caffe_pb2.SolverParameter.ADAM)
    param, path = solver_param(old)
    assert param.type == "Adam" and path is None and old.type != "Adam"
    opt = solver(old, torch.nn.Linear(2, 2))
    assert len(opt.history()) == 4 and opt.param_groups[0]["lr_mult"] == 1.0


@pytest.mark.parametrize("policy", ['lr_policy: "step" gamma: 0.5 stepsize: 3',
                                    'lr_policy: "multistep" gamma: 0.3 stepvalue: 2 stepvalue: 5',
                                    'lr_policy: "poly" power: 2 max_iter: 10'])
def test_caffe_lr_for_torch_optimizers(policy):
    from google.protobuf import text_format

    from caffelite.torch.solvers import CaffeLR

    param = text_format.Parse("base_lr: 0.1 " + policy, caffe_pb2.SolverParameter())
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w], "lr_mult": 2.0}], lr=1.0)
    schedule = CaffeLR(opt, param)
    current = 0
    for it in range(8):
        want, current = learning_rate(param, it, current)
        assert opt.param_groups[0]["lr"] == pytest.approx(2 * want, rel=1e-6)
        opt.step()
        schedule.step()


def test_caffe_lr_refuses_a_bad_policy():
    from caffelite.torch.solvers import CaffeLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    with pytest.raises(SolverError, match="stepsize must be > 0"):
        CaffeLR(opt, caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="step"))
