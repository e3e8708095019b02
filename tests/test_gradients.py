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
