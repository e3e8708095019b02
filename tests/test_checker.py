"""``caffelite check``: one test per diagnostic code (code, line, column), exit statuses, JSON, corpus."""

import csv
import json
import os
import re
import sys

import pytest

from caffelite.checker import CODES, check_file, list_codes, net_rules
from caffelite.cli import main
from caffelite.errors import UnknownLayerTypeError
from caffelite.layer import TEST, TRAIN
from tests.fixtures import committed

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")

INPUT = 'layer { name: "in" type: "Input" top: "%s" input_param { shape { %s } } }\n'


def dims(*d):
    return " ".join("dim: %d" % x for x in d)


def inp(name, *shape):
    return INPUT % (name, dims(*shape))


def at(text, needle, occurrence=1):
    """1-based (line, column) of the n-th occurrence of needle in text."""
    i = -1
    for _ in range(occurrence):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


def check(tmp_path, text, name="net.prototxt", **kw):
    path = tmp_path / name
    path.write_text(text)
    return check_file(str(path), **kw)


def diag(result, code, line=None, column=None):
    """The diagnostic with this code (at line/column when given)."""
    found = [d for d in result.diagnostics if d.code == code]
    assert found, "no [%s] in:\n%s" % (code, result.format_text())
    if line is not None:
        found = [d for d in found if (d.line, d.column) == (line, column)]
        assert found, "[%s] not at %d:%d in:\n%s" % (code, line, column, result.format_text())
    return found[0]


def test_file_unreadable_exit_2(tmp_path):
    result = check_file(str(tmp_path / "missing.prototxt"))
    assert diag(result, "file-unreadable").severity == "error"
    assert result.exit_status == 2
    (tmp_path / "bin.prototxt").write_bytes(b"\x08\xff\xfe\x00")
    assert check_file(str(tmp_path / "bin.prototxt")).exit_status == 2
    assert main(["check", str(tmp_path / "missing.prototxt")]) == 2


def test_parse_error(tmp_path):
    text = inp("x", 1, 3) + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "x"\n' \
        '  loss_param { normalization: HALF } }\n'
    result = check(tmp_path, text)
    d = diag(result, "parse-error", 3, 31)
    assert "HALF" in d.message and result.exit_status == 1


def test_unknown_fork_field_ceil_mode(tmp_path):
    text = inp("x", 1, 3, 8, 8) + ('layer { name: "pool" type: "Pooling" bottom: "x" top: "p"\n'
                                    '  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }\n')
    result = check(tmp_path, text)
    d = diag(result, "unknown-field", *at(text, "ceil_mode"))
    assert "ceil_mode" in d.message and "round_mode" in d.hint
    assert result.exit_status == 1
    # the rest of the net is still analysed
    assert result.shapes["TRAIN"]["p"] == [1, 3, 4, 4]


def test_unknown_field_did_you_mean(tmp_path):
    text = inp("x", 2) + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" relu_parm { } }\n'
    d = diag(check(tmp_path, text), "unknown-field", *at(text, "relu_parm"))
    assert "relu_param" in d.message


def test_legacy_format_v1(tmp_path):
    text = ('input: "x"\ninput_dim: 1\ninput_dim: 4\ninput_dim: 1\ninput_dim: 1\n'
            'layers { name: "r" type: RELU bottom: "x" top: "y" }\n')
    result = check(tmp_path, text)
    diag(result, "legacy-format", 1, 1)
    assert result.shapes["TRAIN"]["y"] == [1, 4, 1, 1]
    assert result.exit_status == 0


def test_upgrade_failed(tmp_path):
    text = 'layers { layer { name: "a" type: "no_such_v0_type" } top: "a" }\n'
    result = check(tmp_path, text)
    diag(result, "upgrade-failed")
    assert result.exit_status == 1


def test_include_exclude(tmp_path):
    text = inp("x", 2) + ('layer { name: "r" type: "ReLU" bottom: "x" top: "y"\n'
                          '  include { phase: TRAIN }\n  exclude { stage: "deploy" } }\n')
    diag(check(tmp_path, text), "include-exclude", 4, 3)


