"""The same help for the same mistake in ``check`` and at run time: line:col, close names, enum values, forks."""

import pytest

import caffelite
from caffelite.checker import check_file
from caffelite.errors import NetError, ProtoError, UnknownLayerTypeError
from caffelite.layer_factory import layer_class

INPUT = 'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }\n'


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_runtime_unknown_bottom_has_line_column_and_suggestion(tmp_path):
    path = write(tmp_path, INPUT + 'layer { name: "r" type: "ReLU"\n  bottom: "dta" top: "r" }\n')
    with pytest.raises(NetError) as e:
        caffelite.Net(path, caffelite.TEST)
    assert (e.value.line, e.value.column) == (3, 3)
    assert "Did you mean 'data'?" in str(e.value) and "%s:3:3" % path in str(e.value)
    d = next(d for d in check_file(path).diagnostics if d.code == "unknown-bottom")
    assert (d.line, d.column) == (3, 3) and "Did you mean 'data'?" in d.message


def test_runtime_misspelled_field_is_suggested(tmp_path):
    path = write(tmp_path, INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
                 '  pooling_param { kernel_siz: 2 } }\n')
    with pytest.raises(ProtoError) as e:
        caffelite.Net(path, caffelite.TEST)
    assert "Did you mean 'kernel_size'?" in str(e.value)
    assert (e.value.line, e.value.column) == (3, 19)


@pytest.mark.parametrize("field, value, valid", [
    ("loss_param { normalization: BATCHSIZE }", "BATCHSIZE", "FULL, VALID, BATCH_SIZE, NONE"),
    ("pooling_param { pool: MAXIMUM }", "MAXIMUM", "MAX, AVE, STOCHASTIC"),
])
def test_wrong_enum_value_lists_the_valid_ones(tmp_path, field, value, valid):
    path = write(tmp_path, INPUT + 'layer { name: "x" type: "Pooling" bottom: "data" top: "x" %s }\n' % field)
    with pytest.raises(ProtoError) as e:
        caffelite.Net(path, caffelite.TEST)
    assert "Valid values: %s." % valid in str(e.value)
    d = next(d for d in check_file(path).diagnostics if d.code == "parse-error")
    assert "Valid values: %s." % valid in d.message and value in d.message


@pytest.mark.parametrize("ltype, fork", [("Permute", "SSD"), ("PriorBox", "SSD"), ("DetectionOutput", "SSD"),
                                         ("Normalize", "SSD"), ("ROIPooling", "R-CNN"), ("SmoothL1Loss", "R-CNN"),
                                         ("Axpy", "SENet")])
def test_fork_layer_types_get_the_fork_not_a_misleading_suggestion(tmp_path, ltype, fork):
    path = write(tmp_path, INPUT + 'layer { name: "f" type: "%s" bottom: "data" top: "f" }\n' % ltype)
    d = next(d for d in check_file(path).diagnostics if d.code == "unknown-layer-type")
    assert fork in d.message and "Did you mean" not in d.message, d.message
    with pytest.raises(UnknownLayerTypeError) as e:
        caffelite.Net(path, caffelite.TEST)
    assert fork in str(e.value) and "Did you mean" not in str(e.value)
    assert e.value.line == 2


def test_suggestions_only_when_really_close():
    with pytest.raises(UnknownLayerTypeError) as e:
        layer_class("Convolutoin")
    assert "Did you mean 'Convolution'?" in str(e.value)
    with pytest.raises(UnknownLayerTypeError) as e:
        layer_class("Relu")
    assert "Did you mean 'ReLU'?" in str(e.value)
    for far in ("Conv", "Mish", "Resize", "CenterLoss"):  # not Concat, Swish, Reshape, ContrastiveLoss
        with pytest.raises(UnknownLayerTypeError) as e:
            layer_class(far)
        assert "Did you mean" not in str(e.value), far
