r"""Caffe's DataTransformer, and the image and Datum helpers the data layers and tools share.

Caffe: src/caffe/data_transformer.cpp, src/caffe/util/io.cpp.

For one item of :math:`C \times H \times W` values :math:`x` (a Datum's uint8 ``data`` or its
``float_data``, or a decoded image), with crop offsets :math:`(h_0, w_0)` and crop size :math:`s`:

.. math:: y_{c,i,j} = (x_{c,\,h_0+i,\,w_0+j'} - m_{c,\,h_0+i,\,w_0+j'}) \cdot \text{scale},
          \qquad j' = s-1-j \text{ if mirrored else } j

where the mean :math:`m` is the ``mean_file`` blob (indexed at the *uncropped* position, as Caffe
does), or ``mean_value[c]`` (one value, or one per channel), or 0.  The crop offsets are random
in TRAIN and centred, :math:`\lfloor (H-s)/2 \rfloor`, in TEST.  Mirroring is drawn at random
whenever ``mirror`` is set, in both phases, exactly as Caffe's transformer does (it does not look
at the phase for mirroring).  Random draws come from :func:`caffelite.common.rng`.

Images are held as Caffe holds OpenCV images: uint8, channels in **BGR** order.  Loading uses
Pillow (optional extra ``image``); resizing is our NumPy port of OpenCV's default ``INTER_LINEAR``
fixed-point bilinear filter (including its switch to area averaging for exact 2x shrinking),
which should match OpenCV to within one grey level (OpenCV's SIMD and scalar paths round
differently); Pillow's own bilinear resize would not (it filters over a wider support when
shrinking).  The greyscale conversion uses OpenCV's BT.601 integer weights.  Decoders may
differ slightly from OpenCV's for lossy formats (JPEG).
"""

from __future__ import annotations

import importlib
import io
import os

import numpy as np

from caffelite.common import TRAIN, rng
from caffelite.errors import (
    CaffeFileNotFoundError,
    FileFormatError,
    LayerError,
    MissingDependencyError,
    ShapeError,
)
from caffelite.proto import caffe_pb2

__all__ = ["DataTransformer", "import_optional", "read_image", "resize_bilinear", "datum_to_array",
           "array_to_datum", "encode_image"]


def import_optional(module: str, extra: str, what: str):
    """Import an optional dependency, or raise MissingDependencyError (an ImportError) naming its pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError("%s needs the optional package '%s': pip install caffelite[%s]"
                          % (what, module.split(".")[0], extra)) from None


# --- images ----------------------------------------------------------------------------------
_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS


def _linear_taps(src: int, dst: int):
    """Source indices and fixed-point weights of OpenCV's INTER_LINEAR along one axis."""
    scale = src / dst
    f = (np.arange(dst) + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    f = f - i0
    low = i0 < 0
    f[low], i0[low] = 0.0, 0
    high = i0 >= src - 1
    f[high], i0[high] = 0.0, src - 1
    i1 = np.minimum(i0 + 1, src - 1)
    w1 = np.rint(f * _COEF_SCALE).astype(np.int64)
    w0 = np.rint((1.0 - f) * _COEF_SCALE).astype(np.int64)
    return i0, i1, w0, w1


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 ``(C, H, W)`` image as OpenCV's ``cv::resize(..., INTER_LINEAR)`` does.

    Fixed-point: horizontal taps with 11-bit weights, then the vertical pass in the form of
    OpenCV's SIMD path, ``((b0*(r0>>4))>>16 + (b1*(r1>>4))>>16 + 2) >> 2``.  An exact 2x shrink
    in both directions is an area average, as OpenCV switches to INTER_AREA there.
    """
    c, h, w = image.shape
    if (h, w) == (height, width):
        return image.copy()
    src = image.astype(np.int64)
    if h == 2 * height and w == 2 * width:
        total = src[:, 0::2, 0::2] + src[:, 1::2, 0::2] + src[:, 0::2, 1::2] + src[:, 1::2, 1::2]
        return ((total + 2) >> 2).astype(np.uint8)
    x0, x1, a0, a1 = _linear_taps(w, width)
    rows = src[:, :, x0] * a0 + src[:, :, x1] * a1  # (C, H, width), scaled by 2048
    y0, y1, b0, b1 = _linear_taps(h, height)
    r0 = rows[:, y0, :] >> 4
    r1 = rows[:, y1, :] >> 4
    out = (((b0[:, None] * r0) >> 16) + ((b1[:, None] * r1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's RGB->GRAY for uint8 (BT.601 weights in 14-bit fixed point). ``rgb`` is (H, W, 3)."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).astype(np.uint8)


def _pil_to_array(img, color: bool | None) -> np.ndarray:
    """A Pillow image as uint8 ``(C, H, W)`` in BGR order; ``color=None`` keeps its own channels."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # OpenCV reduces deep images to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr / 256.0 if img.mode.startswith("I;16") else arr, 0, 255).astype(np.uint8)
        gray = arr
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif img.mode in ("L", "1"):
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
        rgb = None
    else:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        gray = None
    if color is None:
        color = gray is None
    if color:
        if rgb is None:
            rgb = np.repeat(gray[..., None], 3, axis=2)
        return np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))
    if gray is None:
        gray = _rgb_to_gray(rgb)
    return np.ascontiguousarray(gray[None])