def test_unknown_layer_type_did_you_mean(tmp_path):
    text = inp("x", 1, 3, 8, 8) + 'layer { name: "c" type: "Convolutoin" bottom: "x" top: "c" }\n'
    d = diag(check(tmp_path, text), "unknown-layer-type", 2, 19)
    assert "Did you mean 'Convolution'?" in d.message


def test_unimplemented_layer(tmp_path, monkeypatch):
    real = net_rules.layer_class

    def without_tile(name):
        if name == "Tile":
            raise UnknownLayerTypeError("Unknown layer type: Tile")
        return real(name)

    monkeypatch.setattr(net_rules, "layer_class", without_tile)
    text = inp("x", 2, 3) + ('layer { name: "t" type: "Tile" bottom: "x" top: "t" tile_param { tiles: 2 } }\n'
                             'layer { name: "r" type: "ReLU" bottom: "t" top: "u" }\n')
    result = check(tmp_path, text)
    diag(result, "unimplemented-layer", 2, 19)
    assert result.shapes["TRAIN"]["u"] is None and result.exit_status == 0


def test_python_layer_is_not_imported(tmp_path, monkeypatch):
    sentinel = tmp_path / "imported"
    (tmp_path / "evil_layer.py").write_text("open(%r, 'w').write('x')\n" % str(sentinel))
    monkeypatch.syspath_prepend(str(tmp_path))
    text = ('layer { name: "data" type: "Python" top: "data" top: "label"\n'
            '  python_param { module: "evil_layer" layer: "L" } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
            '  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    result = check(tmp_path, text)
    diag(result, "python-layer", *at(text, 'type: "Python"'))
    assert not sentinel.exists() and "evil_layer" not in sys.modules
    assert result.shapes["TRAIN"]["ip"] is None and result.exit_status == 0
    shaped = check(tmp_path, text, inputs={"data": (4, 5), "label": (4,)})
    assert shaped.shapes["TRAIN"]["ip"] == [4, 3]
    assert "normalization" in shaped.codes()


def test_unknown_shape_for_missing_data_files(tmp_path):
    text = ('layer { name: "d" type: "Data" top: "data" top: "label"\n'
            '  data_param { source: "no/such/lmdb" batch_size: 4 backend: LMDB } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
            '  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n')
    result = check(tmp_path, text)
    d = diag(result, "unknown-shape", *at(text, 'type: "Data"'))
    assert d.severity == "note" and result.exit_status == 0
    assert result.shapes["TRAIN"]["ip"] is None
    given = check(tmp_path, text, inputs={"data": (4, 1, 2, 2), "label": (4,)})
    assert given.shapes["TEST"]["ip"] == [4, 3] and "unknown-shape" not in given.codes()


def test_unknown_input(tmp_path):
    result = check(tmp_path, inp("data", 2), inputs={"dta": (2,)})
    d = diag(result, "unknown-input")
    assert "Did you mean 'data'?" in d.message


def test_unknown_bottom(tmp_path):
    text = inp("data", 2) + 'layer { name: "r" type: "ReLU" bottom: "dat" top: "y" }\n'
    result = check(tmp_path, text)
    d = diag(result, "unknown-bottom", *at(text, 'bottom: "dat"'))
    assert "Did you mean 'data'?" in d.message and result.exit_status == 1


def test_deploy_loss(tmp_path):
    text = inp("data", 2, 3) + ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
                                '  inner_product_param { num_output: 3 } }\n'
                                'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label"\n'
                                '  top: "l" }\n')
    result = check(tmp_path, text)
    diag(result, "deploy-loss", *at(text, 'bottom: "label"'))
    assert "unknown-bottom" not in result.codes()


def test_duplicate_top(tmp_path):
    text = inp("x", 2) + ('layer { name: "a" type: "ReLU" bottom: "x" top: "y" }\n'
                          'layer { name: "b" type: "TanH" bottom: "x" top: "y" }\n')
    diag(check(tmp_path, text), "duplicate-top", 3, 44)


def test_blob_count(tmp_path):
    text = inp("x", 2, 3) + 'layer { name: "ip" type: "InnerProduct" bottom: "x" bottom: "x" top: "y"\n' \
        '  inner_product_param { num_output: 2 } }\n'
    d = diag(check(tmp_path, text), "blob-count", *at(text, 'bottom: "x" bottom'))
    assert "takes 1 bottom blob(s)" in d.message


