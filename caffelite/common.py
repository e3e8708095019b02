"""Process-wide state Caffe keeps in its ``Caffe`` singleton: the random generator and the mode.

Caffe: include/caffe/common.hpp.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from caffelite.errors import UnsupportedError
from caffelite.proto import caffe_pb2

# Caffe's Phase enum: which half of a net (and which data transformation) runs.
TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST

_rng = np.random.default_rng()


def api_name() -> str:
    """The module name messages should use: ``caffe`` under ``import caffe`` (the alias), else ``caffelite``."""
    module = sys.modules.get("caffe")
    return "caffe" if getattr(module, "__name__", "") == "caffelite.pycaffe" else "caffelite"


def rng() -> np.random.Generator:
    """The generator every filler, Dropout mask and data shuffle draws from."""
    return _rng


def set_random_seed(seed: int) -> None:
    """Seed caffelite's generator (pycaffe's ``caffe.set_random_seed``)."""
    global _rng
    _rng = np.random.default_rng(int(seed))


def set_mode_cpu() -> None:
    """caffelite always runs on the CPU; kept so pycaffe scripts run unchanged."""


def set_mode_gpu() -> None:
    """caffelite has no GPU mode: warn and keep computing on the CPU."""
    warnings.warn("caffelite runs on the CPU only; set_mode_gpu() is ignored", RuntimeWarning, stacklevel=2)


def set_device(device_id: int) -> None:
    """No GPUs in caffelite: a device other than 0 is an error, 0 a no-op (as set_mode_gpu)."""
    if int(device_id) != 0:
        raise UnsupportedError("caffelite runs on the CPU only; there is no GPU device %d" % device_id)


def has_nccl() -> bool:
    """pycaffe's ``caffe.has_nccl()``: caffelite has no multi-GPU NCCL support."""
    return False
