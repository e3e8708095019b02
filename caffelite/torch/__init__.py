"""caffelite on PyTorch: any Caffe net as a ``torch.nn.Module`` with Caffe's numbers.

::

    import caffelite
    from caffelite.torch import CaffeNet

    net = CaffeNet("train_val.prototxt", "weights.caffemodel", phase=caffelite.TRAIN).to("cuda")
    out = net(data=images, label=labels)      # the net's outputs, as tensors ({"loss": ..., "accuracy": ...})
    net.total_loss(out).backward()            # Caffe's parameter diffs in p.grad (loss weights applied)
    for name, p, spec in net.named_caffe_params():   # "conv1/0", Parameter, ParamSpec(lr_mult, decay_mult)
        ...
    net.save_caffemodel("out.caffemodel")     # Caffe's binary format

See caffelite/torch/module.py for the semantics kept (phases, splits, in-place layers, sharing,
``propagate_down``, ``force_backward``, data and Python layers).  torch is the optional extra
``caffelite[torch]``; a CPU-only build of torch is enough.
"""

from caffelite.errors import MissingDependencyError

try:
    import torch as _torch  # noqa: F401
except ImportError:
    raise MissingDependencyError("caffelite.torch needs the optional package 'torch': pip install caffelite[torch] "
                                 "(a CPU-only build is enough; see PyTorch's install page)") from None

from caffelite.torch._caffelite import TEST, TRAIN  # noqa: E402
from caffelite.torch.module import DATA_LAYER_TYPES, CaffeNet, ParamSpec, Trace, param_name  # noqa: E402
from caffelite.torch.solvers import CaffeLR, CaffeOptimizer, solver  # noqa: E402

__all__ = ["CaffeNet", "ParamSpec", "Trace", "param_name", "DATA_LAYER_TYPES", "TRAIN", "TEST",
           "solver", "CaffeOptimizer", "CaffeLR"]