def test_propagate_down_count(tmp_path):
    text = inp("x", 2) + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" propagate_down: true\n' \
        '  propagate_down: false }\n'
    diag(check(tmp_path, text), "propagate-down-count", 2, 53)


def test_loss_weight_count(tmp_path):
    text = inp("x", 2, 3) + inp("label", 2) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_weight: 1 loss_weight: 2 }\n'
    result = check(tmp_path, text)
    diag(result, "loss-weight-count", 4, 3)
    assert result.exit_status == 1


def test_shape_mismatch(tmp_path):
    text = inp("a", 2, 3) + inp("b", 2, 4) + \
        'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "c" }\n'
    d = diag(check(tmp_path, text), "shape-mismatch")
    assert d.line == 3 and d.severity == "error"


def test_label_count(tmp_path):
    text = inp("x", 2, 3, 4) + inp("label", 2, 5) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l" }\n'
    d = diag(check(tmp_path, text), "label-count", *at(text, 'bottom: "label" top'))
    assert "Number of labels must match number of predictions" in d.message


def test_layer_config(tmp_path):
    text = inp("x", 2, 3) + inp("label", 2) + \
        'layer { name: "a" type: "Accuracy" bottom: "x" bottom: "label" top: "acc"\n' \
        '  accuracy_param { top_k: 5 } }\n'
    d = diag(check(tmp_path, text), "layer-config", 4, 20)
    assert "top_k" in d.message


def test_too_large(tmp_path, monkeypatch):
    import caffelite.blob

    monkeypatch.setattr(caffelite.blob, "physical_memory", lambda: 2**20)  # under INT_MAX, over this machine
    result = check(tmp_path, inp("x", 1000, 1000))
    assert diag(result, "too-large").severity == "note"


def test_blob_over_int_max_is_an_error(tmp_path):
    text = inp("x", 100000, 100000, 100000)
    result = check(tmp_path, text)
    d = diag(result, "blob-over-int-max", *at(text, "top"))
    assert d.severity == "error" and "INT_MAX" in d.message
    assert result.exit_status == 1


def test_internal_error_is_reported_not_raised(tmp_path, monkeypatch):
    from caffelite.layers.neuron import TanHLayer

    def broken(self, bottom, top):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(TanHLayer, "reshape", broken)
    text = inp("x", 2) + 'layer { name: "t" type: "TanH" bottom: "x" top: "y" }\n'
    d = diag(check(tmp_path, text), "internal", 2, 19)
    assert "boom" in d.message


SEED = ('name: "seed"\n'
        'layer { name: "in" type: "Input" top: "fc1" top: "label"\n'
        '  input_param { shape { dim: 1 dim: 2 } shape { dim: 1 } } }\n'
        'layer {\n  name: "loss"\n  type: "SoftmaxWithLoss"\n  bottom: "fc1"\n  bottom: "label"\n'
        '  top: "loss"\n  top: "prob"\n'
        '  loss_param{\n    ignore_label: 0\n    normalize: 1\n    normalization: FULL\n  }\n}\n')


def test_seed_two_tops_is_a_warning_with_the_rewrite(tmp_path):
    result = check(tmp_path, SEED)
    d = diag(result, "softmax-two-tops", 10, 3)
    assert d.severity == "warning" and "#2968" in d.message
    assert 'type: "Softmax" bottom: "fc1" top: "prob"' in d.hint
    assert result.exit_status == 0
    assert main(["check", str(tmp_path / "net.prototxt")]) == 0


def test_seed_normalization_ignore_label_and_conflict(tmp_path):
    result = check(tmp_path, SEED)
    d = diag(result, "normalization", 14, 5)
    assert "FULL" in d.message and "by 1 " in d.message
    diag(result, "normalize-ignored", 13, 5)
    d = diag(result, "ignore-label-is-class", 12, 5)
    assert "class 0" in d.message


def test_normalize_deprecated_false_is_batch_size(tmp_path):
    text = inp("x", 2, 3, 4, 5) + inp("label", 2, 1, 4, 5) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_param { ignore_label: 255 normalize: false } }\n'
    result = check(tmp_path, text)
    d = diag(result, "normalize-deprecated", *at(text, "normalize:"))
    assert "BATCH_SIZE (not NONE)" in d.message
    d = diag(result, "normalization", *at(text, "normalize:"))
    assert "resolves to BATCH_SIZE, not NONE" in d.message and "by 2 (N = 2)" in d.message
    assert "ignore-label-is-class" not in result.codes()


