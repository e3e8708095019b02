r"""The ImageData layer: images named in a list file, with their labels (``pip install caffelite[image]``).

Caffe: src/caffe/layers/image_data_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.common import rng
from caffelite.errors import FileFormatError, LayerError
from caffelite.layer import register_layer
from caffelite.layers.base_data import DataLayerBase, check_batch_size, read_list, shuffle_list
from caffelite.transform import import_optional, read_image


def read_image_list(source: str, root_folder: str = "") -> list[tuple[str, int]]:
    """A Caffe image list: one ``path label`` per line, split at the last space (paths may hold spaces)."""
    lines = []
    for number, line in enumerate(read_list(source, "image list"), 1):
        line = line.strip()
        if not line:
            continue
        path, sep, label = line.rpartition(" ")
        try:
            if not sep:
                raise ValueError
            value = int(label)
        except ValueError:
            raise FileFormatError("line %d of %s is not `path label`: %r" % (number, source, line),
                                  file=source, line=number) from None
        lines.append((root_folder + path.strip(), value))
    return lines


@register_layer
class ImageDataLayer(DataLayerBase):
    r"""Reads the images of a ``path label`` list file (Pillow), BGR like OpenCV, and transforms them.

    ``new_height``/``new_width`` (both > 0) resize with OpenCV's bilinear filter (our NumPy port;
    see caffelite.transform); ``is_color: false`` loads one grey channel; ``root_folder`` prefixes
    every path; ``shuffle`` shuffles the list at setup and at each wrap; ``rand_skip`` starts at
    a random line in [0, rand_skip).  Each batch is shaped by its first image.

    Caffe: src/caffe/layers/image_data_layer.cpp.
    """

    type = "ImageData"
    reads_source = True

    def setup(self, bottom, top):
        p = self.layer_param.image_data_param
        if (p.new_height > 0) != (p.new_width > 0):
            raise LayerError("Current implementation requires new_height and new_width to be set at the "
                             "same time. (new_height %d, new_width %d)" % (p.new_height, p.new_width),
                             field="image_data_param.new_height")
        import_optional("PIL.Image", "image", "The ImageData layer")
        self.batch_size = check_batch_size(p.batch_size, "image_data_param.batch_size")
        self.transformer = self.make_transformer()
        self.lines = read_image_list(p.source, p.root_folder)
        if not self.lines:
            raise FileFormatError("File is empty: %s" % p.source, file=p.source)
        if p.shuffle:
            shuffle_list(self.lines)
        self.line_id = 0
        if p.rand_skip:
            skip = int(rng().integers(p.rand_skip))
            if skip >= len(self.lines):
                raise LayerError("Not enough points to skip (%d lines, skip %d)" % (len(self.lines), skip),
                                 field="image_data_param.rand_skip")
            self.line_id = skip
        image = self._load(self.lines[self.line_id][0])
        top[0].reshape((self.batch_size,) + self.transformer.infer_shape(image.shape))
        if self.output_labels:
            top[1].reshape(self.batch_size)

    def _load(self, path: str) -> np.ndarray:
        p = self.layer_param.image_data_param
        return read_image(path, p.new_height, p.new_width, p.is_color)

    def forward(self, bottom, top):
        for i in range(self.batch_size):
            path, label = self.lines[self.line_id]
            image = self._load(path)
            if i == 0:
                top[0].reshape((self.batch_size,) + self.transformer.infer_shape(image.shape))
                if self.output_labels:
                    top[1].reshape(self.batch_size)
            self.transformer.transform(image, top[0].data[i])
            if self.output_labels:
                top[1].data[i] = label
            self.line_id += 1
            if self.line_id >= len(self.lines):
                self.line_id = 0
                if self.layer_param.image_data_param.shuffle:
                    shuffle_list(self.lines)
