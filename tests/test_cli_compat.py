"""Existing scripts and habits: ``-gpu``, ``caffe time``'s backward, subcommand usage, pipes, Python 2, ``caffe.*``."""

import subprocess
import sys

import numpy as np
import pytest

from caffelite.cli import main
from caffelite.layers.inner_product import InnerProductLayer

TRAIN_NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

DEPLOY_NET = """name: "deploy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(TRAIN_NET)
    (tmp_path / "deploy.prototxt").write_text(DEPLOY_NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: 2 snapshot_prefix: "tiny" random_seed: 1')
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["train", "-solver", "solver.prototxt", "-gpu", "0"],
    ["train", "-solver", "solver.prototxt", "-gpu=all"],
    ["time", "-model", "deploy.prototxt", "-iterations", "1", "-gpu", "0"],
])
def test_gpu_flag_warns_once_and_runs_on_the_cpu(tiny, capsys, argv):
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("runs on the CPU") == 1 and "-gpu" in err, err


def test_time_runs_backward_on_every_layer_of_a_deploy_net(tiny, capsys, monkeypatch):
    calls = []
    original = InnerProductLayer.backward

    def counting(self, top, propagate_down, bottom):
        original(self, top, propagate_down, bottom)
        calls.append(float(np.abs(self.blobs[0].diff).sum()))

    monkeypatch.setattr(InnerProductLayer, "backward", counting)
    assert main(["time", "-model", "deploy.prototxt", "-iterations", "3"]) == 0
    assert len(calls) >= 3  # every timed pass, though no loss needs it (as Caffe's time)
    err = capsys.readouterr().err
    assert "ip\tbackward: " in err


def test_unknown_option_shows_the_subcommand_usage(tiny, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "net.prototxt", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: caffelite check" in err and "unrecognized arguments: --bogus" in err
    with pytest.raises(SystemExit):
        main(["train", "-solver", "solver.prototxt", "-bogus", "1"])
    assert "usage: caffelite train" in capsys.readouterr().err


def test_closed_pipe_exits_quietly(tmp_path):
    layers = "".join('layer { name: "r%d" type: "ReLU" bottom: "b%d" top: "b%d" }\n' % (i, i, i + 1)
                     for i in range(2000))
    net = tmp_path / "big.prototxt"
    net.write_text('layer { name: "in" type: "Input" top: "b0" input_param { shape { dim: 1 } } }\n' + layers)
    proc = subprocess.Popen([sys.executable, "-m", "caffelite", "check", "--format", "json", str(net)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode != 0


def test_python2_script_gets_a_2to3_hint_without_runpy_frames(tmp_path, capsys):
    script = tmp_path / "old.py"
    script.write_text('import caffe\nprint "net:", caffe.TRAIN\n')
    assert main(["run-pycaffe", str(script)]) == 1
    err = capsys.readouterr().err
    assert "Python 2" in err and "2to3" in err and "runpy" not in err, err
    script.write_text("import caffe\ntry:\n    pass\nexcept ValueError, e:\n    pass\n")
    assert main(["run-pycaffe", str(script)]) == 1
    err = capsys.readouterr().err
    assert "Python 2" in err and "runpy" not in err, err


def test_messages_use_the_name_the_user_imported(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(DEPLOY_NET)
    for module in ("caffe", "caffelite"):
        code = ("import caffelite.compat\nimport %s as m\ntry:\n    m.Net(%r, 7)\nexcept ValueError as e:\n"
                "    print(e)\n" % (module, str(tmp_path / "deploy.prototxt")))
        if module == "caffelite":
            code = code.replace("import caffelite.compat\n", "")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        other = "caffelite" if module == "caffe" else "caffe"
        assert "%s.TRAIN" % module in out.stdout and " %s.TRAIN" % other not in out.stdout, out.stdout + out.stderr