def test_normalization_default_valid_and_sigmoid_batch_size(tmp_path):
    text = inp("x", 4, 3) + inp("t", 4, 3) + inp("label", 4) + \
        'layer { name: "s" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "ls" }\n' \
        'layer { name: "m" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "lm" }\n'
    result = check(tmp_path, text)
    notes = {d.layer: d.message for d in result.diagnostics if d.code == "normalization"}
    assert "BATCH_SIZE (the default of SigmoidCrossEntropyLoss)" in notes["s"] and "by 4 (N = 4)" in notes["s"]
    assert "VALID (the default)" in notes["m"] and "by 4 " in notes["m"]


def test_normalization_ignored_on_euclidean(tmp_path):
    text = inp("a", 2, 3) + inp("b", 2, 3) + \
        'layer { name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l" loss_param { normalize: true } }\n'
    diag(check(tmp_path, text), "normalization-ignored", *at(text, "normalize:"))


def test_accuracy_ignore_label(tmp_path):
    text = inp("x", 2, 3) + inp("label", 2) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_param { ignore_label: 255 } }\n' \
        'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "a" }\n'
    d = diag(check(tmp_path, text), "accuracy-ignore-label", *at(text, 'type: "Accuracy"'))
    assert "ignore_label: 255" in d.hint


def test_unnormalized_loss_fcn_style(tmp_path):
    text = inp("x", 1, 21, 40, 40) + inp("label", 1, 1, 40, 40) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_param { ignore_label: 255 normalize: false } }\n'
    d = diag(check(tmp_path, text), "unnormalized-loss", *at(text, "normalize:"))
    assert "1600 positions" in d.message and "1e-10" in d.message


def test_loss_weight_on_accuracy(tmp_path):
    text = inp("x", 2, 3) + inp("label", 2) + \
        'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "a" loss_weight: 1 }\n'
    result = check(tmp_path, text)
    diag(result, "loss-weight-no-backward", *at(text, "loss_weight"))
    assert result.exit_status == 1


def test_missing_weight_filler(tmp_path):
    text = inp("x", 2, 3) + inp("label", 2) + \
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 3 } }\n' \
        'layer { name: "frozen" type: "InnerProduct" bottom: "x" top: "f" param { lr_mult: 0 }\n' \
        '  inner_product_param { num_output: 3 } }\n' \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "l" }\n'
    result = check(tmp_path, text)
    diag(result, "missing-weight-filler", *at(text, "inner_product_param"))
    assert [d.layer for d in result.diagnostics if d.code == "missing-weight-filler"] == ["ip"]
    deploy = check(tmp_path, inp("x", 2, 3) + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"\n'
                   '  inner_product_param { num_output: 3 } }\n', name="deploy.prototxt")
    assert "missing-weight-filler" not in deploy.codes()


def test_batchnorm_lr_mult(tmp_path):
    text = inp("x", 2, 3, 4, 4) + \
        'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 1 } }\n'
    result = check(tmp_path, text)
    diag(result, "batchnorm-lr-mult", *at(text, "lr_mult"))
    assert result.exit_status == 1


def test_solver_lr_policy_and_fields(tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\ntype: "AdaGrad"\n')
    result = check_file(str(solver))
    diag(result, "solver-lr-policy", 2, 1)
    d = diag(result, "solver-fields", 3, 1)
    assert "Momentum cannot be used with AdaGrad" in d.message and d.severity == "error"
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "step"\ngamma: 0.1\nstepvalue: 100\n')
    result = check_file(str(solver))
    d = diag(result, "solver-fields", 3, 1)
    assert "stepsize" in d.message and d.severity == "error"
    assert any(x.code == "solver-fields" and x.line == 5 for x in result.diagnostics)  # stepvalue unused
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 10\n')
    assert check_file(str(solver)).diagnostics == []


def test_solver_with_net_uses_base_lr(tmp_path):
    (tmp_path / "s.prototxt").write_text('base_lr: 1e-10\nlr_policy: "fixed"\n')
    text = inp("x", 1, 21, 40, 40) + inp("label", 1, 1, 40, 40) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_param { normalize: false } }\n'
    result = check(tmp_path, text, solver=str(tmp_path / "s.prototxt"))
    assert "base_lr 1e-10" in diag(result, "unnormalized-loss").message


