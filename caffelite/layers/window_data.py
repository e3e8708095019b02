r"""The WindowData layer: windows cropped from images, as R-CNN's window files list them
(``pip install caffelite[image]``).

Caffe: src/caffe/layers/window_data_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.common import rng
from caffelite.errors import FileFormatError, LayerError, ShapeError
from caffelite.layer import register_layer
from caffelite.layers.base_data import DataLayerBase, check_batch_size, read_list
from caffelite.transform import import_optional, read_image, resize_bilinear


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
    tokens = [w for line in read_list(source, "window file") for w in line.split()]
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
class WindowDataLayer(DataLayerBase):
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
    reads_source = True
    exact_tops = 2

    def setup(self, bottom, top):
        p = self.layer_param.window_data_param
        t = self.layer_param.transform_param
        import_optional("PIL.Image", "image", "The WindowData layer")
        self.batch_size = check_batch_size(p.batch_size, "window_data_param.batch_size")
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
