r"""Layers that read datasets: Data (LMDB), MemoryData, HDF5Data, HDF5Output, ImageData, WindowData.

Caffe: src/caffe/layers/{data,memory_data,hdf5_data,hdf5_output,image_data,window_data}_layer.cpp.

Data paths (``source``, ``mean_file``, image paths) are resolved against the current directory,
as Caffe resolves them.  Caffe reads ahead on a prefetch thread; caffelite reads each batch in
``forward``, which gives the same sequence of batches.  Every layer here is forward-only.
Optional packages: ``lmdb`` (``pip install caffelite[lmdb]``), ``h5py`` (``[hdf5]``) and
``Pillow`` (``[image]``).
"""

from __future__ import annotations

import os

import numpy as np

from caffelite.common import rng
from caffelite.errors import (
    CaffeFileNotFoundError,
    FileFormatError,
    LayerError,
    ShapeError,
    UnsupportedError,
)
from caffelite.layer import Layer, register_layer
from caffelite.proto import caffe_pb2
from caffelite.transform import (
    DataTransformer,
    datum_to_array,
    import_optional,
    read_image,
    resize_bilinear,
)


class _DataLayerBase(Layer):
    """Caffe's BaseDataLayer: no bottoms, top 0 the data, optional top 1 the labels."""

    has_backward = False

    def exact_num_bottom_blobs(self):
        return 0

    def min_top_blobs(self):
        return 1

    def max_top_blobs(self):
        return 2

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


def _shuffle(items: list) -> None:
    """Shuffle a list in place with caffelite's generator (Caffe's shuffle with its prefetch RNG)."""
    order = rng().permutation(len(items))
    items[:] = [items[i] for i in order]


def _check_batch_size(value: int, field: str) -> int:
    if value <= 0:
        raise LayerError("%s must be positive (got %d)" % (field, value), field=field)
    return int(value)


# --- Data (LMDB) -------------------------------------------------------------------------------
class LMDBReader:
    """A read-only cursor over an LMDB of Datum records that wraps around at the end.

    The database is opened read-only with ``lock=False`` (so one in a read-only folder can be
    read) and only for the time of each read: LMDB refuses to open a database twice in one
    process, and a train and a test net, or the user's own code, may read the same source.
    The position between reads is the next record's key.
    """

    def __init__(self, path: str):
        self.lmdb = import_optional("lmdb", "lmdb", "Reading LMDB databases")
        self.path = path
        if not os.path.exists(path):
            raise CaffeFileNotFoundError("Data source %s does not exist (an LMDB folder was expected)" % path,
                                         file=path)
        self.key: bytes | None = None
        if not self.read(1, advance=False):
            raise FileFormatError("Data source %s is an empty LMDB (no records)" % path, file=self.path)

    def read(self, n: int, advance: bool = True) -> list[bytes]:
        """The next ``n`` record values (wrapping around); ``advance=False`` only peeks."""
        lmdb = self.lmdb
        try:
            env = lmdb.open(self.path, readonly=True, lock=False, subdir=os.path.isdir(self.path),
                            readahead=False, max_readers=1)
        except lmdb.Error as e:
            if "already open" in str(e):
                raise FileFormatError("cannot read LMDB %s: another lmdb.Environment of this process has it "
                                      "open (py-lmdb allows one at a time): close that one first"
                                      % self.path, file=self.path) from None
            raise FileFormatError("cannot read LMDB %s: %s (truncated or not an LMDB?)" % (self.path, e),
                                  file=self.path) from None
        try:
            with env.begin() as txn:
                cursor = txn.cursor()
                if not (self.key is not None and cursor.set_range(self.key)) and not cursor.first():
                    return []
                values = []
                for _ in range(n):
                    values.append(cursor.value())
                    if not cursor.next():
                        cursor.first()  # wrap around, as Caffe's DataLayer restarts its cursor
                if advance:
                    self.key = cursor.key()
                return values
        except lmdb.Error as e:
            raise FileFormatError("cannot read LMDB %s: %s" % (self.path, e), file=self.path) from None
        finally:
            env.close()

    def skip(self, n: int) -> None:
        if n:
            self.read(n)


