"""Blob: an N-d array of data and its gradient (diff), as in Caffe and pycaffe.

Caffe: include/caffe/blob.hpp, src/caffe/blob.cpp.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from caffelite.errors import BlobMemoryError, ShapeError

INT_MAX = 2**31 - 1
DTYPE = np.float32


def physical_memory() -> int:
    """Bytes of RAM on this machine (a generous fallback where the OS will not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_shape(shape: Iterable, what: str = "blob") -> tuple[int, ...]:
    """Validate a shape as Caffe's Blob::Reshape does, and refuse ones this machine cannot hold."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError("%s shape %r is not a list of integers" % (what, shape)) from None
    for d in dims:
        if d < 0:
            raise ShapeError("%s shape %s has a negative dimension" % (what, list(dims)))
    count = int(np.prod(dims, dtype=object)) if dims else 1
    nbytes = count * np.dtype(DTYPE).itemsize
    if count > INT_MAX:
        raise BlobMemoryError("%s shape %s has %d elements (%.1f GiB): blob size exceeds INT_MAX"
                              % (what, list(dims), count, nbytes / 2**30))
    if nbytes > physical_memory():
        raise BlobMemoryError("%s shape %s needs %.1f GiB, more than this machine's %.1f GiB of memory"
                              % (what, list(dims), nbytes / 2**30, physical_memory() / 2**30))
    return dims


class Blob:
    """Data and diff arrays of one shape (float32, like Caffe's ``Blob<float>``).

    ``data`` is allocated at once; ``diff`` on first use, so a net that never runs backward holds
    no gradient memory.  ``reshape`` reallocates at once when the shape changes (as pycaffe's
    ``blob.reshape``): earlier references to ``data`` no longer alias the blob.
    """

    __slots__ = ("_shape", "_data", "_diff", "_diff_owner", "dtype", "__weakref__")

    def __init__(self, *shape, data: np.ndarray | None = None, dtype=DTYPE):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        self.dtype = np.dtype(dtype)  # float32 like Caffe; float64 only for gradient checks
        self._shape: tuple[int, ...] = ()
        self._data = np.zeros((), self.dtype)
        self._diff: np.ndarray | None = None
        self._diff_owner: Blob | None = None  # diff shared with another blob (weight sharing)
        if data is not None:
            self._shape = check_shape(data.shape)
            self._data = np.ascontiguousarray(data, dtype=self.dtype)
        elif shape:
            self.reshape(*shape)

    # --- shape ---------------------------------------------------------------------------
    def reshape(self, *shape) -> None:
        """Change the shape; contents are zeroed if it changes (pycaffe semantics)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list, np.ndarray)):
            shape = tuple(shape[0])
        dims = check_shape(shape)
        if dims == self._shape and self._data.shape == dims:
            return
        self._shape = dims
        self._data = np.zeros(dims, self.dtype)
        self._diff = None
        self._diff_owner = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def count(self) -> int:
        return int(self._data.size)

    @property
    def num_axes(self) -> int:
        return len(self._shape)

    def legacy_shape(self, index: int) -> int:
        """Caffe's LegacyShape: 1 for the axes a blob of fewer than 4 axes lacks."""
        if len(self._shape) > 4:
            raise ShapeError("cannot use legacy accessors on blobs with > 4 axes")
        if index >= len(self._shape) or index < -len(self._shape):
            return 1
        return self._shape[index]

    num = property(lambda self: self.legacy_shape(0))
    channels = property(lambda self: self.legacy_shape(1))
    height = property(lambda self: self.legacy_shape(2))
    width = property(lambda self: self.legacy_shape(3))

    def shape_string(self) -> str:
        return " ".join(str(d) for d in self._shape) + " (%d)" % self.count

    # --- arrays --------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data[...] = value

    @property
    def diff(self) -> np.ndarray:
        if self._diff_owner is not None:
            return self._diff_owner.diff.reshape(self._shape)
        if self._diff is None:
            self._diff = np.zeros(self._shape, self.dtype)
        return self._diff

    @diff.setter
    def diff(self, value) -> None:
        self.diff[...] = value

    @property
    def has_diff(self) -> bool:
        """Whether a diff has been allocated (reading ``diff`` allocates one)."""
        return self._diff is not None or self._diff_owner is not None

    def astype(self, dtype) -> Blob:
        """Convert data (and any diff) to ``dtype`` in place; later reshapes keep it."""
        self.dtype = np.dtype(dtype)
        self._data = self._data.astype(self.dtype)
        if self._diff is not None:
            self._diff = self._diff.astype(self.dtype)
        return self

    def canonical_axis_index(self, axis: int) -> int:
        """Caffe's CanonicalAxisIndex: a possibly negative axis as an index in [0, num_axes)."""
        n = len(self._shape)
        if not -n <= axis < n:
            raise ShapeError("axis %d out of range for %d-D Blob with shape %s"
                             % (axis, n, self.shape_string()), field="axis")
        return axis + n if axis < 0 else axis

    def count_range(self, start: int, end: int | None = None) -> int:
        """Caffe's count(start, end): the product of dimensions [start, end)."""
        return int(np.prod(self._shape[start:end], dtype=np.int64))

    def alias(self, other: Blob) -> None:
        """Take other's shape and data buffer (Caffe's ReshapeLike + ShareData, as Split does)."""
        if self._shape != other._shape:
            self._diff = None
            self._diff_owner = None
        self._shape = other._shape
        self._data = other._data

    def share_data(self, other: Blob) -> None:
        """Alias other's data (same count, this blob's shape), as Caffe's Blob::ShareData."""
        if other.count != self.count:
            raise ShapeError("cannot share data of %d elements with a blob of %d"
                             % (other.count, self.count))
        self._data = other._data.reshape(self._shape)

    def share_diff(self, other: Blob) -> None:
        """Alias other's diff (same count), as Caffe's Blob::ShareDiff."""
        if other.count != self.count:
            raise ShapeError("cannot share diff of %d elements with a blob of %d"
                             % (other.count, self.count))
        self._diff = None
        self._diff_owner = other

    def __repr__(self) -> str:
        return "Blob(%s)" % ", ".join(str(d) for d in self._shape)