def test_every_code_is_documented_and_listed():
    text = list_codes()
    for code, (severity, doc) in CODES.items():
        assert severity in ("error", "warning", "note") and doc
        assert code in text


def test_every_code_has_a_test():
    with open(__file__, encoding="utf-8") as f:
        tested = set(re.findall(r'\bdiag\(.*?"([a-z-]+)"', f.read()))
    untested = set(CODES) - tested
    assert not untested, "codes without a test: %s" % sorted(untested)


def test_stage_rules_checked_per_stage(tmp_path):
    text = ('layer { name: "train" type: "Input" top: "x" input_param { shape { dim: 2 } } include { stage: "a" } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    result = check(tmp_path, text)
    d = [d for d in result.diagnostics if d.code == "unknown-bottom"][0]
    assert d.severity == "warning" and "no stage" in d.format()
    assert check(tmp_path, text, stages=["a"]).exit_status == 0
    assert check(tmp_path, text, stages=[]).exit_status == 1


def test_phase_option_and_json(tmp_path, capsys):
    text = inp("x", 2) + 'layer { name: "r" type: "ReLU" bottom: "nope" top: "y" include { phase: TEST } }\n'
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    assert check_file(str(path), phases=[TRAIN]).exit_status == 0
    assert check_file(str(path), phases=[TEST]).exit_status == 1
    assert main(["check", str(path), "--format", "json", "--phase", "TEST"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["exit_status"] == 1
    d = out["diagnostics"][0]
    expected = ("unknown-bottom", "error", *at(text, 'bottom: "nope"'))
    assert (d["code"], d["severity"], d["line"], d["column"]) == expected
    assert out["shapes"]["TEST"]["x"] == [2]


def test_cli_text_format_input_and_list_codes(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "d" type: "Python" top: "data" python_param { module: "m" layer: "L" } }\n'
                    'layer { name: "r" type: "ReLU" bottom: "data" top: "y" }\n')
    assert main(["check", str(path), "--input", "data=1x3x4x4", "--shapes"]) == 0
    out = capsys.readouterr().out
    assert "y" in out and "1x3x4x4" in out
    assert main(["check", "--list-codes"]) == 0
    assert "softmax-two-tops" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["check", str(path), "--input", "data"])


# --- the corpus ----------------------------------------------------------------------------------
def _corpus_rows():
    with open(committed("corpus", "MANIFEST.tsv"), newline="") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["bvlc_only"] == "yes"]


@pytest.mark.parametrize("row", _corpus_rows(), ids=lambda r: r["file"])
def test_corpus_bvlc_nets_have_no_errors(row):
    result = check_file(os.path.join(CORPUS, row["file"]))
    errors = [d.format() for d in result.errors]
    assert not errors, "\n".join(errors)
    assert result.exit_status == 0


def test_corpus_nets_caffe_builds_get_caffe_shapes():
    with open(committed("corpus", "caffe_shapes.json")) as f:
        reference = json.load(f)
    checked = 0
    for rel, rec in reference.items():
        if "blobs" not in rec or not os.path.exists(os.path.join(CORPUS, rel)):
            continue
        shapes = next(iter(check_file(os.path.join(CORPUS, rel), phases=[TEST]).shapes.values()))
        for name, shape in rec["blobs"].items():
            if name in shapes:
                assert shapes[name] == list(shape), (rel, name)
        checked += 1
    assert checked >= 20


def _corpus_files():
    found = []
    for folder, _, files in os.walk(committed("corpus")):
        found += [os.path.join(folder, f) for f in files if f.endswith(".prototxt")]
    return sorted(found)


def test_every_corpus_file_is_checked_without_crash():
    for path in _corpus_files():  # fork nets included: errors, never a crash or an 'internal'
        result = check_file(path)
        assert result.exit_status in (0, 1)
        assert "internal" not in result.codes(), result.format_text()


