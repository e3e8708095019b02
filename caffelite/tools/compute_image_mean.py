"""``caffelite compute-image-mean``: the mean image of an LMDB of Datums, as a .binaryproto.

The mean is written as a 1 x C x H x W BlobProto (legacy num/channels/height/width fields, as
Caffe writes it), ready for ``transform_param { mean_file: ... }``; the per-channel means are
printed as ``mean_value`` lines.  Caffe: tools/compute_image_mean.cpp.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from caffelite.errors import CaffeFileNotFoundError, FileFormatError, UnsupportedError
from caffelite.proto import caffe_pb2
from caffelite.protoio import write_binary_proto
from caffelite.transform import datum_to_array, import_optional


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compute-image-mean", help="compute the mean image of an LMDB of Datums",
                              description=__doc__)
    p.add_argument("input_db", metavar="INPUT_DB", help="the LMDB folder")
    p.add_argument("output_file", metavar="OUTPUT_FILE", nargs="?", default=None,
                   help="where to write the mean .binaryproto (optional: print the channel means only)")
    p.add_argument("--backend", default="lmdb", help="the database backend: lmdb (leveldb is not supported)")
    return p


def compute_mean(db: str) -> np.ndarray:
    """The mean ``(C, H, W)`` float32 image over every Datum in the LMDB ``db``."""
    lmdb = import_optional("lmdb", "lmdb", "compute-image-mean")
    if not os.path.exists(db):
        raise CaffeFileNotFoundError("database %s does not exist" % db, file=db)
    total = None
    count = 0
    try:
        env = lmdb.open(db, readonly=True, lock=False, subdir=os.path.isdir(db))
    except lmdb.Error as e:
        raise FileFormatError("cannot read LMDB %s: %s" % (db, e), file=db) from None
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe_pb2.Datum()
                try:
                    datum.ParseFromString(value)
                except Exception as e:  # protobuf's DecodeError
                    raise FileFormatError("record %r of %s is not a Datum: %s" % (key, db, e), file=db) from None
                item = datum_to_array(datum, source=db).astype(np.float64)
                if total is None:
                    total = np.zeros_like(item)
                elif item.shape != total.shape:
                    raise FileFormatError("Incorrect data field size: record %r has shape %s, the first %s"
                                          % (key, list(item.shape), list(total.shape)), file=db)
                total += item
                count += 1
    except lmdb.Error as e:
        raise FileFormatError("cannot read LMDB %s: %s" % (db, e), file=db) from None
    finally:
        env.close()
    if not count:
        raise FileFormatError("database %s holds no records" % db, file=db)
    return (total / count).astype(np.float32)


def run(args) -> int:
    if args.backend.lower() != "lmdb":
        raise UnsupportedError("backend %s is not supported: caffelite reads LMDB only" % args.backend)
    mean = compute_mean(args.input_db)
    c, h, w = mean.shape
    if args.output_file:
        bp = caffe_pb2.BlobProto(num=1, channels=c, height=h, width=w)
        bp.data.extend(mean.ravel().tolist())
        print("Write to %s" % args.output_file)
        write_binary_proto(args.output_file, bp)
    for k in range(c):
        print("mean_value channel [%d]: %g" % (k, float(mean[k].mean())))
    return 0
