r"""The Data layer: Datum records from an LMDB (``pip install caffelite[lmdb]``).

Caffe: src/caffe/layers/data_layer.cpp, src/caffe/util/db_lmdb.cpp.
"""

from __future__ import annotations

import os

import numpy as np

from caffelite.common import rng
from caffelite.errors import CaffeFileNotFoundError, FileFormatError, UnsupportedError
from caffelite.layer import register_layer
from caffelite.layers.base_data import DataLayerBase, check_batch_size
from caffelite.proto import caffe_pb2
from caffelite.transform import datum_to_array, import_optional


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
class DataLayer(DataLayerBase):
    r"""Reads Datum records from an LMDB, ``batch_size`` at a time, through the DataTransformer.

    Top 0: :math:`N \times C \times H \times W` (H, W the crop size when cropping), shaped by the
    first record of each batch; top 1 (optional): the N labels.  The cursor wraps around at the
    end; ``rand_skip`` skips a random number of records in [0, rand_skip) at the start.

    Caffe: src/caffe/layers/data_layer.cpp.
    """

    type = "Data"
    reads_source = True

    def setup(self, bottom, top):
        p = self.layer_param.data_param
        self.batch_size = check_batch_size(p.batch_size, "data_param.batch_size")
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