def test_voc_fcn8s_normalize_false_resolves_to_batch_size():
    path = committed("corpus", "shelhamer__fcn.berkeleyvision.org", "voc-fcn8s", "train.prototxt")
    result = check_file(path, inputs={"data": (1, 3, 500, 500), "label": (1, 1, 500, 500)})
    d = [d for d in result.diagnostics if d.code == "normalization"][0]
    assert "normalize: false resolves to BATCH_SIZE, not NONE" in d.message
    assert "divides the summed loss by 1 (N = 1)" in d.message and "250000 positions" in d.message
    assert "unnormalized-loss" in result.codes() and result.exit_status == 0


def test_allow_python_layers_runs_their_setup(tmp_path, monkeypatch):
    (tmp_path / "ck_feed_layer.py").write_text(
        "import caffe\n\n\nclass Feed(caffe.Layer):\n    def setup(self, bottom, top):\n        pass\n\n"
        "    def reshape(self, bottom, top):\n        top[0].reshape(2, 3)\n\n"
        "    def forward(self, bottom, top):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = ('layer { name: "d" type: "Python" top: "x" python_param { module: "ck_feed_layer" layer: "Feed" } }\n'
            'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n')
    result = check(tmp_path, text, allow_python_layers=True)
    assert result.shapes["TRAIN"]["y"] == [2, 3] and "python-layer" not in result.codes()
    assert main(["check", str(tmp_path / "net.prototxt"), "--allow-python-layers"]) == 0


def test_solver_checks_the_net_file_it_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(inp("x", 2) + 'layer { name: "r" type: "ReLU" bottom: "y" top: "z" }\n')
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n')
    result = check_file("solver.prototxt")
    assert [(d.file, d.code) for d in result.errors] == [("net.prototxt", "unknown-bottom")]
    assert result.exit_status == 1


# --- issue 10: --weights, silencing codes, solver-aware severities, portable rewrites -----------------
FINETUNE = inp("x", 2, 3) + inp("label", 2) + \
    'layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h" inner_product_param { num_output: 4 } }\n' \
    'layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "s" inner_product_param { num_output: 3 } }\n' \
    'layer { name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "l" }\n'


def _caffemodel(tmp_path, text):
    from caffelite.net import Net

    (tmp_path / "src.prototxt").write_text(text)
    Net(str(tmp_path / "src.prototxt"), TEST).save(str(tmp_path / "w.caffemodel"))
    return str(tmp_path / "w.caffemodel")


def test_weights_silence_missing_filler_and_must_fit(tmp_path):
    plain = check(tmp_path, FINETUNE)
    d = diag(plain, "missing-weight-filler")  # no layer has a filler: one note, not a flood
    assert plain.codes().count("missing-weight-filler") == 1 and d.severity == "note" and "ip1, ip2" in d.message
    weights = _caffemodel(tmp_path, FINETUNE)
    fitted = check(tmp_path, FINETUNE, weights=weights)
    assert "missing-weight-filler" not in fitted.codes() and fitted.exit_status == 0, fitted.format_text()
    wider = FINETUNE.replace("num_output: 3", "num_output: 5")
    result = check(tmp_path, wider, weights=weights)
    d = diag(result, "weights-mismatch", *at(wider, 'name: "ip2"'))
    assert "Cannot copy param 0 weights from layer 'ip2'; shape mismatch" in d.message
    assert "3 4 (12)" in d.message and "5 4 (20)" in d.message and result.exit_status == 1
    nobias = FINETUNE.replace("num_output: 3", "num_output: 3 bias_term: false")
    d = diag(check(tmp_path, nobias, weights=weights), "weights-mismatch", *at(nobias, 'name: "ip2"'))
    assert "Incompatible number of blobs for layer ip2 (net has 1, weights have 2)" in d.message
    assert check(tmp_path, FINETUNE, weights=str(tmp_path / "none.caffemodel")).exit_status == 2


def test_mixed_fillers_warn_per_layer_unless_weights_give_them(tmp_path):
    text = FINETUNE.replace("num_output: 4", 'num_output: 4 weight_filler { type: "xavier" }')
    result = check(tmp_path, text)
    assert diag(result, "missing-weight-filler").severity == "warning"
    assert [d.layer for d in result.diagnostics if d.code == "missing-weight-filler"] == ["ip2"]
    weights = _caffemodel(tmp_path, FINETUNE)
    assert "missing-weight-filler" not in check(tmp_path, text, weights=weights).codes()


