"""The gradient-check table: one row (or more) per differentiable registered layer type.

Each family module here (``foundation``, ``neuron``, ``vision``, ...) defines ``CASES``, a list of
:class:`GradCase`; tests/test_gradients.py runs them all through ``caffelite.testing.check_gradient``
and fails if a registered layer type with a backward has no row.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradCase:
    """A layer spec (LayerParameter text), a factory of bottom arrays, and checker options."""

    id: str
    spec: str
    bottoms: Callable[[np.random.Generator], list]
    num_top: int = 1
    options: dict = field(default_factory=dict)

    @property
    def type(self) -> str:
        from caffelite.proto import caffe_pb2
        from caffelite.protoio import parse_text

        return parse_text(self.spec, caffe_pb2.LayerParameter()).type


# Registered types that have no gradient to check, with the reason (not differentiable, or no inputs).
NO_GRADIENT = {
    "Accuracy": "forward only in Caffe",
    "ArgMax": "forward only in Caffe",
    "Threshold": "forward only in Caffe",
    "Input": "no bottoms",
    "DummyData": "no bottoms",
    "Silence": "no tops: writes zero gradients (tested in test_net)",
    "Data": "no bottoms",
    "ImageData": "no bottoms",
    "HDF5Data": "no bottoms",
    "MemoryData": "no bottoms",
    "WindowData": "no bottoms",
    "HDF5Output": "a sink: Caffe's backward does nothing",
}


def all_cases() -> list[GradCase]:
    cases = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module("%s.%s" % (__name__, info.name))
        cases.extend(getattr(module, "CASES", []))
    return cases
