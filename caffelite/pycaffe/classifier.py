"""pycaffe's ``caffe.Classifier``: a Net that classifies images, with centre or ten-crop sampling.

pycaffe: python/caffe/classifier.py.
"""

from __future__ import annotations

import numpy as np

from caffelite.layer import TEST
from caffelite.net import Net
from caffelite.pycaffe import io as caffe_io

__all__ = ["Classifier"]


class Classifier(Net):
    """A TEST-phase Net for image class prediction by resizing, centre cropping or oversampling.

    Parameters
    ----------
    model_file, pretrained_file : str
        Deploy prototxt and .caffemodel weights.
    image_dims : (height, width), optional
        Size images are resized to before cropping; default the net's input size (the crop is then
        the whole image).
    mean, input_scale, raw_scale, channel_swap : optional
        Preprocessing, as :class:`caffelite.pycaffe.io.Transformer`'s setters (the transpose is
        always ``(2, 0, 1)``: images are H x W x K).
    """

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, pretrained_file, TEST)
        in_ = self.inputs[0]
        self.transformer = caffe_io.input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        if image_dims is None or len(image_dims) == 0:
            image_dims = self.crop_dims
        self.image_dims = image_dims

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        """Class probabilities of the images: an N x C array.

        Parameters
        ----------
        inputs : sequence of H x W x K arrays
        oversample : bool
            Average over the ten crops of :func:`~caffelite.pycaffe.io.oversample` (corners,
            centre and their mirrors) when true; the centre crop alone when false.
        """
        input_ = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1], inputs[0].shape[2]),
                          dtype=np.float32)
        for ix, in_ in enumerate(inputs):
            input_[ix] = caffe_io.resize_image(in_, self.image_dims)
        if oversample:
            input_ = caffe_io.oversample(input_, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            crop = np.tile(center, (1, 2))[0] + np.concatenate([-self.crop_dims / 2.0, self.crop_dims / 2.0])
            crop = crop.astype(int)
            input_ = input_[:, crop[0]:crop[2], crop[1]:crop[3], :]
        caffe_in = np.zeros(np.array(input_.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, in_ in enumerate(input_):
            caffe_in[ix] = self.transformer.preprocess(self.inputs[0], in_)
        out = self.forward_all(**{self.inputs[0]: caffe_in})
        predictions = out[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions
