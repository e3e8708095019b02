r"""Shape layers: Concat, Slice, Flatten, Reshape, Tile, Crop.

They move values without arithmetic, so their backward passes copy (or sum, for Tile) the top
diffs back.  Where Caffe calls ShareData and ShareDiff (Flatten, Reshape, a Concat of one bottom,
a Slice into one top) the top views the bottom's data and diff: one buffer under two names, so an
in-place layer on either name changes what both show, and backward has nothing to copy.

Caffe: src/caffe/layers/{concat,slice,flatten,reshape,tile,crop}_layer.cpp.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import BackwardError, LayerError, ShapeError
from caffelite.layer import Layer, register_layer

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes


def _share(top, bottom) -> None:
    """Caffe's ``top->ShareData(*bottom); top->ShareDiff(*bottom)``: the top views both buffers.

    Called again in forward because the bottom's data may have been reallocated since reshape;
    the diff follows the bottom by itself.
    """
    if top is bottom:  # in place: already one blob
        return
    if not np.shares_memory(top.data, bottom.data):
        top.share_data(bottom)
    top.share_diff(bottom)


def _legacy_axis(param, legacy: str, bottom) -> int:
    """The axis from ``axis`` or its uint32 legacy alias (``concat_dim`` / ``slice_dim``)."""
    if param.HasField(legacy):
        axis = getattr(param, legacy)
        if axis >= 2**31:
            raise LayerError("casting %s from uint32 to int32 produced negative result; %s must satisfy "
                             "0 <= %s < %d" % (legacy, legacy, legacy, MAX_BLOB_AXES), field=legacy)
        if axis >= bottom.num_axes:
            raise ShapeError("%s out of range. (%s = %d, bottom has %d axes)"
                             % (legacy, legacy, axis, bottom.num_axes), field=legacy)
        return int(axis)
    return bottom.canonical_axis_index(param.axis)


@register_layer
class ConcatLayer(Layer):
    r"""Concatenates the bottoms along ``concat_param.axis`` (legacy ``concat_dim``).

    .. math:: y = [x_1, \dots, x_K]_{\text{axis}}, \qquad
              \frac{\partial E}{\partial x_k} = \left(\frac{\partial E}{\partial y}\right)_{\text{slice } k}

    Caffe: src/caffe/layers/concat_layer.cpp.
    """

    type = "Concat"
    min_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise LayerError("Either axis or concat_dim should be specified; not both.", field="concat_param")

    def reshape(self, bottom, top):
        axis = _legacy_axis(self.layer_param.concat_param, "concat_dim", bottom[0])
        shape = list(bottom[0].shape)
        for i, b in enumerate(bottom[1:], start=1):
            if b.num_axes != bottom[0].num_axes:
                raise ShapeError("All inputs must have the same #axes. (bottom[0]: %s, bottom[%d]: %s)"
                                 % (bottom[0].shape_string(), i, b.shape_string()))
            for j in range(len(shape)):
                if j != axis and shape[j] != b.shape[j]:
                    raise ShapeError("All inputs must have the same shape, except at concat_axis. "
                                     "(axis %d; bottom[0]: %s, bottom[%d]: %s)"
                                     % (axis, bottom[0].shape_string(), i, b.shape_string()))
            shape[axis] += b.shape[axis]
        self.axis = axis
        top[0].reshape(shape)
        if len(bottom) == 1:
            _share(top[0], bottom[0])

    def forward(self, bottom, top):
        if len(bottom) == 1:
            _share(top[0], bottom[0])
            return
        np.concatenate([b.data for b in bottom], axis=self.axis, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:  # the top's diff is the bottom's
            return
        dy = top[0].diff
        start = 0
        for pd, b in zip(propagate_down, bottom):
            size = b.shape[self.axis]
            if pd:
                np.copyto(b.diff, dy[(slice(None),) * self.axis + (slice(start, start + size),)])
            start += size


@register_layer
class SliceLayer(Layer):
    r"""Splits the bottom along ``slice_param.axis`` (legacy ``slice_dim``) at ``slice_point``\ s,
    or into equal parts when none is given; the inverse of Concat.

    Caffe: src/caffe/layers/slice_layer.cpp.
    """

    type = "Slice"
    exact_bottoms = 1
    min_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise LayerError("Either axis or slice_dim should be specified; not both.", field="slice_param")

    def reshape(self, bottom, top):
        p = self.layer_param.slice_param
        axis = _legacy_axis(p, "slice_dim", bottom[0])
        size = bottom[0].shape[axis]
        points = list(p.slice_point)
        if points:
            if len(points) != len(top) - 1:
                raise LayerError("Slice layer needs one slice_point fewer than tops (%d slice_point(s), %d tops)"
                                 % (len(points), len(top)), field="slice_param.slice_point")
            if len(top) > size:
                raise ShapeError("slice axis: %d, bottom[0] shape: %s (more tops than slices)"
                                 % (axis, bottom[0].shape_string()))
            sizes, prev = [], 0
            for pt in points:
                if pt <= prev:
                    raise LayerError("slice_point must increase: %d after %d" % (pt, prev),
                                     field="slice_param.slice_point")
                sizes.append(pt - prev)
                prev = pt
            sizes.append(size - prev)
            if sizes[-1] < 0:
                raise ShapeError("slice_point %d is past the end of slice axis %d (size %d)"
                                 % (prev, axis, size), field="slice_param.slice_point")
        else:
            if size % len(top):
                raise ShapeError("Number of top blobs (%d) should evenly divide input slice axis (%d)"
                                 % (len(top), size))
            sizes = [size // len(top)] * len(top)
        self.axis, self.sizes = axis, sizes
        for t, n in zip(top, sizes):
            shape = list(bottom[0].shape)
            shape[axis] = n
            t.reshape(shape)
        if len(top) == 1:
            _share(top[0], bottom[0])

    def _slices(self):
        start = 0
        for n in self.sizes:
            yield (slice(None),) * self.axis + (slice(start, start + n),)
            start += n

    def forward(self, bottom, top):
        if len(top) == 1:
            _share(top[0], bottom[0])
            return
        x = bottom[0].data
        for t, index in zip(top, self._slices()):
            np.copyto(t.data, x[index])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0] or len(top) == 1:  # one top: its diff is the bottom's
            return
        dx = bottom[0].diff
        for t, index in zip(top, self._slices()):
            dx[index] = t.diff


class _ViewLayer(Layer):
    """One bottom, one top that views the bottom's data and diff under another shape (no in-place)."""

    exact_bottoms = 1
    exact_tops = 1

    def top_shape(self, bottom) -> list[int]:
        raise NotImplementedError

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError("%s layer does not allow in-place computation." % self.layer_type(), field="top")
        shape = self.top_shape(bottom[0])
        count = int(np.prod(shape, dtype=np.int64))
        if count != bottom[0].count:
            raise ShapeError("output count must match input count (%d vs %d; top shape %s, bottom %s)"
                             % (count, bottom[0].count, shape, bottom[0].shape_string()))
        top[0].reshape(shape)
        _share(top[0], bottom[0])

    def forward(self, bottom, top):
        _share(top[0], bottom[0])

    def backward(self, top, propagate_down, bottom):
        pass  # the top's diff is the bottom's: nothing to copy