def read_image(path: str, height: int = 0, width: int = 0, is_color: bool = True) -> np.ndarray:
    """Caffe's ReadImageToCVMat: a uint8 ``(C, H, W)`` BGR (or 1-channel) array, resized if asked.

    Raises CaffeFileNotFoundError / FileFormatError naming the file.
    """
    image_mod = import_optional("PIL.Image", "image", "Reading images")
    if not os.path.isfile(path):
        raise CaffeFileNotFoundError("Could not open or find file %s" % path, file=str(path))
    try:
        with image_mod.open(path) as img:
            img.load()
            arr = _pil_to_array(img, bool(is_color))
    except (OSError, ValueError, SyntaxError) as e:
        raise FileFormatError("Could not load %s: not a readable image (%s)" % (path, e), file=str(path)) from None
    if height > 0 and width > 0:
        arr = resize_bilinear(arr, height, width)
    return arr


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """Encode a uint8 ``(C, H, W)`` BGR image (C = 1 or 3) with Pillow, as Caffe's encoded Datums hold."""
    image_mod = import_optional("PIL.Image", "image", "Encoding images")
    c = image.shape[0]
    pixels = image[0] if c == 1 else image[::-1].transpose(1, 2, 0)  # back to RGB for Pillow
    buf = io.BytesIO()
    name = {"jpg": "JPEG", "jpeg": "JPEG"}.get(fmt.lower(), fmt.upper())
    image_mod.fromarray(np.ascontiguousarray(pixels)).save(buf, format=name)
    return buf.getvalue()


def decode_image(data: bytes, color: bool | None = None, source: str | None = None) -> np.ndarray:
    """Decode encoded image bytes to uint8 ``(C, H, W)`` BGR (``color=None``: keep the file's channels)."""
    image_mod = import_optional("PIL.Image", "image", "Decoding encoded Datums")
    try:
        with image_mod.open(io.BytesIO(data)) as img:
            img.load()
            return _pil_to_array(img, color)
    except (OSError, ValueError, SyntaxError) as e:
        raise FileFormatError("cannot decode an encoded Datum (%d bytes): %s" % (len(data), e), file=source) from None


# --- Datum -----------------------------------------------------------------------------------
def datum_to_array(datum, force_color: bool = False, force_gray: bool = False,
                   source: str | None = None) -> np.ndarray:
    """A Datum's values as a ``(C, H, W)`` array: uint8 for ``data``, float32 for ``float_data``.

    Encoded Datums are decoded (BGR, native channels unless forced, as Caffe's DecodeDatumToCVMat).
    """
    if datum.encoded:
        if force_color and force_gray:
            raise LayerError("cannot set both force_color and force_gray", field="transform_param.force_color")
        return decode_image(datum.data, True if force_color else (False if force_gray else None), source)
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise FileFormatError("Datum has shape %d x %d x %d: channels, height and width must be positive"
                              % (c, h, w), file=source)
    n = c * h * w
    if len(datum.data):
        if len(datum.data) != n:
            raise FileFormatError("Datum holds %d bytes of data for shape %d x %d x %d (%d expected): "
                                  "truncated record?" % (len(datum.data), c, h, w, n), file=source)
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(c, h, w)
    if len(datum.float_data) != n:
        raise FileFormatError("Datum holds %d float_data values for shape %d x %d x %d (%d expected)"
                              % (len(datum.float_data), c, h, w, n), file=source)
    return np.asarray(datum.float_data, dtype=np.float32).reshape(c, h, w)


def array_to_datum(array: np.ndarray, label: int = 0, encoded: bytes | None = None):
    """A Datum from a ``(C, H, W)`` array: uint8 into ``data``, anything else into ``float_data``."""
    datum = caffe_pb2.Datum()
    c, h, w = array.shape
    datum.channels, datum.height, datum.width = c, h, w
    datum.label = int(label)
    if encoded is not None:
        datum.data = encoded
        datum.encoded = True
    elif array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    else:
        datum.float_data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    return datum


