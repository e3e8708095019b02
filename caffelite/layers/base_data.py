r"""What the data layers share: Caffe's BaseDataLayer and the reading of list files.

Caffe: src/caffe/layers/base_data_layer.cpp.

Data paths (``source``, ``mean_file``, image paths) are resolved against the current directory,
as Caffe resolves them.  Caffe reads ahead on a prefetch thread; caffelite reads each batch in
``forward``, which gives the same sequence of batches.  Every data layer is forward-only.
"""

from __future__ import annotations

import os

from caffelite.common import rng
from caffelite.errors import CaffeFileNotFoundError, LayerError
from caffelite.layer import Layer
from caffelite.transform import DataTransformer


class DataLayerBase(Layer):
    """Caffe's BaseDataLayer: no bottoms, top 0 the data, optional top 1 the labels."""

    has_backward = False
    empty_backward = True
    provides_data = True
    exact_bottoms = 0
    min_tops = 1
    max_tops = 2

    def allow_force_backward(self, bottom_index):
        return False

    @property
    def output_labels(self) -> bool:
        return len(self.layer_param.top) != 1

    def make_transformer(self) -> DataTransformer:
        return DataTransformer(self.layer_param.transform_param, self.phase)

    def reshape(self, bottom, top):
        pass  # tops are shaped per batch in forward, as Caffe's prefetching layers do

    def backward(self, top, propagate_down, bottom):
        pass


def shuffle_list(items: list) -> None:
    """Shuffle a list in place with caffelite's generator (Caffe's shuffle with its prefetch RNG)."""
    order = rng().permutation(len(items))
    items[:] = [items[i] for i in order]


def check_batch_size(value: int, field: str) -> int:
    if value <= 0:
        raise LayerError("%s must be positive (got %d)" % (field, value), field=field)
    return int(value)


def read_list(source: str, what: str) -> list[str]:
    if not os.path.isfile(source):
        raise CaffeFileNotFoundError("Failed to open source file: %s (%s)" % (source, what), file=source)
    with open(source, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()
