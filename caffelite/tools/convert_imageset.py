"""``caffelite convert-imageset``: images to an LMDB of Datum records (Caffe's convert_imageset).

Three kinds of input:

* Caffe's form, ``ROOTFOLDER/ LISTFILE DB_NAME``: ``LISTFILE`` holds ``path label`` lines, each
  path relative to ``ROOTFOLDER`` (joined by plain concatenation, as Caffe does);
* ``FOLDER DB_NAME``: a folder of class subfolders; labels number the subfolders in sorted order;
* ``FILE.npz DB_NAME``: arrays ``images`` (N x H x W, or N x C x H x W in Caffe's channel order)
  and ``labels`` (N).  uint8-valued images are stored as bytes, others as ``float_data``.

Records are keyed ``%08d_<name>`` in input order (after ``--shuffle``), as Caffe keys them.
Caffe: tools/convert_imageset.cpp.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from caffelite.common import rng, set_random_seed
from caffelite.errors import CaffeFileNotFoundError, FileFormatError, UnsupportedError
from caffelite.transform import array_to_datum, encode_image, import_optional, read_image, resize_bilinear

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".gif", ".tif", ".tiff", ".webp")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert-imageset", help="convert images (list file, class folders or .npz) to an LMDB of Datums",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="ROOTFOLDER/ LISTFILE DB_NAME, or FOLDER DB_NAME, or FILE.npz DB_NAME")
    p.add_argument("--gray", action="store_true", help="load images in greyscale")
    p.add_argument("--shuffle", action="store_true", help="shuffle the order of the images")
    p.add_argument("--seed", type=int, default=None, help="random seed for --shuffle")
    p.add_argument("--backend", default="lmdb", help="the database backend: lmdb (leveldb is not supported)")
    p.add_argument("--resize_width", type=int, default=0, help="resize images to this width (with --resize_height)")
    p.add_argument("--resize_height", type=int, default=0, help="resize images to this height (with --resize_width)")
    p.add_argument("--check_size", action="store_true", help="check that all the Datums have the same size")
    p.add_argument("--encoded", action="store_true", help="store encoded images (PNG unless --encode_type)")
    p.add_argument("--encode_type", default="", help="format of encoded images: png or jpg")
    return p


def _list_items(root: str, list_file: str):
    from caffelite.layers.image_data import read_image_list

    return [(path, label, path[len(root):]) for path, label in read_image_list(list_file, root)]


def _folder_items(folder: str):
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise FileFormatError("%s has no class subfolders" % folder, file=folder)
    items = []
    for label, name in enumerate(classes):
        for fn in sorted(os.listdir(os.path.join(folder, name))):
            if fn.lower().endswith(IMAGE_EXTENSIONS):
                items.append((os.path.join(folder, name, fn), label, name + "/" + fn))
    return items


def _npz_arrays(path: str):
    try:
        z = np.load(path)
        images, labels = z["images"], z["labels"]
    except KeyError as e:
        raise FileFormatError("%s must hold arrays 'images' and 'labels' (missing %s)" % (path, e), file=path) from None
    except (OSError, ValueError) as e:
        raise FileFormatError("cannot read %s: %s" % (path, e), file=path) from None
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or len(images) != len(labels):
        raise FileFormatError("%s: images must be N x H x W or N x C x H x W with N labels (got %s and %s)"
                              % (path, list(images.shape), list(labels.shape)), file=path)
    if images.dtype != np.uint8 and np.issubdtype(images.dtype, np.integer) \
            and images.min() >= 0 and images.max() <= 255:
        images = images.astype(np.uint8)
    return images, labels


def run(args) -> int:
    lmdb = import_optional("lmdb", "lmdb", "convert-imageset")
    if args.backend.lower() != "lmdb":
        raise UnsupportedError("backend %s is not supported: caffelite writes LMDB only" % args.backend)
    if (args.resize_height > 0) != (args.resize_width > 0):
        raise FileFormatError("--resize_height and --resize_width must be given together")
    if args.seed is not None:
        set_random_seed(args.seed)
    if len(args.inputs) == 3:
        root, list_file, db = args.inputs
        if not os.path.isfile(list_file):
            raise CaffeFileNotFoundError("list file %s does not exist" % list_file, file=list_file)
        source = ("files", _list_items(root, list_file))
    elif len(args.inputs) == 2:
        src, db = args.inputs
        if not os.path.exists(src):
            raise CaffeFileNotFoundError("%s does not exist" % src, file=src)
        if os.path.isdir(src):
            source = ("files", _folder_items(src))
        else:
            source = ("arrays", _npz_arrays(src))
    else:
        raise FileFormatError("expected ROOTFOLDER/ LISTFILE DB_NAME, FOLDER DB_NAME or FILE.npz DB_NAME "
                              "(got %d arguments)" % len(args.inputs))
    if os.path.exists(db):
        raise FileFormatError("%s already exists: remove it first (Caffe refuses to overwrite a database too)"
                              % db, file=db)

    kind, payload = source
    n = len(payload[0]) if kind == "arrays" else len(payload)
    order = list(range(n))
    if args.shuffle:
        order = [int(i) for i in rng().permutation(n)]
    encode = args.encode_type or ("png" if args.encoded else "")

    def items():
        for i in order:
            if kind == "arrays":
                images, labels = payload
                image = images[i]
                if args.gray and image.shape[0] == 3 and image.dtype == np.uint8:
                    from caffelite.transform import _rgb_to_gray
                    image = _rgb_to_gray(image[::-1].transpose(1, 2, 0))[None]
                yield image, int(labels[i]), "%d" % i
            else:
                path, label, name = payload[i]
                yield read_image(path, 0, 0, not args.gray), label, name

    os.makedirs(db)
    env = lmdb.open(db, map_size=64 << 20, subdir=True)
    size = None
    pending: list[tuple[bytes, bytes]] = []
    count = 0

    def commit() -> None:
        # LMDB's map has a fixed size: on overflow, grow it and write the batch again
        while True:
            try:
                with env.begin(write=True) as txn:
                    for key, value in pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                env.set_mapsize(env.info()["map_size"] * 2)
        pending.clear()

    try:
        for line_id, (image, label, name) in enumerate(items()):
            if args.resize_height > 0:
                if image.dtype != np.uint8:
                    raise FileFormatError("--resize_* needs uint8 images (got %s)" % image.dtype)
                image = resize_bilinear(image, args.resize_height, args.resize_width)
            if args.check_size:
                if size is None:
                    size = image.shape
                elif image.shape != size:
                    raise FileFormatError("Incorrect data field size: %s has shape %s, the first had %s"
                                          % (name, list(image.shape), list(size)))
            encoded = encode_image(image, encode) if encode else None
            datum = array_to_datum(image, label, encoded)
            pending.append((("%08d_%s" % (line_id, name)).encode("utf-8"), datum.SerializeToString()))
            count += 1
            if count % 1000 == 0:
                commit()
                print("Processed %d files." % count)
        commit()
    finally:
        env.close()
    if count % 1000 != 0:
        print("Processed %d files." % count)
    return 0
