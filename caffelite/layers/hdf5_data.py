r"""HDF5 layers: HDF5Data reads datasets from the files a list names, HDF5Output writes its bottoms
(``pip install caffelite[hdf5]``).

Caffe: src/caffe/layers/hdf5_data_layer.cpp, src/caffe/layers/hdf5_output_layer.cpp.
"""

from __future__ import annotations

import os

import numpy as np

from caffelite.errors import CaffeFileNotFoundError, FileFormatError, LayerError, ShapeError
from caffelite.layer import Layer, register_layer
from caffelite.layers.base_data import DataLayerBase, check_batch_size, read_list, shuffle_list
from caffelite.transform import import_optional


@register_layer
class HDF5DataLayer(DataLayerBase):
    r"""Reads rows of the datasets named by its tops from the HDF5 files listed in ``source``.

    Each top :math:`j` is ``batch_size`` rows of dataset ``top[j]``; a batch continues into the
    next file when one runs out, and the list wraps around.  With ``shuffle``, the file order is
    shuffled at setup and at each wrap, and the rows of each file when it is loaded and when it
    runs out (Caffe's order of shuffles).  No transform_param: HDF5 data is used as stored.

    Caffe: src/caffe/layers/hdf5_data_layer.cpp, src/caffe/util/hdf5.cpp.
    """

    type = "HDF5Data"
    reads_source = True
    max_tops = -1

    def setup(self, bottom, top):
        p = self.layer_param.hdf5_data_param
        if self.layer_param.HasField("transform_param"):
            raise LayerError("HDF5Data does not transform data.", field="transform_param")
        self.h5py = import_optional("h5py", "hdf5", "The HDF5Data layer")
        self.batch_size = check_batch_size(p.batch_size, "hdf5_data_param.batch_size")
        self.files = [w for line in read_list(p.source, "HDF5 file list") for w in line.split()]
        if not self.files:
            raise FileFormatError("Must have at least 1 HDF5 filename listed in %s" % p.source, file=p.source)
        self.file_order = list(range(len(self.files)))
        if p.shuffle:
            shuffle_list(self.file_order)
        self.current_file = 0
        self._load(self.files[self.file_order[0]])
        self.current_row = 0
        for j, blob in enumerate(top):
            blob.reshape((self.batch_size,) + self.arrays[j].shape[1:])

    def _load(self, filename: str) -> None:
        """Caffe's LoadHDF5FileData: every top's dataset, same row count, row order (shuffled)."""
        if not os.path.isfile(filename):
            raise CaffeFileNotFoundError("Failed opening HDF5 file: %s" % filename, file=filename)
        arrays = []
        try:
            with self.h5py.File(filename, "r") as f:
                for name in self.layer_param.top:
                    if name not in f:
                        raise FileFormatError("Failed to find HDF5 dataset %s in %s" % (name, filename),
                                              file=filename)
                    ds = f[name]
                    if not isinstance(ds, self.h5py.Dataset) or ds.dtype.kind not in "fiu":
                        raise FileFormatError("HDF5 dataset %s in %s is not a numeric array" % (name, filename),
                                              file=filename)
                    if ds.ndim < 1:
                        raise FileFormatError("HDF5 dataset %s in %s must have at least 1 axis."
                                              % (name, filename), file=filename)
                    arrays.append(np.asarray(ds[...], dtype=np.float32))
        except OSError as e:
            raise FileFormatError("Failed opening HDF5 file: %s (%s)" % (filename, e), file=filename) from None
        num = arrays[0].shape[0]
        for name, arr in zip(self.layer_param.top, arrays):
            if arr.shape[0] != num:
                raise ShapeError("HDF5 datasets in %s differ in row count: %s has %d, %s has %d"
                                 % (filename, self.layer_param.top[0], num, name, arr.shape[0]))
        if num == 0:
            raise FileFormatError("HDF5 file %s has no rows" % filename, file=filename)
        self.arrays = arrays
        self.rows = list(range(num))
        if self.layer_param.hdf5_data_param.shuffle:
            shuffle_list(self.rows)

    def _next(self) -> None:
        """Caffe's HDF5DataLayer::Next: the next row, the next file, or wrap around."""
        self.current_row += 1
        if self.current_row == len(self.rows):
            shuffle = self.layer_param.hdf5_data_param.shuffle
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    if shuffle:
                        shuffle_list(self.file_order)
                self._load(self.files[self.file_order[self.current_file]])
            self.current_row = 0
            if shuffle:
                shuffle_list(self.rows)

    def forward(self, bottom, top):
        for i in range(self.batch_size):
            row = self.rows[self.current_row]
            for j, blob in enumerate(top):
                if self.arrays[j].shape[1:] != blob.shape[1:]:
                    raise ShapeError("HDF5 dataset %s changes shape between files: %s, top is %s"
                                     % (self.layer_param.top[j], list(self.arrays[j].shape[1:]),
                                        list(blob.shape[1:])))
                blob.data[i] = self.arrays[j][row]
            self._next()


@register_layer
class HDF5OutputLayer(Layer):
    r"""Writes its two bottoms to ``hdf5_output_param.file_name`` as datasets ``data`` and ``label``.

    Both are stored as 4-D (num, channels, height, width) float32 arrays, as Caffe stores them.
    The file is created (truncated) at setup; each forward replaces the datasets with the latest
    batch (BVLC Caffe aborts on a second forward because the datasets exist already).

    Caffe: src/caffe/layers/hdf5_output_layer.cpp.
    """

    type = "HDF5Output"
    has_backward = False
    empty_backward = True
    exact_bottoms = 2
    exact_tops = 0

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        self.h5py = import_optional("h5py", "hdf5", "The HDF5Output layer")
        self.file_name = self.layer_param.hdf5_output_param.file_name
        if not self.file_name:
            raise LayerError("hdf5_output_param.file_name must be set", field="hdf5_output_param.file_name")
        try:
            self.h5py.File(self.file_name, "w").close()
        except OSError as e:
            raise CaffeFileNotFoundError("Failed to open HDF5 file %s for writing: %s" % (self.file_name, e),
                                         file=self.file_name) from None

    def reshape(self, bottom, top):
        if bottom[0].num != bottom[1].num:
            raise ShapeError("HDF5Output: data and label must have the same num (%d vs %d)"
                             % (bottom[0].num, bottom[1].num))

    def forward(self, bottom, top):
        with self.h5py.File(self.file_name, "a") as f:
            for name, blob in (("data", bottom[0]), ("label", bottom[1])):
                legacy = tuple(blob.legacy_shape(k) for k in range(4))
                if name in f:
                    del f[name]
                f.create_dataset(name, data=np.asarray(blob.data, dtype=np.float32).reshape(legacy))

    def backward(self, top, propagate_down, bottom):
        pass
