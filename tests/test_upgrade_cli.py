"""``caffelite upgrade``: the command line over caffelite.upgrade (V1 nets, old solvers)."""

from caffelite.cli import main
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text

V1 = 'name: "old"\nlayers { name: "r" type: RELU bottom: "x" top: "y" }\ninput: "x"\ninput_dim: 1\ninput_dim: 2\n' \
     'input_dim: 1\ninput_dim: 1\n'


def test_upgrade_v1_net(tmp_path, capsys):
    src, dst = tmp_path / "old.prototxt", tmp_path / "new.prototxt"
    src.write_text(V1)
    assert main(["upgrade", str(src), "-o", str(dst)]) == 0
    assert "upgraded: net" in capsys.readouterr().out
    net = parse_text(dst.read_text(), caffe_pb2.NetParameter())
    assert [lp.type for lp in net.layer] == ["Input", "ReLU"] and not len(net.layers)


def test_upgrade_solver_type(tmp_path, capsys):
    src, dst = tmp_path / "solver.prototxt", tmp_path / "new.prototxt"
    src.write_text('net: "n.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nsolver_type: NESTEROV\n')
    assert main(["upgrade", str(src), "-o", str(dst)]) == 0
    solver = parse_text(dst.read_text(), caffe_pb2.SolverParameter())
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    assert main(["upgrade", str(src), "-o", str(dst), "--solver"]) == 0
    assert "already current" not in capsys.readouterr().out.splitlines()[0]


def test_upgrade_refuses_to_overwrite_and_reports_missing(tmp_path, capsys):
    src = tmp_path / "old.prototxt"
    src.write_text(V1)
    assert main(["upgrade", str(src), "-o", str(src)]) == 2
    assert main(["upgrade", str(tmp_path / "missing.prototxt"), "-o", str(tmp_path / "x")]) == 1
    assert "not found" in capsys.readouterr().err
