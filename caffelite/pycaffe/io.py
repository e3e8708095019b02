r"""pycaffe's ``caffe.io``: proto/array conversion, the input ``Transformer`` and image helpers.

pycaffe: python/caffe/io.py.  Same names, arguments and results; where pycaffe leans on
scikit-image and SciPy we use NumPy (and Pillow for reading images, the optional extra
``caffelite[image]``):

- ``load_image`` reads with Pillow instead of ``skimage.io.imread``: float32 in [0, 1], H x W x 3
  RGB (alpha dropped), or H x W x 1 with ``color=False`` (grey as skimage's ``rgb2gray``:
  :math:`0.2125 R + 0.7154 G + 0.0721 B`).  Same values as skimage 0.26 for 8-bit RGB, grey and
  palette images and 16-bit PNGs; one difference: an RGBA image read with ``color=False`` drops
  its alpha before the grey conversion (as skimage did in pycaffe's day; skimage >= 0.16
  composites it onto white first).
- ``resize_image`` interpolates with NumPy.  For 1- and 3-channel images it reproduces
  ``skimage.transform.resize(im, dims, order=1, mode='constant')`` without anti-aliasing
  (skimage's behaviour when pycaffe was written; newer skimage blurs before downsampling unless
  ``anti_aliasing=False``): pixel centres map as :math:`x_{src} = (x_{dst} + 1/2)\,s - 1/2` with
  :math:`s = n_{in} / n_{out}`, and samples beyond the border blend with zero.  Other channel
  counts follow ``scipy.ndimage.zoom(order=1)``: corners map to corners,
  :math:`x_{src} = x_{dst} (n_{in} - 1) / (n_{out} - 1)`.  Orders 0 (nearest) and 1 (linear)
  are offered; pycaffe's spline orders 2-5 are not.  Checked against skimage 0.26
  (``anti_aliasing=False``) and SciPy 1.17's ``zoom``: equal to within 1e-6 (float32 rounding).

Deliberate differences: ``Transformer.preprocess`` never writes into the caller's array (pycaffe's
in-place ``*=`` can scale the input image when no resize or channel swap copies it first), and
errors are caffelite's typed errors (``ValueError`` subclasses, so pycaffe's ``except`` clauses
still catch them) with pycaffe's messages.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import CaffeFileNotFoundError, FileFormatError, NetError, ShapeError, UnsupportedError
from caffelite.proto import caffe_pb2

__all__ = [
    "Transformer", "load_image", "resize_image", "oversample",
    "blobproto_to_array", "array_to_blobproto", "arraylist_to_blobprotovector_str",
    "blobprotovector_str_to_arraylist", "array_to_datum", "datum_to_array", "caffe_pb2",
]

# skimage.color.rgb2gray's weights (ITU-R BT.709 luma)
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


# --- proto / datum / ndarray conversion ------------------------------------------------------
def _has_legacy_shape(blob) -> bool:
    return any(blob.HasField(f) for f in ("num", "channels", "height", "width"))


def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """A ``BlobProto`` as a float64 array: its data, or its diff when ``return_diff``.

    The shape is the legacy ``num, channels, height, width`` when any of those is set, else
    ``shape.dim`` (no shape at all means a scalar: one value, or a ``ValueError``).
    """
    field = "diff" if return_diff else "data"
    values = getattr(blob, field)
    if not len(values):  # Blob<double> writes double_data/double_diff
        values = getattr(blob, "double_" + field)
    data = np.array(values, dtype=np.float64)
    if _has_legacy_shape(blob):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise ShapeError("cannot reshape the BlobProto's %d %s values to shape %s%s"
                         % (data.size, field, list(shape),
                            "" if shape else " (the proto sets no shape)"))
    return data.reshape(shape)


def array_to_blobproto(arr, diff=None):
    """An array (any number of axes) as a ``BlobProto`` with ``shape`` and float ``data``.

    ``diff``, when given, must have the array's shape (pycaffe does not check; we do).
    """
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(np.float64).ravel().tolist())
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise ShapeError("array_to_blobproto: diff shape %s differs from the array's %s"
                             % (diff.shape, arr.shape))
        blob.diff.extend(diff.astype(np.float64).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist) -> bytes:
    """Serialise a list of arrays as a ``BlobProtoVector`` (bytes)."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


# pycaffe's original (misspelt) name, still used by old scripts
arraylist_to_blobprotovecor_str = arraylist_to_blobprotovector_str


