"""``caffelite check`` with a solver: the nets in exactly the states the solver builds, each diagnostic once."""

import os
import shutil

from caffelite.checker import check_file
from caffelite.cli import main
from tests.fixtures import committed

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
BVLC = os.path.join(CORPUS, "BVLC__caffe")

# Two test nets told apart by stage, as BVLC's lenet_consolidated_solver.prototxt does.
STAGED_NET = """
layer { name: "d" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } }
  include { phase: TRAIN } }
layer { name: "d" type: "Input" top: "data" top: "label" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } }
  include { phase: TEST stage: "on-test" } }
layer { name: "d" type: "Input" top: "data" top: "label" input_param { shape { dim: 5 dim: 3 } shape { dim: 5 } }
  include { phase: TEST stage: "on-train" } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

STAGED_SOLVER = """net: "%s"
test_iter: 1
test_state { stage: "on-test" }
test_iter: 1
test_state { stage: "on-train" }
test_interval: 10
base_lr: 0.01
lr_policy: "fixed"
"""


def test_lenet_consolidated_solver_has_no_false_unknown_bottom():
    path = os.path.join(BVLC, "examples", "mnist", "lenet_consolidated_solver.prototxt")
    result = check_file(path)
    assert "unknown-bottom" not in result.codes(), result.format_text()
    assert not [d for d in result.diagnostics if d.severity != "note"], result.format_text()
    # the TRAIN net is not built with the test stages
    assert not any("TRAIN stage=" in p for d in result.diagnostics for p in d.phases), result.format_text()


def test_net_checked_in_each_test_state_of_its_solver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(STAGED_NET)
    (tmp_path / "solver.prototxt").write_text(STAGED_SOLVER % "net.prototxt")
    alone = check_file("net.prototxt")
    assert "unknown-bottom" in alone.codes()  # without the solver, the stage-less TEST net is checked too
    result = check_file("net.prototxt", solver="solver.prototxt")
    assert "unknown-bottom" not in result.codes(), result.format_text()
    assert set(result.shapes) == {"TRAIN", "TEST net #0 stage=on-test", "TEST net #1 stage=on-train"}
    assert result.shapes["TEST net #1 stage=on-train"]["data"] == [5, 3]
    assert result.exit_status == 0


def test_an_error_in_one_solver_state_stays_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(STAGED_NET.replace('stage: "on-train"', 'stage: "other"'))
    (tmp_path / "solver.prototxt").write_text(STAGED_SOLVER % "net.prototxt")
    result = check_file("net.prototxt", solver="solver.prototxt")
    bottoms = [d for d in result.diagnostics if d.code == "unknown-bottom"]
    assert bottoms and all(d.severity == "error" for d in bottoms), result.format_text()
    assert bottoms[0].phases == ["TEST net #1 stage=on-train"]
    assert result.exit_status == 1


def test_solver_naming_the_same_net_prints_each_diagnostic_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    net = STAGED_NET.replace(' weight_filler { type: "xavier" }', "")  # one warning to count
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(STAGED_SOLVER % "net.prototxt")
    result = check_file("net.prototxt", solver="solver.prototxt")
    keys = [(d.file, d.line, d.column, d.code, d.message) for d in result.diagnostics]
    assert len(keys) == len(set(keys)), result.format_text()
    assert result.codes().count("missing-weight-filler") == 1
    assert main(["check", "net.prototxt", "--solver", "solver.prototxt"]) == 0
    out = capsys.readouterr().out
    assert out.count("[missing-weight-filler]") == 1, out


def test_bvlc_solver_and_its_train_test_net(tmp_path, monkeypatch):
    root = tmp_path / "caffe"
    shutil.copytree(os.path.join(BVLC, "examples", "mnist"), root / "examples" / "mnist")
    monkeypatch.chdir(root)  # Caffe resolves the solver's net path against the working directory
    result = check_file("examples/mnist/lenet_train_test.prototxt", solver="examples/mnist/lenet_solver.prototxt")
    keys = [(d.file, d.line, d.column, d.code, d.message) for d in result.diagnostics]
    assert len(keys) == len(set(keys)), result.format_text()
    assert not [d for d in result.diagnostics if d.severity != "note"], result.format_text()


def test_test_state_count_must_match_the_test_nets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(STAGED_NET)
    (tmp_path / "solver.prototxt").write_text((STAGED_SOLVER % "net.prototxt").replace(
        'test_state { stage: "on-train" }\n', ""))
    (tmp_path / "ok.prototxt").write_text(STAGED_SOLVER % "net.prototxt")
    result = check_file("solver.prototxt")
    found = [d for d in result.diagnostics if "test_state must be unspecified" in d.message]
    assert found and found[0].severity == "error" and result.exit_status == 1, result.format_text()
    assert check_file("ok.prototxt").exit_status == 0


def _solver_net_pairs():
    """(root, solver, net) for each stock-BVLC corpus solver and each net file of the corpus it names.

    ``root`` is the folder the solver's paths resolve against (Caffe's working directory).
    """
    import csv

    from google.protobuf import text_format

    from caffelite.proto import caffe_pb2

    manifest = os.path.join(CORPUS, "MANIFEST.tsv")
    if not os.path.isfile(manifest):
        return []
    with open(manifest, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    stock = {row["file"] for row in rows if row["bvlc_only"] == "yes"}
    pairs = []
    for row in rows:
        if row["kind"] != "solver" or row["bvlc_only"] != "yes":
            continue
        solver = os.path.join(CORPUS, row["file"])
        sp = caffe_pb2.SolverParameter()
        try:
            with open(solver, encoding="utf-8") as f:
                text_format.Parse(f.read(), sp, allow_unknown_field=True)
        except text_format.ParseError:
            continue
        repo = os.path.join(CORPUS, row["file"].split("/")[0])
        for ref in [sp.net, sp.train_net] + list(sp.test_net):
            for root in (os.path.dirname(solver), repo):
                path = os.path.join(root, ref)
                if ref and os.path.isfile(path) and os.path.relpath(path, CORPUS).replace(os.sep, "/") in stock:
                    pairs.append((root, os.path.relpath(solver, root), ref))
                    break
    return pairs


def test_stock_bvlc_corpus_nets_with_their_solvers_have_no_false_alarms(monkeypatch):
    committed("corpus", "MANIFEST.tsv")
    pairs = _solver_net_pairs()
    assert pairs, "no stock BVLC net with its solver found in tests/corpus/"
    for root, solver, net in pairs:
        monkeypatch.chdir(root)
        result = check_file(net, solver=solver)
        text = result.format_text()
        keys = [(d.file, d.line, d.column, d.code, d.message) for d in result.diagnostics]
        assert len(keys) == len(set(keys)), text  # each diagnostic once
        assert "unknown-bottom" not in result.codes(), text  # the solver's states, not stage-less ones
        assert result.exit_status == 0, text
        fillers = [d for d in result.diagnostics if d.code == "missing-weight-filler" and d.severity != "note"]
        assert len(fillers) <= 1, text  # no flood for nets meant for loaded weights
        assert not [d for d in result.diagnostics if d.code == "unnormalized-loss" and d.severity != "note"], text


def test_fcn_solver_base_lr_accounts_for_its_unnormalized_loss(monkeypatch):
    monkeypatch.chdir(committed("corpus", "shelhamer__fcn.berkeleyvision.org", "voc-fcn32s"))
    inputs = {"data": (1, 3, 500, 500), "label": (1, 1, 500, 500)}
    alone = [d for d in check_file("train.prototxt", inputs=inputs).diagnostics if d.code == "unnormalized-loss"]
    assert alone and alone[0].severity == "warning"  # without the solver its base_lr is unknown
    result = check_file("train.prototxt", solver="solver.prototxt", inputs=inputs)
    found = [d for d in result.diagnostics if d.code == "unnormalized-loss"]
    assert found and all(d.severity == "note" for d in found), result.format_text()
    assert "base_lr 1e-10" in found[0].message
