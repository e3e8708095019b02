"""Every differentiable registered layer passes the numeric gradient check (one table)."""

import numpy as np
import pytest

import caffelite
from caffelite.testing import check_gradient
from tests.gradient_cases import NO_GRADIENT, all_cases

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gradient(case):
    rng = np.random.default_rng(1701)
    result = check_gradient(case.spec, case.bottoms(rng), case.num_top, **case.options)
    assert result["checked"] > 0


def test_every_registered_layer_has_a_gradient_row():
    covered = {c.type for c in CASES}
    missing = [t for t in caffelite.layer_type_list() if t not in covered and t not in NO_GRADIENT]
    assert not missing, "registered layer types without a gradient-check row: %s" % missing


def test_checker_rejects_a_wrong_gradient():
    from caffelite.layer import Layer
    from caffelite.testing import GradientCheckError

    class WrongSquare(Layer):
        type = "WrongSquareForTest"

        def reshape(self, bottom, top):
            top[0].reshape(bottom[0].shape)

        def forward(self, bottom, top):
            top[0].data[...] = bottom[0].data ** 2

        def backward(self, top, propagate_down, bottom):
            bottom[0].diff[...] = top[0].diff * bottom[0].data  # should be 2x

    with pytest.raises(GradientCheckError, match="analytic"):
        check_gradient(WrongSquare(), [np.linspace(0.5, 2, 6).reshape(2, 3)])


# --- the checker catches the mistakes a ½Σy² objective and zeroed diffs hide ------------------
def _broken(base, backward):
    """A subclass of a registered layer whose backward is replaced (not registered itself)."""
    return type("Broken" + base.__name__, (base,), {"backward": backward})


def _mvn_without_mean(self, top, propagate_down, bottom):
    p = self.layer_param.mvn_param
    dy = self._view(top[0], top[0].diff)
    dx = self._view(bottom[0], bottom[0].diff)
    if p.normalize_variance:
        y = self._view(top[0], top[0].data)
        dx[...] = (dy - (dy * y).mean(axis=1, keepdims=True) * y) / self.std  # − mean(dy) dropped
    else:
        dx[...] = dy  # − mean(dy) dropped


def _mvn_sigma_multiplies(self, top, propagate_down, bottom):
    dy = self._view(top[0], top[0].diff)
    y = self._view(top[0], top[0].data)
    g = dy - dy.mean(axis=1, keepdims=True) - (dy * y).mean(axis=1, keepdims=True) * y
    self._view(bottom[0], bottom[0].diff)[...] = g * self.std  # σ multiplies instead of dividing


def _batchnorm_without_mean(self, top, propagate_down, bottom):
    dy = self._view(top[0].diff)
    y = self.x_norm
    self._view(bottom[0].diff)[...] = (dy - (dy * y).mean(axis=(0, 2), keepdims=True) * y) / self.std


def _batchnorm_sigma_multiplies(self, top, propagate_down, bottom):
    dy = self._view(top[0].diff)
    y = self.x_norm
    g = dy - dy.mean(axis=(0, 2), keepdims=True) - (dy * y).mean(axis=(0, 2), keepdims=True) * y
    self._view(bottom[0].diff)[...] = g * self.std


@pytest.mark.parametrize("spec, backward, shape", [
    ('type: "MVN" mvn_param { normalize_variance: false }', _mvn_without_mean, (2, 3, 2, 2)),
    ('type: "MVN"', _mvn_without_mean, (2, 3, 2, 3)),
    ('type: "MVN" mvn_param { across_channels: true }', _mvn_without_mean, (2, 3, 2, 2)),
    ('type: "MVN"', _mvn_sigma_multiplies, (2, 3, 2, 3)),
    ('type: "BatchNorm"', _batchnorm_without_mean, (4, 3, 2, 2)),
    ('type: "BatchNorm"', _batchnorm_sigma_multiplies, (4, 3, 2, 2)),
], ids=["mvn_mean_only", "mvn", "mvn_across", "mvn_sigma_multiplies", "batchnorm_train", "batchnorm_sigma_multiplies"])
def test_checker_rejects_a_normalising_layer_without_its_mean_term(spec, backward, shape):
    from caffelite.layer_factory import layer_class
    from caffelite.testing import GradientCheckError, make_layer

    param = make_layer(spec).layer_param
    bottom = [np.random.default_rng(1701).standard_normal(shape)]
    check_gradient(layer_class(param.type)(param), bottom)  # the real layer passes
    with pytest.raises(GradientCheckError, match="analytic"):
        check_gradient(_broken(layer_class(param.type), backward)(param), bottom)


def test_checker_rejects_a_parameter_diff_that_is_overwritten():
    from caffelite.layer_factory import layer_class
    from caffelite.testing import GradientCheckError, make_layer

    base = layer_class("InnerProduct")

    def backward(self, top, propagate_down, bottom):
        base.backward(self, top, propagate_down, bottom)
        self.blobs[1].diff[...] = top[0].diff.reshape(self.M, self.N).sum(axis=0)  # '=' where Caffe adds

    param = make_layer('type: "InnerProduct" inner_product_param { num_output: 3 weight_filler { type: "gaussian" } '
                       'bias_filler { type: "gaussian" } }').layer_param
    bottom = [np.random.default_rng(0).standard_normal((2, 4))]
    check_gradient(base(param), bottom)
    with pytest.raises(GradientCheckError, match=r"param 1 .*accumulate"):
        check_gradient(_broken(base, backward)(param), bottom)


def test_checker_rejects_a_bottom_diff_that_accumulates():
    from caffelite.layer_factory import layer_class
    from caffelite.testing import GradientCheckError, make_layer

    base = layer_class("TanH")

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] += top[0].diff * (1 - top[0].data ** 2)  # '+=' where Caffe overwrites

    param = make_layer('type: "TanH"').layer_param
    bottom = [np.random.default_rng(0).standard_normal((2, 3))]
    check_gradient(base(param), bottom)
    with pytest.raises(GradientCheckError, match=r"bottom 0 .*overwritten"):
        check_gradient(_broken(base, backward)(param), bottom)