@register_layer
class FlattenLayer(_ViewLayer):
    r"""Merges axes ``axis`` .. ``end_axis`` (inclusive) into one: a (2, 3, 4, 5) bottom with
    ``axis: 1`` gives (2, 60).  The top views the bottom's data.

    Caffe: src/caffe/layers/flatten_layer.cpp.
    """

    type = "Flatten"

    def top_shape(self, bottom):
        p = self.layer_param.flatten_param
        start = bottom.canonical_axis_index(p.axis)
        end = bottom.canonical_axis_index(p.end_axis)
        shape = list(bottom.shape)
        return shape[:start] + [bottom.count_range(start, end + 1)] + shape[end + 1:]


@register_layer
class ReshapeLayer(_ViewLayer):
    r"""Gives the bottom a new shape without copying: ``reshape_param.shape`` replaces the axes
    ``axis`` .. ``axis + num_axes`` (all when ``num_axes`` is -1); a 0 copies the bottom's dimension
    at that place and a single -1 is inferred from the count.

    Caffe: src/caffe/layers/reshape_layer.cpp.
    """

    type = "Reshape"

    def setup(self, bottom, top):
        dims = list(self.layer_param.reshape_param.shape.dim)
        self.copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            raise LayerError("new shape contains multiple -1 dims; at most a single (1) value of -1 may be "
                             "specified (shape %s)" % dims, field="reshape_param.shape")
        for d in dims:
            if d < -1:
                raise LayerError("new shape has a negative dimension %d (shape %s)" % (d, dims),
                                 field="reshape_param.shape")
        self.inferred_axis = inferred[0] if inferred else -1
        self.constant_count = int(np.prod([d for d in dims if d > 0], dtype=np.int64))
        self.dims = dims

    def top_shape(self, bottom):
        p = self.layer_param.reshape_param
        n = bottom.num_axes
        start = p.axis if p.axis >= 0 else n + p.axis + 1
        if start < 0 or start > n:
            raise ShapeError("axis %d out of range for %d-D input blob" % (p.axis, n), field="reshape_param.axis")
        if p.num_axes < -1:
            raise LayerError("num_axes must be >= 0, or -1 for all (got %d)" % p.num_axes,
                             field="reshape_param.num_axes")
        end = n if p.num_axes == -1 else start + p.num_axes
        if end > n:
            raise ShapeError("end_axis = axis + num_axes is out of range (%d + %d > %d axes)"
                             % (start, p.num_axes, n), field="reshape_param.num_axes")
        shape = list(bottom.shape[:start]) + list(self.dims) + list(bottom.shape[end:])
        for i in self.copy_axes:
            if start + i >= n:
                raise ShapeError("new shape contains a 0, but there was no corresponding bottom axis to copy "
                                 "(bottom %s)" % bottom.shape_string(), field="reshape_param.shape")
            shape[start + i] = bottom.shape[start + i]
        if self.inferred_axis >= 0:
            explicit = self.constant_count * bottom.count_range(0, start) * bottom.count_range(end)
            for i in self.copy_axes:
                explicit *= shape[start + i]
            if explicit == 0 or bottom.count % explicit:
                raise ShapeError("bottom count (%d) must be divisible by the product of the specified "
                                 "dimensions (%d)" % (bottom.count, explicit), field="reshape_param.shape")
            shape[start + self.inferred_axis] = bottom.count // explicit
        return shape


