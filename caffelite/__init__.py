"""caffelite: Caffe, reborn in pure Python.

The public API follows pycaffe, so ``import caffelite as caffe`` reads like the scripts people
already have::

    import caffelite as caffe
    net = caffe.Net("deploy.prototxt", "weights.caffemodel", caffe.TEST)
    out = net.forward(data=images)
"""

from caffelite._version import __version__
from caffelite.blob import Blob
from caffelite.common import has_nccl, set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from caffelite.compute.parallel import get_num_threads, set_num_threads
from caffelite.errors import (
    BackwardError,
    BlobMemoryError,
    CaffeFileNotFoundError,
    CaffeliteError,
    FileFormatError,
    LabelError,
    LayerError,
    MissingDependencyError,
    NetError,
    ProtoError,
    ShapeError,
    SolverError,
    UnknownLayerTypeError,
    UnsupportedError,
    WeightsError,
)
from caffelite.layer import TEST, TRAIN, Layer, register_layer
from caffelite.layer_factory import layer_type_list
from caffelite.layers import python as _python_layer
from caffelite.net import Net
from caffelite.solvers import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    Solver,
    get_solver,
)


def _install_caffe_alias() -> bool:
    """``import caffe`` -> caffelite.pycaffe for a Python layer's module (importing compat installs it)."""
    from caffelite import compat

    return compat.install()


_python_layer.use_caffe_alias(_install_caffe_alias)

__all__ = [
    "__version__", "Blob", "Layer", "Net", "TRAIN", "TEST", "layer_type_list", "register_layer",
    "set_mode_cpu", "set_mode_gpu", "set_device", "set_random_seed", "has_nccl", "set_num_threads",
    "get_num_threads",
    "CaffeliteError", "ProtoError", "FileFormatError", "CaffeFileNotFoundError", "NetError",
    "UnknownLayerTypeError", "LayerError", "ShapeError", "LabelError", "BackwardError", "WeightsError",
    "BlobMemoryError", "SolverError", "UnsupportedError", "MissingDependencyError",
    "get_solver", "Solver", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver", "AdaDeltaSolver",
    "AdamSolver",
]
