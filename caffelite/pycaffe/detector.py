"""pycaffe's ``caffe.Detector``: windowed detection by classifying many crops at once (R-CNN style).

pycaffe: python/caffe/detector.py.  ``detect_windows`` works as in pycaffe (with optional context
padding); ``detect_selective_search`` needed an external MATLAB-based package and raises
:class:`~caffelite.errors.UnsupportedError`: compute the proposals elsewhere and pass them to
``detect_windows``.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import ShapeError, UnsupportedError
from caffelite.layer import TEST
from caffelite.net import Net
from caffelite.pycaffe import io as caffe_io

__all__ = ["Detector"]


class Detector(Net):
    """A TEST-phase Net classifying windows of images.

    Parameters
    ----------
    model_file, pretrained_file : str
        Deploy prototxt and .caffemodel weights.
    mean, input_scale, raw_scale, channel_swap : optional
        Preprocessing, as :class:`caffelite.pycaffe.io.Transformer`'s setters.
    context_pad : int, optional
        Pixels of context (in the net's input scale) to add around each window, R-CNN style;
        the padding beyond the image is filled with the mean.
    """

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, context_pad=None):
        Net.__init__(self, model_file, pretrained_file, TEST)
        self.transformer = caffe_io.input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows) -> list[dict]:
        """Classify windows of images.

        Parameters
        ----------
        images_windows : iterable of (image filename, windows)
            Each window is ``(ymin, xmin, ymax, xmax)`` in pixels.

        Returns
        -------
        list of dict
            ``{'window': ..., 'prediction': class scores, 'filename': ...}`` per window, in order.
        """
        images_windows = [(fname, list(windows)) for fname, windows in images_windows]
        window_inputs = []
        for image_fname, windows in images_windows:
            image = caffe_io.load_image(image_fname).astype(np.float32)
            for window in windows:
                window_inputs.append(self.crop(image, window))
        if not window_inputs:
            return []
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(window_inputs), window_inputs[0].shape[2]) + tuple(self.blobs[in_].data.shape[2:]),
                            dtype=np.float32)
        for ix, window_in in enumerate(window_inputs):
            caffe_in[ix] = self.transformer.preprocess(in_, window_in)
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]
        detections = []
        ix = 0
        for image_fname, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[ix], "filename": image_fname})
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames):
        """Not available: pycaffe called the external ``selective_search_ijcv_with_python`` (MATLAB)."""
        raise UnsupportedError("Detector.detect_selective_search needs the external MATLAB package "
                               "selective_search_ijcv_with_python, which caffelite does not provide; "
                               "compute window proposals with another tool and call "
                               "detect_windows([(filename, windows), ...])")

    def crop(self, im, window) -> np.ndarray:
        """Cut ``window = (ymin, xmin, ymax, xmax)`` out of an H x W x K image, with context if configured."""
        window = np.asarray(window)
        crop = im[int(window[0]):int(window[2]), int(window[1]):int(window[3])]
        if not self.context_pad:
            return crop
        box = window.astype(np.float64)
        crop_size = self.blobs[self.inputs[0]].data.shape[3]  # assumes a square input, as pycaffe
        scale = crop_size / (1.0 * crop_size - self.context_pad * 2)
        # the box grown by the context
        half_h = (box[2] - box[0] + 1) / 2.0
        half_w = (box[3] - box[1] + 1) / 2.0
        center = (box[0] + half_h, box[1] + half_w)
        scaled_dims = scale * np.array((-half_h, -half_w, half_h, half_w))
        box = np.round(np.tile(center, 2) + scaled_dims)
        full_h = box[2] - box[0] + 1
        full_w = box[3] - box[1] + 1
        scale_h = crop_size / full_h
        scale_w = crop_size / full_w
        pad_y = int(round(max(0.0, -box[0]) * scale_h))  # the part beyond the image
        pad_x = int(round(max(0.0, -box[1]) * scale_w))
        im_h, im_w = im.shape[:2]
        box = np.clip(box, 0.0, [im_h, im_w, im_h, im_w])
        clip_h = box[2] - box[0] + 1
        clip_w = box[3] - box[1] + 1
        if not (clip_h > 0 and clip_w > 0):
            raise ShapeError("window %s lies outside the %dx%d image" % (list(window), im_h, im_w))
        crop_h = int(round(clip_h * scale_h))
        crop_w = int(round(clip_w * scale_w))
        if pad_y + crop_h > crop_size:
            crop_h = crop_size - pad_y
        if pad_x + crop_w > crop_size:
            crop_w = crop_size - pad_x
        context_crop = im[int(box[0]):int(box[2]), int(box[1]):int(box[3])]
        context_crop = caffe_io.resize_image(context_crop, (crop_h, crop_w))
        crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = context_crop
        return crop

    def configure_crop(self, context_pad) -> None:
        """Set ``crop_dims`` (H x W x K) and, with context padding, ``crop_mean`` in image space."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv_tpose = np.argsort(tpose)
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv_tpose]
        self.context_pad = context_pad
        if not self.context_pad:
            return
        channel_order = self.transformer.channel_swap.get(in_)
        raw_scale = self.transformer.raw_scale.get(in_)
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        # the padding needs the mean in unprocessed (image) space
        crop_mean = np.array(mean, dtype=np.float32).transpose(inv_tpose)
        if channel_order is not None:
            crop_mean = crop_mean[:, :, np.argsort(channel_order)]
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