def blobprotovector_str_to_arraylist(str) -> list[np.ndarray]:  # noqa: A002 - pycaffe's argument name
    """Parse serialised ``BlobProtoVector`` bytes into a list of arrays."""
    vec = caffe_pb2.BlobProtoVector()
    try:
        vec.ParseFromString(str)
    except Exception as e:  # protobuf's DecodeError
        raise FileFormatError("cannot parse %d bytes as a BlobProtoVector: %s" % (len(str), e)) from None
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A C x H x W array as a ``Datum``: uint8 arrays as raw ``data`` bytes, others as ``float_data``.

    ``label`` is stored only when given (an unset label keeps the record smaller).
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ShapeError("Incorrect array shape. (array_to_datum takes a C x H x W array, got shape %s)"
                         % (arr.shape,))
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = arr.shape
    if arr.dtype == np.uint8:
        datum.data = np.ascontiguousarray(arr).tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum) -> np.ndarray:
    """A ``Datum``'s values as a C x H x W array: uint8 from ``data``, float64 from ``float_data``.

    The label is not returned (read ``datum.label``).
    """
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        if datum.encoded:
            raise FileFormatError("datum_to_array: this Datum holds an encoded image (encoded: true, "
                                  "%d bytes); decode datum.data with an image library" % len(datum.data))
        values = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        values = np.array(datum.float_data, dtype=np.float64)
    if values.size != int(np.prod(shape)):
        raise ShapeError("Datum holds %d values for shape %s" % (values.size, list(shape)))
    return values.reshape(shape).copy()


# --- pre-processing --------------------------------------------------------------------------
class Transformer:
    r"""Turn images into a net's input blobs and back (pycaffe's ``caffe.io.Transformer``).

    ``preprocess(in_, data)`` takes an H' x W' x K image and, in this order: converts to float32;
    resizes to the input's H x W (``resize_image``); transposes (``set_transpose``, e.g.
    ``(2, 0, 1)`` for K x H x W); reorders channels (``set_channel_swap``, e.g. RGB to BGR);
    multiplies by ``raw_scale``; subtracts ``mean``; multiplies by ``input_scale``:

    .. math:: x = \big(\mathrm{swap}(\mathrm{transpose}(\mathrm{resize}(I))) \cdot r - \mu\big) \cdot s

    ``deprocess`` inverts every step but the resize.

    Parameters
    ----------
    inputs : dict
        Input blob name -> blob shape, e.g. ``{'data': net.blobs['data'].data.shape}``.
    """

    def __init__(self, inputs: dict):
        self.inputs = inputs
        self.transpose: dict = {}
        self.channel_swap: dict = {}
        self.raw_scale: dict = {}
        self.mean: dict = {}
        self.input_scale: dict = {}

    def __check_input(self, in_) -> None:
        if in_ not in self.inputs:
            raise NetError(f"{in_} is not one of the net inputs: {self.inputs}")

    def preprocess(self, in_, data) -> np.ndarray:
        """Format an H' x W' x K image for the input ``in_`` (see the class docstring)."""
        self.__check_input(in_)
        caffe_in = np.array(data, dtype=np.float32)  # a copy: never scale the caller's image
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        in_dims = tuple(self.inputs[in_][2:])
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[list(channel_swap), :, :]
        if raw_scale is not None:
            caffe_in *= raw_scale
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= input_scale
        return caffe_in

    def deprocess(self, in_, data) -> np.ndarray:
        """Undo ``preprocess`` (all but the resize): a blob's data back to an H x W x K image."""
        self.__check_input(in_)
        decaf_in = np.array(data, copy=True).squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if input_scale is not None:
            decaf_in /= input_scale
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= raw_scale
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_, order) -> None:
        """Axis order taking the image (H x W x K) to the blob's layout, e.g. ``(2, 0, 1)``."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ShapeError("Transpose order needs to have the same number of dimensions as the input. "
                             "(order %s for input '%s' of shape %s)" % (tuple(order), in_, tuple(self.inputs[in_])))
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order) -> None:
        """Channel order to take after the transpose, e.g. ``(2, 1, 0)`` maps RGB to BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ShapeError("Channel swap needs to have the same number of dimensions as the input "
                             "channels. (order %s, input '%s' has %d channels)"
                             % (tuple(order), in_, self.inputs[in_][1]))
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale) -> None:
        """Scale applied before the mean: e.g. 255 for models trained on [0, 255] pixels."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean) -> None:
        """Mean to subtract: per channel (shape ``(K,)``) or elementwise (``K x H x W`` or ``H x W``)."""
        self.__check_input(in_)
        mean = np.asarray(mean)
        ms = mean.shape
        if mean.ndim == 1:
            if ms[0] != self.inputs[in_][1]:
                raise ShapeError("Mean channels incompatible with input. (mean has %d channels, input "
                                 "'%s' has %d)" % (ms[0], in_, self.inputs[in_][1]))
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if len(ms) == 2:
                ms = (1,) + ms
            if len(ms) != 3:
                raise ShapeError("Mean shape invalid (shape %s; expected (K,), (H, W) or (K, H, W))" % (ms,))
            if tuple(ms) != tuple(self.inputs[in_][1:]):
                raise ShapeError("Mean shape incompatible with input shape. (mean %s, input '%s' %s)"
                                 % (tuple(ms), in_, tuple(self.inputs[in_][1:])))
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale) -> None:
        """Scale applied last, after the mean is subtracted."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