def open_db(source: str, backend: int) -> LMDBReader:
    """Open a Data layer's source: LMDB only; LevelDB is refused with a way out."""
    if backend == caffe_pb2.DataParameter.LEVELDB:
        hint = ""
        if os.path.isfile(os.path.join(source, "data.mdb")):
            hint = " %s is an LMDB folder: set `backend: LMDB` in data_param." % source
        raise UnsupportedError(
            "LevelDB is not supported by caffelite (data_param.backend is LEVELDB, Caffe's default)."
            "%s To use a LevelDB, convert it to LMDB (e.g. with Caffe's convert_imageset -backend lmdb, "
            "or from the original images with `caffelite convert-imageset`)." % hint,
            field="data_param.backend")
    return LMDBReader(source)


@register_layer
class DataLayer(_DataLayerBase):
    r"""Reads Datum records from an LMDB, ``batch_size`` at a time, through the DataTransformer.

    Top 0: :math:`N \times C \times H \times W` (H, W the crop size when cropping), shaped by the
    first record of each batch; top 1 (optional): the N labels.  The cursor wraps around at the
    end; ``rand_skip`` skips a random number of records in [0, rand_skip) at the start.

    Caffe: src/caffe/layers/data_layer.cpp.
    """

    type = "Data"

    def setup(self, bottom, top):
        p = self.layer_param.data_param
        self.batch_size = _check_batch_size(p.batch_size, "data_param.batch_size")
        self.transformer = self.make_transformer()
        self.reader = open_db(p.source, p.backend)
        if p.rand_skip:
            self.reader.skip(int(rng().integers(p.rand_skip)))
        first = self._parse(self.reader.read(1, advance=False)[0])
        item_shape = self.transformer.infer_shape(self._item(first).shape)
        top[0].reshape((self.batch_size,) + item_shape)
        if self.output_labels:
            top[1].reshape(self.batch_size)

    def _parse(self, raw: bytes):
        datum = caffe_pb2.Datum()
        try:
            datum.ParseFromString(raw)
        except Exception as e:  # protobuf's DecodeError
            raise FileFormatError("LMDB %s holds a record that is not a Datum (%d bytes): %s"
                                  % (self.reader.path, len(raw), e), file=self.reader.path) from None
        return datum

    def _item(self, datum) -> np.ndarray:
        t = self.transformer.param
        return datum_to_array(datum, t.force_color, t.force_gray, self.reader.path)

    def forward(self, bottom, top):
        for i, raw in enumerate(self.reader.read(self.batch_size)):
            datum = self._parse(raw)
            item = self._item(datum)
            if i == 0:  # shape the batch by its first record (items of varying size need batch 1)
                top[0].reshape((self.batch_size,) + self.transformer.infer_shape(item.shape))
                if self.output_labels:
                    top[1].reshape(self.batch_size)
            self.transformer.transform(item, top[0].data[i])
            if self.output_labels:
                top[1].data[i] = datum.label