@register_layer
class TileLayer(Layer):
    r"""Repeats the bottom ``tiles`` times along ``axis``: the block of axes from ``axis`` on is
    copied whole, so (2, 3) with axis 1 and 2 tiles gives rows :math:`[x_0, x_0]` of length 6.

    .. math:: \frac{\partial E}{\partial x} = \sum_{k=1}^{\text{tiles}}
              \left(\frac{\partial E}{\partial y}\right)_{\text{copy } k}

    Caffe: src/caffe/layers/tile_layer.cpp.
    """

    type = "Tile"
    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        p = self.layer_param.tile_param
        if not p.HasField("tiles"):
            raise LayerError("Number of tiles must be specified", field="tile_param.tiles")
        if p.tiles <= 0:
            raise LayerError("Number of tiles must be positive. (tiles = %d)" % p.tiles, field="tile_param.tiles")
        self.tiles = p.tiles

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis_index(self.layer_param.tile_param.axis)
        shape = list(bottom[0].shape)
        shape[self.axis] *= self.tiles
        self.outer = bottom[0].count_range(0, self.axis)
        self.inner = bottom[0].count_range(self.axis)
        top[0].reshape(shape)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.outer, 1, self.inner)
        top[0].data.reshape(self.outer, self.tiles, self.inner)[...] = x

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dy = top[0].diff.reshape(self.outer, self.tiles, self.inner)
            np.sum(dy, axis=1, out=bottom[0].diff.reshape(self.outer, self.inner))


# --- Crop -------------------------------------------------------------------------------------------
@register_layer
class CropLayer(Layer):
    r"""Crop bottom[0] to bottom[1]'s shape on the axes from ``axis`` on:
    :math:`y_{\mathbf{i}} = x_{\mathbf{i} + \mathbf{o}}`, offsets :math:`\mathbf{o}` (0 before ``axis``;
    one ``offset`` for every cropped axis, or one each).  bottom[1] gives only a shape: no gradient.

    Caffe: src/caffe/layers/crop_layer.cpp.
    """

    type = "Crop"
    exact_bottoms = 2
    exact_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        p = self.layer_param.crop_param
        nd = bottom[0].num_axes
        start = bottom[0].canonical_axis_index(p.axis)
        offsets = list(p.offset)
        if len(offsets) > 1 and start + len(offsets) != nd:
            raise LayerError("number of offset values specified must be equal to the number of dimensions following "
                             "axis. (axis %d, %d offsets, %d axes)" % (start, len(offsets), nd),
                             field="crop_param.offset")
        if bottom[1].num_axes != nd:
            raise ShapeError("Crop bottoms must have the same number of axes (%s vs %s)"
                             % (list(bottom[0].shape), list(bottom[1].shape)))
        shape, self.offsets = list(bottom[0].shape), [0] * nd
        for i in range(start, nd):
            off = offsets[0] if len(offsets) == 1 else (offsets[i - start] if offsets else 0)
            if bottom[0].shape[i] - off < bottom[1].shape[i]:
                raise ShapeError("invalid crop parameters in dimension: %d (input %d, offset %d, crop size %d)"
                                 % (i, bottom[0].shape[i], off, bottom[1].shape[i]), field="crop_param.offset")
            shape[i], self.offsets[i] = bottom[1].shape[i], off
        top[0].reshape(shape)
        self.window = tuple(slice(o, o + s) for o, s in zip(self.offsets, shape))

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[self.window]

    def backward(self, top, propagate_down, bottom):
        if len(propagate_down) > 1 and propagate_down[1]:
            raise BackwardError("Crop Layer cannot backpropagate to its second input (it gives only a shape).")
        if propagate_down[0]:
            dx = bottom[0].diff
            dx[...] = 0
            dx[self.window] = top[0].diff