# --- image IO --------------------------------------------------------------------------------
def input_transformer(net, mean=None, input_scale=None, raw_scale=None, channel_swap=None) -> Transformer:
    """A Transformer for ``net``'s first input, H×W×K images to K×H×W, with the given preprocessing
    (what pycaffe's Classifier and Detector both set up)."""
    in_ = net.inputs[0]
    transformer = Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


def _pil_to_float(pil) -> np.ndarray:
    """A Pillow image as floats in [0, 1] (as skimage.img_as_float): H x W or H x W x C."""
    mode = pil.mode
    if mode == "P" or mode == "PA":
        pil = pil.convert("RGBA" if ("transparency" in pil.info or mode == "PA") else "RGB")
    elif mode == "1":
        pil = pil.convert("L")
    elif mode == "LA":
        pil = pil.convert("RGBA")
    elif mode not in ("L", "RGB", "RGBA", "F", "I", "I;16", "I;16B", "I;16L"):
        pil = pil.convert("RGB")  # CMYK, YCbCr, HSV, LAB, RGBX, ...
    arr = np.asarray(pil)
    if arr.dtype == np.uint8:
        return arr / 255.0
    if arr.dtype.kind == "u":
        return arr / float(np.iinfo(arr.dtype).max)
    if arr.dtype.kind == "i":  # skimage maps signed integers to [-1, 1]
        return np.maximum(arr / float(np.iinfo(arr.dtype).max), -1.0)
    return arr.astype(np.float64)