# --- the transformer -------------------------------------------------------------------------
class DataTransformer:
    """Caffe's DataTransformer: crop, mirror, subtract a mean, scale.

    Parameters
    ----------
    param : TransformationParameter
    phase : int
        TRAIN (random crops) or TEST (centre crops).

    The ``mean_file`` path is resolved against the current directory, as Caffe resolves it.
    """

    def __init__(self, param=None, phase: int = TRAIN):
        self.param = caffe_pb2.TransformationParameter()
        if param is not None:
            self.param.CopyFrom(param)
        self.phase = phase
        p = self.param
        self.mean: np.ndarray | None = None
        self.mean_values = np.asarray(p.mean_value, dtype=np.float32)
        if p.HasField("mean_file"):
            if len(p.mean_value):
                raise LayerError("Cannot specify mean_file and mean_value at the same time",
                                 field="transform_param.mean_file")
            from caffelite.protoio import read_blob_proto
            mean = read_blob_proto(p.mean_file)
            if mean.ndim > 4 or mean.size == 0:
                raise FileFormatError("mean file %s holds a blob of shape %s, not N x C x H x W"
                                      % (p.mean_file, list(mean.shape)), file=p.mean_file)
            shape = (1,) * (4 - mean.ndim) + mean.shape  # Caffe reads it through the legacy accessors
            self.mean = mean.reshape(shape)[0]
        if p.force_color and p.force_gray:
            raise LayerError("cannot set both force_color and force_gray", field="transform_param.force_color")

    def infer_shape(self, shape) -> tuple[int, int, int]:
        """Caffe's InferBlobShape for one ``(C, H, W)`` item: the crop replaces H and W."""
        c, h, w = (int(d) for d in shape)
        s = self.param.crop_size
        if c <= 0:
            raise ShapeError("item has %d channels; need at least one" % c)
        if h < s or w < s:
            raise ShapeError("crop_size %d is larger than the item (%d x %d)" % (s, h, w),
                             field="transform_param.crop_size")
        return (c, s, s) if s else (c, h, w)

    def rand(self, n: int) -> int:
        """Caffe's Rand(n): a uniform integer in [0, n)."""
        return int(rng().integers(n))

    def transform(self, item: np.ndarray, out: np.ndarray) -> tuple[int, int, bool]:
        """Transform one ``(C, H, W)`` item into ``out`` (shape ``infer_shape(item.shape)``).

        Returns the crop offsets and whether it was mirrored.  Draw order is Caffe's: the mirror
        coin first, then the row and column offsets.
        """
        p = self.param
        c, h, w = item.shape
        ch, cw = self.infer_shape(item.shape)[1:]
        if tuple(out.shape) != (c, ch, cw):
            raise ShapeError("transformed item has shape %s; the top expects %s"
                             % ([c, ch, cw], list(out.shape)))
        mirror = bool(p.mirror) and self.rand(2) == 1
        h0 = w0 = 0
        if p.crop_size:
            if self.phase == TRAIN:
                h0, w0 = self.rand(h - ch + 1), self.rand(w - cw + 1)
            else:
                h0, w0 = (h - ch) // 2, (w - cw) // 2
        x = item[:, h0:h0 + ch, w0:w0 + cw].astype(out.dtype)
        if self.mean is not None:
            if self.mean.shape != (c, h, w):
                raise ShapeError("mean file %s has shape %s, the data items %s: they must match"
                                 % (p.mean_file, list(self.mean.shape), [c, h, w]),
                                 field="transform_param.mean_file")
            x -= self.mean[:, h0:h0 + ch, w0:w0 + cw]
        elif self.mean_values.size:
            if self.mean_values.size not in (1, c):
                raise ShapeError("Specify either 1 mean_value or as many as channels: %d (got %d)"
                                 % (c, self.mean_values.size), field="transform_param.mean_value")
            x -= self.mean_values.reshape(-1, 1, 1) if self.mean_values.size == c else self.mean_values[0]
        if p.scale != 1:
            x *= p.scale
        out[...] = x[:, :, ::-1] if mirror else x
        return h0, w0, mirror

    def transform_datum(self, datum, out: np.ndarray, source: str | None = None):
        """Transform one Datum (uint8 ``data``, ``float_data`` or encoded) into ``out``."""
        item = datum_to_array(datum, self.param.force_color, self.param.force_gray, source)
        return self.transform(item, out)