# --- MemoryData --------------------------------------------------------------------------------
@register_layer
class MemoryDataLayer(_DataLayerBase):
    r"""Serves batches from arrays the user hands over with ``net.set_input_arrays(data, labels)``.

    Top 0: ``batch_size`` x ``channels`` x ``height`` x ``width``; top 1: the ``batch_size``
    labels.  Each forward serves the next ``batch_size`` rows and wraps around.  The arrays are
    not transformed (Caffe's Reset() ignores ``transform_param`` too).

    Caffe: src/caffe/layers/memory_data_layer.cpp, python/caffe/_caffe.cpp (``set_input_arrays``).
    """

    type = "MemoryData"

    def exact_num_top_blobs(self):
        return 2

    def setup(self, bottom, top):
        p = self.layer_param.memory_data_param
        self.batch_size, self.channels, self.height, self.width = \
            p.batch_size, p.channels, p.height, p.width
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise LayerError("batch_size, channels, height, and width must be specified and positive in "
                             "memory_data_param (got %d, %d, %d, %d)"
                             % (self.batch_size, self.channels, self.height, self.width),
                             field="memory_data_param")
        self._data: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self.n = 0
        self.pos = 0
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def reset(self, data: np.ndarray, labels: np.ndarray, n: int | None = None) -> None:
        """Caffe's MemoryDataLayer::Reset: serve ``data`` (N x C x H x W) and ``labels`` (N) from row 0."""
        n = len(data) if n is None else int(n)
        if n % self.batch_size:
            raise ShapeError("n must be a multiple of batch size (n = %d, batch_size = %d)" % (n, self.batch_size),
                             field="memory_data_param.batch_size")
        self._data = np.asarray(data).reshape(n, self.channels, self.height, self.width)
        self._labels = np.asarray(labels).reshape(n)
        self.n = n
        self.pos = 0

    def set_batch_size(self, new_size: int) -> None:
        """Caffe's MemoryDataLayer::set_batch_size (not allowed once arrays are set)."""
        if self._data is not None:
            raise LayerError("Can't change batch_size until current data is consumed.",
                             field="memory_data_param.batch_size")
        self.batch_size = _check_batch_size(new_size, "memory_data_param.batch_size")

    def forward(self, bottom, top):
        if self._data is None:
            raise LayerError("MemoryDataLayer needs to be initialized by calling Reset "
                             "(net.set_input_arrays(data, labels))")
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)
        rows = slice(self.pos, self.pos + self.batch_size)
        top[0].data[...] = self._data[rows]
        top[1].data[...] = self._labels[rows]
        self.pos = (self.pos + self.batch_size) % self.n

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's ``Net.set_input_arrays``, with its checks and messages (Net calls it on its first layer).

        ``data``: C-contiguous float32 N x C x H x W; ``labels``: float32 N (or N x 1 x 1 x 1);
        N a multiple of ``batch_size``.  Caffe: python/caffe/_caffe.cpp.
        """
        labels = np.asarray(labels)
        if labels.ndim == 1:  # pycaffe accepts 1-D labels and makes them N x 1 x 1 x 1
            labels = np.ascontiguousarray(labels[:, None, None, None])
        for name, arr, dims in (("data array", np.asarray(data), (self.channels, self.height, self.width)),
                                ("labels array", labels, (1, 1, 1))):
            if not arr.flags["C_CONTIGUOUS"]:
                raise ShapeError("%s must be C contiguous" % name)
            if arr.ndim != 4:
                raise ShapeError("%s must be 4-d (got shape %s)" % (name, list(arr.shape)))
            if arr.dtype != np.float32:
                raise ShapeError("%s must be float32 (got %s)" % (name, arr.dtype))
            for axis, what in ((1, "channels"), (2, "height"), (3, "width")):
                if arr.shape[axis] != dims[axis - 1]:
                    raise ShapeError("%s has wrong %s (got %d, expected %d)"
                                     % (name, "number of channels" if what == "channels" else what,
                                        arr.shape[axis], dims[axis - 1]))
        data = np.asarray(data)
        if data.shape[0] != labels.shape[0]:
            raise ShapeError("data and labels must have the same first dimension (%d vs %d)"
                             % (data.shape[0], labels.shape[0]))
        if data.shape[0] % self.batch_size:
            raise ShapeError("first dimensions of input arrays must be a multiple of batch size "
                             "(%d rows, batch_size %d)" % (data.shape[0], self.batch_size))
        self.reset(data, labels, data.shape[0])


# --- HDF5 --------------------------------------------------------------------------------------
def _read_list(source: str, what: str) -> list[str]:
    if not os.path.isfile(source):
        raise CaffeFileNotFoundError("Failed to open source file: %s (%s)" % (source, what), file=source)
    with open(source, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


@register_layer
class HDF5DataLayer(_DataLayerBase):
    r"""Reads rows of the datasets named by its tops from the HDF5 files listed in ``source``.

    Each top :math:`j` is ``batch_size`` rows of dataset ``top[j]``; a batch continues into the
    next file when one runs out, and the list wraps around.  With ``shuffle``, the file order is
    shuffled at setup and at each wrap, and the rows of each file when it is loaded and when it
    runs out (Caffe's order of shuffles).  No transform_param: HDF5 data is used as stored.

    Caffe: src/caffe/layers/hdf5_data_layer.cpp, src/caffe/util/hdf5.cpp.
    """

    type = "HDF5Data"

    def max_top_blobs(self):
        return -1

    def setup(self, bottom, top):
        p = self.layer_param.hdf5_data_param
        if self.layer_param.HasField("transform_param"):
            raise LayerError("HDF5Data does not transform data.", field="transform_param")
        self.h5py = import_optional("h5py", "hdf5", "The HDF5Data layer")
        self.batch_size = _check_batch_size(p.batch_size, "hdf5_data_param.batch_size")
        self.files = [w for line in _read_list(p.source, "HDF5 file list") for w in line.split()]
        if not self.files:
            raise FileFormatError("Must have at least 1 HDF5 filename listed in %s" % p.source, file=p.source)
        self.file_order = list(range(len(self.files)))
        if p.shuffle:
            _shuffle(self.file_order)
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
            _shuffle(self.rows)

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
                        _shuffle(self.file_order)
                self._load(self.files[self.file_order[self.current_file]])
            self.current_row = 0
            if shuffle:
                _shuffle(self.rows)

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

    def exact_num_bottom_blobs(self):
        return 2

    def exact_num_top_blobs(self):
        return 0

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


# --- ImageData ---------------------------------------------------------------------------------
def read_image_list(source: str, root_folder: str = "") -> list[tuple[str, int]]:
    """A Caffe image list: one ``path label`` per line, split at the last space (paths may hold spaces)."""
    lines = []
    for number, line in enumerate(_read_list(source, "image list"), 1):
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
class ImageDataLayer(_DataLayerBase):
    r"""Reads the images of a ``path label`` list file (Pillow), BGR like OpenCV, and transforms them.

    ``new_height``/``new_width`` (both > 0) resize with OpenCV's bilinear filter (our NumPy port;
    see caffelite.transform); ``is_color: false`` loads one grey channel; ``root_folder`` prefixes
    every path; ``shuffle`` shuffles the list at setup and at each wrap; ``rand_skip`` starts at
    a random line in [0, rand_skip).  Each batch is shaped by its first image.

    Caffe: src/caffe/layers/image_data_layer.cpp.
    """

    type = "ImageData"

    def setup(self, bottom, top):
        p = self.layer_param.image_data_param
        if (p.new_height > 0) != (p.new_width > 0):
            raise LayerError("Current implementation requires new_height and new_width to be set at the "
                             "same time. (new_height %d, new_width %d)" % (p.new_height, p.new_width),
                             field="image_data_param.new_height")
        import_optional("PIL.Image", "image", "The ImageData layer")
        self.batch_size = _check_batch_size(p.batch_size, "image_data_param.batch_size")
        self.transformer = self.make_transformer()
        self.lines = read_image_list(p.source, p.root_folder)
        if not self.lines:
            raise FileFormatError("File is empty: %s" % p.source, file=p.source)
        if p.shuffle:
            _shuffle(self.lines)
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
                    _shuffle(self.lines)


# --- WindowData --------------------------------------------------------------------------------
def read_window_file(source: str, root_folder: str, fg_threshold: float, bg_threshold: float):
    """Parse an R-CNN window file into (images, foreground windows, background windows).

    Format, repeated per image::

        # image_index
        img_path
        channels
        height
        width
        num_windows
        class_index overlap x1 y1 x2 y2      (num_windows lines)

    A window with overlap >= fg_threshold is foreground (its label must be > 0); one with overlap
    < bg_threshold is background (label and overlap set to 0); others are dropped.  Windows are
    rows ``[image_index, label, overlap, x1, y1, x2, y2]``.
    """
    tokens = [w for line in _read_list(source, "window file") for w in line.split()]
    if len(tokens) < 2:
        raise FileFormatError("Window file is empty: %s" % source, file=source)
    images: dict[int, tuple[str, tuple[int, int, int]]] = {}
    fg, bg = [], []
    pos = 0

    def take(n: int, what: str) -> list[str]:
        nonlocal pos
        if pos + n > len(tokens):
            raise FileFormatError("window file %s ends inside %s (truncated?)" % (source, what), file=source)
        pos += n
        return tokens[pos - n:pos]

    try:
        while pos < len(tokens):
            hashtag, index = take(2, "an image header")
            if hashtag != "#":
                raise FileFormatError("window file %s: expected '#' before image %s, found %r"
                                      % (source, index, hashtag), file=source)
            image_index = int(index)
            path, c, h, w, n = take(5, "image %d's header" % image_index)
            images[image_index] = (root_folder + path, (int(c), int(h), int(w)))
            for _ in range(int(n)):
                label, overlap, x1, y1, x2, y2 = take(6, "image %d's windows" % image_index)
                row = [image_index, int(label), float(overlap), int(x1), int(y1), int(x2), int(y2)]
                if row[2] >= fg_threshold:
                    if row[1] <= 0:
                        raise FileFormatError("window file %s: foreground window of image %d has label %d; "
                                              "foreground labels must be > 0" % (source, image_index, row[1]),
                                              file=source)
                    fg.append(row)
                elif row[2] < bg_threshold:
                    row[1], row[2] = 0, 0.0
                    bg.append(row)
    except ValueError as e:
        raise FileFormatError("window file %s: not a number where one was expected (%s)" % (source, e),
                              file=source) from None
    return images, fg, bg


@register_layer
class WindowDataLayer(_DataLayerBase):
    r"""R-CNN training windows: crops of boxes from a window file, warped to crop_size x crop_size.

    Each batch holds :math:`N - \lfloor N \cdot \text{fg\_fraction} \rfloor` background windows,
    then the foreground ones, each drawn uniformly at random.  A box is grown so that, once warped,
    ``context_pad`` pixels of context surround it (``crop_mode: "square"`` first makes it square);
    the part outside the image stays 0.  Pixels: :math:`(x - m) \cdot
    \text{window\_data\_param.scale}` (Caffe takes the scale from window_data_param, crop_size,
    mirror and the mean from transform_param).  Images load in colour (BGR).

    Caffe: src/caffe/layers/window_data_layer.cpp.
    """

    type = "WindowData"

    def exact_num_top_blobs(self):
        return 2

    def setup(self, bottom, top):
        p = self.layer_param.window_data_param
        t = self.layer_param.transform_param
        import_optional("PIL.Image", "image", "The WindowData layer")
        self.batch_size = _check_batch_size(p.batch_size, "window_data_param.batch_size")
        self.images, self.fg, self.bg = read_window_file(p.source, p.root_folder, p.fg_threshold,
                                                         p.bg_threshold)
        self.crop_size = t.crop_size
        if self.crop_size <= 0:
            raise LayerError("WindowData needs transform_param.crop_size > 0 (got %d)" % self.crop_size,
                             field="transform_param.crop_size")
        if p.crop_mode not in ("warp", "square"):
            raise LayerError("crop_mode must be \"warp\" or \"square\" (got %r)" % p.crop_mode,
                             field="window_data_param.crop_mode")
        if 2 * p.context_pad >= self.crop_size:
            raise LayerError("context_pad %d leaves no room in crop_size %d" % (p.context_pad, self.crop_size),
                             field="window_data_param.context_pad")
        channels = self.images[max(self.images)][1][0] if self.images else 3
        self.transformer = self.make_transformer()  # loads and checks mean_file / mean_value
        self.mean_values = self.transformer.mean_values
        if self.mean_values.size not in (0, 1, channels):
            raise LayerError("Specify either 1 mean_value or as many as channels: %d" % channels,
                             field="transform_param.mean_value")
        self.cache: dict[str, np.ndarray] = {}
        if p.cache_images:
            for path, _ in self.images.values():
                self.cache[path] = read_image(path)
        top[0].reshape(self.batch_size, channels, self.crop_size, self.crop_size)
        top[1].reshape(self.batch_size)

    def _image(self, path: str) -> np.ndarray:
        return self.cache[path] if path in self.cache else read_image(path)

    def _window_geometry(self, window, rows: int, cols: int, mirror: bool):
        """The clipped source box, the warped size and the padding, as Caffe computes them."""
        p = self.layer_param.window_data_param
        s = self.crop_size
        x1, y1, x2, y2 = window[3:7]
        out_h = out_w = s
        pad_h = pad_w = 0
        if p.context_pad > 0 or p.crop_mode == "square":
            f32 = np.float32  # Caffe computes this geometry in float
            context_scale = f32(s) / f32(s - 2 * p.context_pad)
            half_h = f32(y2 - y1 + 1) / f32(2.0)
            half_w = f32(x2 - x1 + 1) / f32(2.0)
            cx, cy = f32(x1) + half_w, f32(y1) + half_h
            if p.crop_mode == "square":
                half_h = half_w = max(half_h, half_w)
            x1 = int(_round_half_away(cx - half_w * context_scale))
            x2 = int(_round_half_away(cx + half_w * context_scale))
            y1 = int(_round_half_away(cy - half_h * context_scale))
            y2 = int(_round_half_away(cy + half_h * context_scale))
            unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
            pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
            pad_x2, pad_y2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
            x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
            scale_x, scale_y = f32(s) / f32(unclipped_w), f32(s) / f32(unclipped_h)
            out_w = int(_round_half_away(f32(x2 - x1 + 1) * scale_x))
            out_h = int(_round_half_away(f32(y2 - y1 + 1) * scale_y))
            pad_x1 = int(_round_half_away(f32(pad_x1) * scale_x))
            pad_x2 = int(_round_half_away(f32(pad_x2) * scale_x))
            pad_y1 = int(_round_half_away(f32(pad_y1) * scale_y))
            pad_h = pad_y1
            pad_w = pad_x2 if mirror else pad_x1  # mirroring mirrors the padding too
            out_h = min(out_h, s - pad_h)
            out_w = min(out_w, s - pad_w)
        if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows):
            raise ShapeError("window (%d, %d, %d, %d) of image %d lies outside the %d x %d image"
                             % (window[3], window[4], window[5], window[6], window[0], cols, rows))
        return (x1, y1, x2, y2), (max(out_h, 1), max(out_w, 1)), (pad_h, pad_w)

    def forward(self, bottom, top):
        p = self.layer_param.window_data_param
        if not self.fg:
            raise LayerError("WindowData found no foreground window (overlap >= fg_threshold %g) in %s"
                             % (p.fg_threshold, p.source), field="window_data_param.fg_threshold")
        if not self.bg:
            raise LayerError("WindowData found no background window (overlap < bg_threshold %g) in %s"
                             % (p.bg_threshold, p.source), field="window_data_param.bg_threshold")
        s = self.crop_size
        data = top[0].data
        data[...] = 0.0
        num_fg = int(np.float32(self.batch_size) * np.float32(p.fg_fraction))
        mean = self.transformer.mean
        if mean is not None:
            mean_off = (mean.shape[2] - s) // 2
        item = 0
        for windows, count in ((self.bg, self.batch_size - num_fg), (self.fg, num_fg)):
            for _ in range(count):
                window = windows[int(rng().integers(2**32)) % len(windows)]
                mirror = bool(self.layer_param.transform_param.mirror) and int(rng().integers(2**32)) % 2 == 1
                path, _ = self.images[window[0]]
                image = self._image(path)
                (x1, y1, x2, y2), (oh, ow), (ph, pw) = self._window_geometry(window, image.shape[1],
                                                                              image.shape[2], mirror)
                patch = resize_bilinear(image[:, y1:y2 + 1, x1:x2 + 1], oh, ow)
                if mirror:
                    patch = patch[:, :, ::-1]
                if patch.shape[0] != data.shape[1]:
                    raise ShapeError("image %s has %d channels; the window file says %d"
                                     % (path, patch.shape[0], data.shape[1]))
                x = patch.astype(data.dtype)
                if mean is not None:
                    x -= mean[:, mean_off + ph:mean_off + ph + oh, mean_off + pw:mean_off + pw + ow]
                elif self.mean_values.size:
                    x -= self.mean_values.reshape(-1, 1, 1) if self.mean_values.size > 1 else self.mean_values[0]
                x *= np.float32(p.scale)
                data[item, :, ph:ph + oh, pw:pw + ow] = x
                top[1].data[item] = window[1]
                item += 1


def _round_half_away(x) -> float:
    """C's round(): halves away from zero (NumPy rounds halves to even)."""
    return float(np.sign(x) * np.floor(np.abs(x) + 0.5))

