"""The errors a user can cause, as one small hierarchy.

Where BVLC Caffe aborts on a ``CHECK`` we raise one of these, keeping Caffe's message text and
adding what we know of the place: file, line, column, layer and field.  Each also derives from the
builtin a Python user would expect (``ValueError``, ``OSError``, ``MemoryError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations


class CaffeliteError(Exception):
    """Base of every error caffelite raises for bad input.

    Parameters
    ----------
    message : str
        What went wrong, in Caffe's words where Caffe has words for it.
    file, line, column : optional
        Where in the user's file (1-based line and column).
    layer, layer_type, field : optional
        The layer (name and type) and the field the error is about.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, layer: str | None = None,
                 layer_type: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.layer = layer
        self.layer_type = layer_type
        self.field = field

    def add_context(self, **where) -> CaffeliteError:
        """Fill in place information the raiser did not know; never overwrite what it said."""
        for key, value in where.items():
            if value is not None and getattr(self, key, None) is None:
                setattr(self, key, value)
        return self

    def __str__(self) -> str:
        parts = []
        if self.file:
            loc = str(self.file)
            if self.line is not None:
                loc += ":%d" % self.line
                if self.column is not None:
                    loc += ":%d" % self.column
            parts.append(loc)
        if self.layer is not None:
            parts.append("layer '%s'%s" % (self.layer, " (%s)" % self.layer_type if self.layer_type else ""))
        if self.field:
            parts.append("field '%s'" % self.field)
        return ": ".join(parts + [self.message])

    def __reduce__(self):  # keep keyword context across pickling (multiprocessing, pytest-xdist)
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ProtoError(CaffeliteError, ValueError):
    """A prototxt or binary proto that cannot be parsed (names file, line and column)."""


class FileFormatError(CaffeliteError, ValueError):
    """A file that exists but is truncated, corrupt or of the wrong kind."""


class CaffeFileNotFoundError(CaffeliteError, FileNotFoundError):
    """A file named by the user (net, weights, solver, data source) that does not exist."""


class NetError(CaffeliteError, ValueError):
    """A net that cannot be wired: unknown bottoms, tops produced twice, bad rules, bad sharing."""


class UnknownLayerTypeError(NetError):
    """A layer ``type`` that is not registered."""


class LayerError(CaffeliteError, ValueError):
    """A layer whose configuration, blob counts or shapes Caffe would refuse."""


class ShapeError(LayerError):
    """Bottom shapes that do not fit the layer (Caffe's shape CHECKs)."""


class LabelError(LayerError):
    """Labels outside the valid range, or a label count that does not match the predictions."""


class BackwardError(LayerError):
    """A gradient asked of an input or layer that has none."""


class WeightsError(CaffeliteError, ValueError):
    """Weights that do not fit the net (blob counts or shapes)."""


class BlobMemoryError(CaffeliteError, MemoryError):
    """A blob shape that would need more memory than this machine has (refused before allocating)."""


class SolverError(CaffeliteError, ValueError):
    """A solver configuration or state Caffe would refuse."""


class UnsupportedError(CaffeliteError, NotImplementedError):
    """Something Caffe offers that caffelite deliberately does not (GPU mode, LevelDB)."""


class MissingDependencyError(CaffeliteError, ImportError):
    """An optional package a feature needs is not installed (the message names the pip extra)."""
