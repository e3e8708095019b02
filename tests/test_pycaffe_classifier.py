"""caffe.Classifier and caffe.Detector (caffelite.pycaffe.classifier / detector) against plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import caffelite
from caffelite.errors import UnsupportedError
from caffelite.pycaffe import io as cio
from caffelite.pycaffe.classifier import Classifier
from caffelite.pycaffe.detector import Detector

H = W = 4
DEPLOY = """name: 'tiny_classifier'
layer { name: 'data' type: 'Input' top: 'data' input_param { shape { dim: 3 dim: 3 dim: %d dim: %d } } }
layer { name: 'ip' type: 'InnerProduct' bottom: 'data' top: 'ip'
  inner_product_param { num_output: 5 weight_filler { type: 'gaussian' std: 0.3 }
                        bias_filler { type: 'gaussian' std: 0.3 } } }
layer { name: 'prob' type: 'Softmax' bottom: 'ip' top: 'prob' }
""" % (H, W)


@pytest.fixture()
def model(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(DEPLOY)
    caffelite.set_random_seed(7)
    net = caffelite.Net(str(deploy), caffelite.TEST)
    weights = tmp_path / "tiny.caffemodel"
    net.save(str(weights))
    return str(deploy), str(weights), net.params["ip"][0].data.copy(), net.params["ip"][1].data.copy()


def _softmax_ip(x, w, b):
    z = x.reshape(len(x), -1).astype(np.float64) @ w.T + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _prep(img, mean, raw_scale, swap):
    return img.transpose(2, 0, 1)[list(swap)] * raw_scale - mean[:, None, None]


def test_classifier_centre_crop_matches_numpy(model):
    deploy, weights, w, b = model
    mean = np.array([10.0, 20.0, 30.0])
    clf = Classifier(deploy, weights, mean=mean, raw_scale=255.0, channel_swap=(2, 1, 0))
    assert clf.phase == caffelite.TEST and tuple(clf.crop_dims) == (H, W)
    images = [np.random.default_rng(i).uniform(size=(H, W, 3)).astype(np.float32) for i in range(5)]
    got = clf.predict(images, oversample=False)
    assert got.shape == (5, 5)
    x = np.stack([_prep(im, mean, 255.0, (2, 1, 0)) for im in images])
    np.testing.assert_allclose(got, _softmax_ip(x, w, b), rtol=1e-4, atol=1e-6)


def test_classifier_oversample_averages_ten_crops(model):
    deploy, weights, w, b = model
    clf = Classifier(deploy, weights, image_dims=(6, 7), input_scale=0.5)
    images = [np.random.default_rng(10 + i).uniform(size=(9, 8, 3)).astype(np.float32) for i in range(2)]
    got = clf.predict(images)  # oversample=True by default
    assert got.shape == (2, 5)
    want = []
    for im in images:
        big = cio.resize_image(im, (6, 7))
        starts = [(0, 0), (0, 3), (2, 0), (2, 3), (1, 1)]
        crops = [big[i:i + H, j:j + W] for i, j in starts]
        crops += [c[:, ::-1] for c in crops]
        x = np.stack([c.transpose(2, 0, 1) * 0.5 for c in crops])
        want.append(_softmax_ip(x, w, b).mean(axis=0))
    np.testing.assert_allclose(got, np.array(want), rtol=1e-4, atol=1e-6)


def test_classifier_centre_crop_of_larger_images(model):
    deploy, weights, w, b = model
    clf = Classifier(deploy, weights, image_dims=(8, 8))
    im = np.random.default_rng(3).uniform(size=(8, 8, 3)).astype(np.float32)
    got = clf.predict([im], oversample=False)
    big = cio.resize_image(im, (8, 8))
    x = big[2:6, 2:6].transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got, _softmax_ip(x, w, b), rtol=1e-4, atol=1e-6)


def _save_png(path, rgb01):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.round(rgb01 * 255).astype(np.uint8), "RGB").save(path)


def test_detector_windows_match_numpy(model, tmp_path):
    deploy, weights, w, b = model
    rng = np.random.default_rng(0)
    paths = []
    for k in range(2):
        p = tmp_path / ("im%d.png" % k)
        _save_png(p, rng.uniform(size=(12, 10, 3)))
        paths.append(str(p))
    windows = [np.array([0, 0, 6, 5]), np.array([2, 3, 12, 10]), np.array([4, 4, 8, 8])]
    det = Detector(deploy, weights, raw_scale=255.0)
    assert tuple(det.crop_dims) == (H, W, 3)
    out = det.detect_windows([(paths[0], windows[:2]), (paths[1], windows[2:])])
    assert [d["filename"] for d in out] == [paths[0], paths[0], paths[1]]
    assert all(d["window"] is win for d, win in zip(out, windows))
    xs = []
    for path, win in [(paths[0], windows[0]), (paths[0], windows[1]), (paths[1], windows[2])]:
        im = cio.load_image(path)
        crop = cio.resize_image(im[win[0]:win[2], win[1]:win[3]], (H, W))
        xs.append(crop.transpose(2, 0, 1) * 255.0)
    want = _softmax_ip(np.stack(xs), w, b)
    np.testing.assert_allclose(np.stack([d["prediction"] for d in out]), want, rtol=1e-4, atol=1e-6)


def test_detector_context_pad_fills_with_the_mean(model, tmp_path):
    deploy, weights, _, _ = model
    p = tmp_path / "im.png"
    _save_png(p, np.random.default_rng(1).uniform(size=(10, 10, 3)))
    mean = np.array([0.1, 0.2, 0.3])
    det = Detector(deploy, weights, mean=mean, context_pad=1)
    np.testing.assert_allclose(det.crop_mean.reshape(-1, 3)[0], mean)  # back in image (H x W x K) space
    crop = det.crop(cio.load_image(str(p)), np.array([0, 0, 4, 4]))
    assert crop.shape == (H, W, 3)
    np.testing.assert_allclose(crop[0, 0], mean, rtol=1e-6)  # beyond the image: the mean
    assert len(det.detect_windows([(str(p), [np.array([0, 0, 4, 4])])])) == 1


def test_detector_selective_search_is_unsupported(model):
    deploy, weights, _, _ = model
    with pytest.raises(UnsupportedError, match="detect_windows"):
        Detector(deploy, weights).detect_selective_search(["x.png"])
