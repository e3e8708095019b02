"""Reading and writing Caffe's protobuf files: prototxt, .caffemodel, .binaryproto, .solverstate.

Plain I/O: nothing here upgrades an old format.  The readers that parse *and* upgrade
(``read_net_param``, ``read_solver_param``) live in :mod:`caffelite.upgrade`, as Caffe's
``Read*ParamsFrom*OrDie`` live in upgrade_proto.cpp, one level above io.cpp.

Caffe: src/caffe/util/io.cpp, src/caffe/blob.cpp (``FromProto``/``ToProto``).
"""

from __future__ import annotations

import os
import secrets
import stat

import numpy as np
from google.protobuf import message as _pb_message
from google.protobuf import text_format

from caffelite.blob import Blob, check_shape
from caffelite.errors import CaffeFileNotFoundError, FileFormatError, ProtoError, WeightsError
from caffelite.proto import caffe_pb2
from caffelite.suggest import parse_error_hint


def read_bytes(path: str, what: str) -> bytes:
    """The whole file; a missing or unreadable file is a CaffeFileNotFoundError naming ``what``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CaffeFileNotFoundError("%s file not found: %s" % (what, os.path.abspath(path)),
                                     file=str(path)) from None
    except IsADirectoryError:
        raise CaffeFileNotFoundError("%s path is a directory, not a file: %s" % (what, path),
                                     file=str(path)) from None
    except OSError as e:
        raise CaffeFileNotFoundError("cannot read %s file %s: %s" % (what, path, e.strerror),
                                     file=str(path)) from None


def parse_text(text: str, message, source: str = "<string>"):
    """Merge protobuf text into ``message``; errors name the source, line and column."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as e:
        line, column = e.GetLine(), e.GetColumn()
        msg = str(e)
        # drop protobuf's own "line:col : " prefix; we print the location ourselves
        prefix = "%s:%s : " % (line, column)
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
        msg = msg.replace('"caffelite.', '"caffe.')  # our package name is not part of the format
        msg += parse_error_hint(msg)
        raise ProtoError("cannot parse %s: %s" % (type(message).__name__, msg),
                         file=source, line=line, column=column) from None
    except (ValueError, TypeError) as e:  # e.g. out-of-range numbers protobuf reports otherwise
        raise ProtoError("cannot parse %s: %s" % (type(message).__name__, e), file=source) from None
    return message


def looks_binary(data: bytes) -> bool:
    """Whether file contents are a binary proto rather than prototxt: not UTF-8, or a control
    character below TAB in the first 256 characters (text protos never hold one)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return any(ord(c) < 9 for c in text[:256])


def decode_text(data: bytes, what: str, source: str) -> str:
    """File contents as UTF-8 text; binary contents are a ProtoError that says so."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtoError("%s is not a text file (byte %d is not UTF-8); is it a binary proto?"
                         % (what, e.start), file=str(source)) from None


def read_text(path: str, what: str) -> str:
    """The file as UTF-8 text (see :func:`decode_text`)."""
    return decode_text(read_bytes(path, what), what, path)


def read_text_proto(path: str, message, what: str = "prototxt"):
    """Caffe's ReadProtoFromTextFile, with typed errors."""
    return parse_text(read_text(path, what), message, str(path))


def parse_binary(data: bytes, message, source: str = "<bytes>", what: str = "binary proto"):
    try:
        message.ParseFromString(data)
    except _pb_message.DecodeError as e:
        raise FileFormatError("cannot parse %s as %s (%d bytes): truncated or not a %s file (%s)"
                              % (what, type(message).__name__, len(data), what, e), file=source) from None
    return message


def read_binary_proto(path: str, message, what: str = "binary proto"):
    """Caffe's ReadProtoFromBinaryFile, with typed errors."""
    return parse_binary(read_bytes(path, what), message, str(path), what)


def read_proto(path: str, message, what: str = "proto"):
    """Read binary or text, as :func:`looks_binary` decides (Caffe's tools accept both)."""
    data = read_bytes(path, what)
    if looks_binary(data):
        return parse_binary(data, message, str(path), what)
    return parse_text(data.decode("utf-8"), message, str(path))


def create_temp_beside(path: str) -> tuple[int, str]:
    """Open a new temporary file in ``path``'s folder: ``(fd, temporary path)``.

    Its mode is what a plain ``open(path, "wb")`` would give: an existing ``path`` keeps its mode;
    a new one gets 0666 less the umask (the kernel applies it, as for ``open``).  ``mkstemp`` would
    make every file we write 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, ".%s.%s.tmp" % (base, secrets.token_hex(4)))
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    except FileNotFoundError:
        pass
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write(path: str, data: bytes) -> None:
    """Write via a temporary file and rename: an interrupted write never leaves a torn file.

    The file gets the permissions ``open(path, "wb")`` would give (see :func:`create_temp_beside`).
    """
    fd, tmp = create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_proto(path: str, message) -> None:
    atomic_write(path, text_format.MessageToString(message).encode("utf-8"))


def write_binary_proto(path: str, message) -> None:
    atomic_write(path, message.SerializeToString())


# --- blobs ---------------------------------------------------------------------------------
def proto_shape(bp) -> tuple[int, ...]:
    """The shape a BlobProto describes (legacy 4-D num/channels/height/width when no ``shape``)."""
    if bp.HasField("shape"):
        return tuple(int(d) for d in bp.shape.dim)
    if bp.HasField("num") or bp.HasField("channels") or bp.HasField("height") or bp.HasField("width"):
        return (bp.num, bp.channels, bp.height, bp.width)
    return (len(bp.double_data) or len(bp.data),) if (bp.double_data or bp.data) else (0,)


def proto_values(bp, field: str = "data") -> np.ndarray:
    """The float values of a BlobProto's data or diff (double_* preferred, as in Caffe)."""
    double = getattr(bp, "double_" + field)
    return np.asarray(double if len(double) else getattr(bp, field), dtype=np.float32)


def shape_equals(blob, bp) -> bool:
    """Caffe's Blob::ShapeEquals: legacy protos compare against the blob's last four axes.

    ``blob``: a Blob, or just its shape.
    """
    shape = tuple(getattr(blob, "shape", blob))
    if bp.HasField("num") or bp.HasField("channels") or bp.HasField("height") or bp.HasField("width"):
        if len(shape) > 4:
            return False

        def legacy(i):  # indexed from the end, as legacy parameter blobs were
            return shape[i] if -len(shape) <= i else 1

        return (legacy(-4), legacy(-3), legacy(-2), legacy(-1)) == (bp.num, bp.channels, bp.height, bp.width)
    return shape == tuple(int(d) for d in bp.shape.dim)


def blob_from_proto(bp, blob: Blob | None = None, reshape: bool = True) -> Blob:
    """Caffe's Blob::FromProto: fill ``blob`` (new if None) with the proto's data and diff."""
    shape = check_shape(proto_shape(bp), "BlobProto")
    if blob is None:
        blob = Blob(shape)
    elif reshape:
        blob.reshape(shape)
    data = proto_values(bp, "data")
    if data.size != blob.count:
        raise FileFormatError("BlobProto holds %d values for a blob of shape %s (count %d)"
                              % (data.size, list(shape), blob.count))
    blob.data[...] = data.reshape(blob.shape)
    diff = proto_values(bp, "diff")
    if diff.size:
        if diff.size != blob.count:
            raise FileFormatError("BlobProto holds %d diff values for a blob of count %d"
                                  % (diff.size, blob.count))
        blob.diff[...] = diff.reshape(blob.shape)
    return blob


def blob_to_proto(blob: Blob, bp=None, write_diff: bool = False):
    """Caffe's Blob::ToProto (float data, explicit shape)."""
    bp = caffe_pb2.BlobProto() if bp is None else bp
    bp.Clear()
    bp.shape.dim.extend(blob.shape)
    bp.data.extend(blob.data.ravel().tolist())
    if write_diff:
        bp.diff.extend(blob.diff.ravel().tolist())
    return bp


def array_from_proto(bp) -> np.ndarray:
    """A BlobProto as an ndarray of its shape (pycaffe's ``blobproto_to_array``)."""
    shape = proto_shape(bp)
    values = proto_values(bp, "data")
    if values.size != int(np.prod(shape)):
        raise FileFormatError("BlobProto holds %d values for shape %s" % (values.size, list(shape)))
    return values.reshape(shape)


def read_blob_proto(path: str) -> np.ndarray:
    """Read a .binaryproto (e.g. a mean file) as an array."""
    return array_from_proto(read_binary_proto(path, caffe_pb2.BlobProto(), "binaryproto"))


def _shape_string(shape) -> str:
    count = 1
    for d in shape:
        count *= int(d)
    return "%s (%d)" % (" ".join(map(str, shape)), count)


def weights_mismatch(target_shapes: list, source_layer) -> str | None:
    """Why a layer of a .caffemodel does not fit the net's layer of that name (Caffe's messages), or None.

    Caffe's Net::CopyTrainedLayersFrom CHECKs the blob count, then each blob's shape.
    """
    name, blobs = source_layer.name, source_layer.blobs
    if len(target_shapes) != len(blobs):
        return ("Incompatible number of blobs for layer %s (net has %d, weights have %d)"
                % (name, len(target_shapes), len(blobs)))
    for j, bp in enumerate(blobs):
        if not shape_equals(target_shapes[j], bp):
            return ("Cannot copy param %d weights from layer '%s'; shape mismatch.  Source param shape "
                    "is %s; target param shape is %s. To learn this layer's parameters from scratch "
                    "rather than copying from a saved net, rename the layer."
                    % (j, name, _shape_string(proto_shape(bp)), _shape_string(target_shapes[j])))
        count = int(np.prod(target_shapes[j], dtype=np.int64))
        values = len(bp.double_data) or len(bp.data)
        if values != count:  # Caffe's Blob::FromProto: CHECK_EQ(count_, proto.data_size())
            return "param %d of layer '%s' holds %d values, expected %d (truncated file?)" % (j, name, values, count)
    return None


def copy_weights(layer_names, layers, source: caffe_pb2.NetParameter, source_name: str = "") -> None:
    """Caffe's Net::CopyTrainedLayersFrom: copy parameters by layer name; ignore unknown layers."""
    index = {name: i for i, name in enumerate(layer_names)}
    for src in list(source.layer) + list(source.layers):
        i = index.get(src.name)
        if i is None:
            continue
        target = layers[i].blobs
        message = weights_mismatch([b.shape for b in target], src)
        if message is not None:
            raise WeightsError(message, file=source_name or None, layer=src.name)
        for j, bp in enumerate(src.blobs):
            target[j].data[...] = proto_values(bp, "data").reshape(target[j].shape)
