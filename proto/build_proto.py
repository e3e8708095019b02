"""Compile proto/caffe.proto into caffelite/proto/caffe_pb2.py.

Used by the Makefile (``make proto``) and by the in-tree build backend
(proto/build_backend.py), so ``pip install .`` works from a clean checkout.

The schema is compiled under the name ``caffelite/proto/caffe.proto`` (its import
path), not ``caffe.proto``: the descriptor pool then never sees two files of the
same name when a real pycaffe is loaded in the same process.
"""

import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "proto", "caffe.proto")
TARGET = os.path.join(ROOT, "caffelite", "proto", "caffe_pb2.py")


def build(force: bool = False) -> str:
    """Generate TARGET from SOURCE unless it is already up to date."""
    if (not force and os.path.exists(TARGET)
            and os.path.getmtime(TARGET) >= os.path.getmtime(SOURCE)):
        return TARGET
    from grpc_tools import protoc  # build-time dependency only

    with tempfile.TemporaryDirectory() as tmp:
        staged = os.path.join(tmp, "caffelite", "proto")
        os.makedirs(staged)
        shutil.copyfile(SOURCE, os.path.join(staged, "caffe.proto"))
        rc = protoc.main(["grpc_tools.protoc", "-I" + tmp, "--python_out=" + tmp,
                          "caffelite/proto/caffe.proto"])
        if rc != 0:
            raise SystemExit("protoc failed on %s (exit %d)" % (SOURCE, rc))
        shutil.copyfile(os.path.join(staged, "caffe_pb2.py"), TARGET)
    return TARGET


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
