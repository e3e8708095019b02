"""The pycaffe classification example runs, and ``caffelite run-pycaffe`` runs `import caffe` scripts."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from caffelite import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def restore_caffe_alias():
    """Leave ``sys.modules['caffe']`` as we found it."""
    saved = {name: mod for name, mod in sys.modules.items() if name == "caffe" or name.startswith("caffe.")}
    yield
    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_pycaffe_classify_example(tmp_path):
    """The example as a user runs it: a fresh interpreter, `import caffe` through the one alias line."""
    pytest.importorskip("PIL")
    script = os.path.join(ROOT, "examples", "pycaffe_classify", "classify.py")
    proc = subprocess.run([sys.executable, script, "--iters", "300", "--images", "3", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    accuracy = float(re.search(r"accuracy on 400 held-out digits: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.9
    top5 = re.findall(r"digit_\d\.pgm \(true: \w+\): predicted \w+; top-5: (.*)", out)
    assert len(top5) == 3
    for line in top5:
        probs = [float(item.split()[1]) for item in line.split(", ")]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    for name in ("digits_mlp.caffemodel", "mean.binaryproto", "deploy.prototxt", "digit_0.pgm"):
        assert (tmp_path / name).exists()


SCRIPT = """
import sys
import numpy as np
import caffe
import mylayer

net_file = sys.argv[1]
net = caffe.Net(net_file, caffe.TEST)
out = net.forward(data=np.full((2, 3), float(sys.argv[2]), dtype=np.float32))
print("RESULT", out["doubled"].sum(), caffe.__name__, mylayer.caffe is caffe)
sys.exit(int(sys.argv[3]))
"""

LAYER = """
import caffe

class Double(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
"""

NET = """name: 'py'
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 2 dim: 3 } } }
layer { name: 'double' type: 'Python' bottom: 'data' top: 'doubled'
  python_param { module: 'mylayer' layer: 'Double' } }
"""


def test_run_pycaffe_runs_an_import_caffe_script(tmp_path, capsys, restore_caffe_alias):
    import caffelite

    if "Python" not in caffelite.layer_type_list():
        pytest.skip("the Python layer is not registered yet")
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "mylayer.py").write_text(LAYER)
    (tmp_path / "net.prototxt").write_text(NET)
    sys.modules.pop("mylayer", None)
    argv_before, path_before = sys.argv[:], sys.path[:]
    # arguments after the script pass through untouched (no -flag rewriting), and its exit code comes back
    rc = cli.main(["run-pycaffe", str(tmp_path / "script.py"), str(tmp_path / "net.prototxt"), "-1.5", "4"])
    sys.modules.pop("mylayer", None)
    assert rc == 4
    assert sys.argv == argv_before and sys.path == path_before
    out = capsys.readouterr().out
    np.testing.assert_allclose(float(out.split("RESULT")[1].split()[0]), 2 * -1.5 * 6)
    assert "caffelite.pycaffe True" in out


def test_run_pycaffe_reports_script_errors(tmp_path, capsys, restore_caffe_alias):
    (tmp_path / "bad.py").write_text("import caffe\nraise RuntimeError('boom')\n")
    assert cli.main(["run-pycaffe", str(tmp_path / "bad.py")]) == 1
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert cli.main(["run-pycaffe", str(tmp_path / "missing.py")]) == 1
    assert "script not found" in capsys.readouterr().err