def load_image(filename, color: bool = True) -> np.ndarray:
    """Read an image as float32 in [0, 1]: H x W x 3 RGB, or H x W x 1 grey when ``color=False``.

    Grey images are repeated into three channels when ``color`` is true; an alpha channel is
    dropped.  Needs Pillow (``pip install 'caffelite[image]'``).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UnsupportedError("caffe.io.load_image needs Pillow to read images: "
                               "pip install 'caffelite[image]' (or pip install Pillow)") from None
    try:
        with Image.open(filename) as pil:
            img = _pil_to_float(pil)
    except FileNotFoundError:
        raise CaffeFileNotFoundError("image file not found: %s" % filename, file=str(filename)) from None
    except (UnidentifiedImageError, OSError) as e:
        raise FileFormatError("cannot read image %s: %s" % (filename, e), file=str(filename)) from None
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if not color and img.ndim == 3:
        img = img @ _GRAY_WEIGHTS
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    return img


def _axis_samples(n_in: int, n_out: int, order: int, centred: bool):
    """Source indices and weights along one axis: out[j] = sum_k w[k][j] * in[idx[k][j]].

    ``centred`` (skimage): pixel centres align and samples outside the image are zero, so the
    indices point into the input padded with one zero on each side.  Otherwise (ndimage.zoom)
    the corner pixels align and every sample lies inside the input.
    """
    j = np.arange(n_out, dtype=np.float64)
    if centred:
        src = (j + 0.5) * (n_in / n_out) - 0.5
        if order == 0:
            return [np.clip(np.floor(src + 0.5), 0, n_in - 1).astype(np.intp) + 1], [np.ones(n_out)]
        i0 = np.floor(src)
        t = src - i0
        i0 = i0.astype(np.intp) + 1  # +1: the padding
        return [np.clip(i0, 0, n_in + 1), np.clip(i0 + 1, 0, n_in + 1)], [1.0 - t, t]
    src = j * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    if order == 0:
        return [np.clip(np.floor(src + 0.5), 0, n_in - 1).astype(np.intp)], [np.ones(n_out)]
    i0 = np.clip(np.floor(src), 0, max(n_in - 2, 0)).astype(np.intp)
    t = src - i0
    return [i0, np.minimum(i0 + 1, n_in - 1)], [1.0 - t, t]


def _interpolate(im: np.ndarray, new_dims, order: int, centred: bool) -> np.ndarray:
    """Separable order-0/1 interpolation of the first two axes of an H x W x K float64 array."""
    if centred:
        im = np.pad(im, ((1, 1), (1, 1), (0, 0)))
    for axis, (n_in, n_out) in enumerate(zip(im.shape[:2], new_dims)):
        n_in -= 2 if centred else 0
        idx, weights = _axis_samples(n_in, int(n_out), order, centred)
        shape = [1, 1, 1]
        shape[axis] = -1
        out = 0.0
        for i, w in zip(idx, weights):
            out = out + np.take(im, i, axis=axis) * w.reshape(shape)
        im = out
    return im


def resize_image(im, new_dims, interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K image to ``new_dims = (height, width)``: float32 H' x W' x K.

    1- and 3-channel images are scaled to [0, 1], resized as skimage's ``resize(order=1,
    mode='constant')`` without anti-aliasing, and scaled back; a constant image stays constant.
    Other channel counts are resized as ``scipy.ndimage.zoom(order=1)`` (corners aligned).
    ``interp_order`` 0 gives nearest-neighbour sampling.
    """
    im = np.asarray(im)
    if im.ndim != 3:
        raise ShapeError("resize_image takes an H x W x K array, got shape %s" % (im.shape,))
    if interp_order not in (0, 1):
        raise UnsupportedError("resize_image: interp_order %r is not supported (caffelite offers 0, "
                               "nearest, and 1, linear; pycaffe's spline orders 2-5 need scipy)"
                               % (interp_order,))
    new_dims = tuple(int(d) for d in new_dims)
    if len(new_dims) != 2 or min(new_dims) < 1:
        raise ShapeError("resize_image: new_dims must be (height, width) of positive sizes, got %s"
                         % (new_dims,))
    if im.shape[-1] in (1, 3):
        im_min, im_max = im.min(), im.max()
        if not im_max > im_min:  # a constant image: avoid dividing by zero
            return np.full(new_dims + (im.shape[-1],), im_min, dtype=np.float32)
        im_std = (im.astype(np.float64) - im_min) / (float(im_max) - float(im_min))
        resized = _interpolate(im_std, new_dims, interp_order, centred=True)
        resized = np.clip(resized, 0.0, 1.0) * (float(im_max) - float(im_min)) + float(im_min)
    else:
        resized = _interpolate(im.astype(np.float64), new_dims, interp_order, centred=False)
    return resized.astype(np.float32)


def oversample(images, crop_dims) -> np.ndarray:
    """Ten crops per image: the four corners and the centre, then the same five mirrored.

    Parameters
    ----------
    images : sequence of H x W x K arrays (all of the first one's shape)
    crop_dims : (height, width) of the crops

    Returns
    -------
    crops : float32 array of shape (10 N, height, width, K), image by image.
    """
    im_shape = np.array(np.shape(images[0]))
    crop_dims = np.array(crop_dims)
    h, w = int(crop_dims[0]), int(crop_dims[1])
    if h > im_shape[0] or w > im_shape[1]:
        raise ShapeError("oversample: crop %s is larger than the images (%s)" % ((h, w), tuple(im_shape[:2])))
    im_center = im_shape[:2] / 2.0
    corners = [(i, j) for i in (0, im_shape[0] - h) for j in (0, im_shape[1] - w)]
    # the centre crop's start, truncated as pycaffe stores it in an int array
    corners.append(tuple((im_center - crop_dims / 2.0).astype(int)))
    crops = np.empty((10 * len(images), h, w, im_shape[-1]), dtype=np.float32)
    for n, im in enumerate(images):
        im = np.asarray(im)
        for k, (i, j) in enumerate(corners):
            crops[10 * n + k] = im[i:i + h, j:j + w, :]
        crops[10 * n + 5:10 * n + 10] = crops[10 * n:10 * n + 5, :, ::-1, :]
    return crops
