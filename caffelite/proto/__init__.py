"""The generated schema, ``caffelite.proto.caffe_pb2`` (built from proto/caffe.proto).

The module is generated, never committed: ``make proto`` or ``pip install .`` writes it.  In a
source checkout with grpcio-tools installed it is generated on first import.
"""

import os

try:
    from caffelite.proto import caffe_pb2
except ImportError as exc:  # a fresh checkout: build it when we can, else say how
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _script = os.path.join(_root, "proto", "build_proto.py")
    if not os.path.exists(_script):
        raise ImportError("caffelite.proto.caffe_pb2 is missing; reinstall caffelite") from exc
    try:
        import importlib.util

        _spec = importlib.util.spec_from_file_location("_caffelite_build_proto", _script)
        _mod = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_mod)
        _mod.build(force=True)
    except ImportError as exc2:
        raise ImportError("caffelite.proto.caffe_pb2 has not been generated: run `make proto` "
                          "(needs grpcio-tools)") from exc2
    from caffelite.proto import caffe_pb2

__all__ = ["caffe_pb2"]
