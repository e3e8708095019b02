"""pycaffe's public API on caffelite: the module ``import caffe`` gives under caffelite.

``caffelite.compat.install()`` (run when a Python layer's module is imported, or by
``import caffelite.compat``) makes ``import caffe`` return this module, and
``caffe.proto.caffe_pb2`` caffelite's generated schema, unless a real pycaffe is already imported.
Submodules mirroring pycaffe's (``io``, ``draw``, ``net_spec``, ...) live next to this file and
import as ``caffe.<name>`` through the same alias.
"""

from caffelite import proto
from caffelite._version import __version__
from caffelite.blob import Blob
from caffelite.common import has_nccl, set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from caffelite.layer import TEST, TRAIN, Layer
from caffelite.layer_factory import layer_type_list
from caffelite.net import Net
from caffelite.net_spec import NetSpec, layers, params, to_proto
from caffelite.pycaffe import io  # pycaffe imports io with the package
from caffelite.pycaffe.classifier import Classifier
from caffelite.pycaffe.detector import Detector
from caffelite.solvers import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    get_solver,
)

__all__ = [
    "__version__", "Net", "Blob", "Layer", "TRAIN", "TEST", "layer_type_list",
    "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "proto",
    "get_solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver", "AdamSolver",
    "has_nccl", "io", "Classifier", "Detector", "NetSpec", "layers", "params", "to_proto",
]