def test_ignore_codes_on_the_command_line_and_inline(tmp_path, capsys):
    text = FINETUNE.replace("num_output: 4", 'num_output: 4 weight_filler { type: "xavier" }')
    assert "missing-weight-filler" not in check(tmp_path, text, ignore=["missing-weight-filler"]).codes()
    inline = text.replace('layer { name: "ip2"', '# caffelite: ignore[missing-weight-filler]\nlayer { name: "ip2"')
    assert "missing-weight-filler" not in check(tmp_path, inline).codes()
    same_line = text.replace('num_output: 3 } }',
                             'num_output: 3 } }  # caffelite: ignore[normalization, missing-weight-filler]')
    assert "missing-weight-filler" not in check(tmp_path, same_line).codes()
    other = text.replace('num_output: 3 } }', 'num_output: 3 } }  # caffelite: ignore[normalization]')
    assert "missing-weight-filler" in check(tmp_path, other).codes()
    path = str(tmp_path / "net.prototxt")
    assert main(["check", path, "--ignore", "missing-weight-filler", "--ignore", "normalization"]) == 0
    out = capsys.readouterr().out
    assert "[missing-weight-filler]" not in out and "[normalization]" not in out
    with pytest.raises(SystemExit):
        main(["check", path, "--ignore", "missing-weight-filer"])
    assert "Did you mean 'missing-weight-filler'?" in capsys.readouterr().err
    assert "--ignore CODE" in list_codes() and "# caffelite: ignore[CODE" in list_codes()


def test_unnormalized_loss_is_a_note_when_the_solver_rate_accounts_for_it(tmp_path):
    text = inp("x", 1, 21, 40, 40) + inp("label", 1, 1, 40, 40) + \
        'layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "l"\n' \
        '  loss_param { ignore_label: 255 normalize: false } }\n'
    (tmp_path / "net.prototxt").write_text(text)
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "net.prototxt"\nbase_lr: 1e-10\nlr_policy: "fixed"\nmomentum: 0.99\n')
    d = diag(check_file(str(tmp_path / "net.prototxt"), solver=str(solver)), "unnormalized-loss")
    assert d.severity == "note" and "accounts for" in d.message
    solver.write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n')
    assert diag(check_file(str(tmp_path / "net.prototxt"), solver=str(solver)), "unnormalized-loss").severity == \
        "warning"


def test_softmax_rewrite_is_portable_and_clean(tmp_path):
    d = diag(check(tmp_path, SEED), "softmax-two-tops")
    assert "normalize" not in d.hint.replace("normalization", "")  # check flags normalize as ignored
    assert "normalization: FULL" in d.hint
    legacy = SEED.replace("    normalization: FULL\n", "")
    d = diag(check(tmp_path, legacy), "softmax-two-tops")
    assert "normalization: VALID" in d.hint and "normalize" not in d.hint.replace("normalization", "")
    rewritten = inp("fc1", 1, 2) + inp("label", 1) + d.hint  # the rewrite checks clean
    codes = set(check(tmp_path, rewritten).codes())
    assert not {"normalize-deprecated", "normalize-ignored", "softmax-two-tops"} & codes


def test_deploy_loss_hint_for_a_test_only_accuracy(tmp_path):
    text = inp("x", 2, 3) + 'layer { name: "acc" type: "Accuracy" bottom: "x" bottom: "label" top: "a"\n' \
        '  include { phase: TEST } }\n'
    d = diag(check(tmp_path, text), "deploy-loss")
    assert "phase: TRAIN" not in d.hint and "already restricted to phase TEST" in d.hint


def test_solver_weights_are_used_like_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = FINETUNE.replace("num_output: 4", 'num_output: 4 weight_filler { type: "xavier" }')
    (tmp_path / "net.prototxt").write_text(text)
    _caffemodel(tmp_path, FINETUNE)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n'
                                             'weights: "w.caffemodel"\n')
    result = check_file("net.prototxt", solver="solver.prototxt")
    assert "missing-weight-filler" not in result.codes(), result.format_text()
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\n')
    diag(check_file("net.prototxt", solver="solver.prototxt"), "missing-weight-filler")
