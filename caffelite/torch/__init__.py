"""caffelite on PyTorch: any Caffe net as a ``torch.nn.Module`` with Caffe's numbers.

``CaffeNet(prototxt, weights=None, phase=TEST)`` builds the module; see caffelite/torch/module.py.
torch is the optional extra ``caffelite[torch]``.
"""

from caffelite.errors import MissingDependencyError

try:
    import torch as _torch  # noqa: F401
except ImportError:
    raise MissingDependencyError("caffelite.torch needs the optional package 'torch': pip install caffelite[torch] "
                                 "(CPU-only: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
                                 ) from None

from caffelite.torch._caffelite import TEST, TRAIN  # noqa: E402
from caffelite.torch.module import DATA_LAYER_TYPES, CaffeNet, ParamSpec, Trace, param_name  # noqa: E402

__all__ = ["CaffeNet", "ParamSpec", "Trace", "param_name", "DATA_LAYER_TYPES", "TRAIN", "TEST"]
