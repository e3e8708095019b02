"""HDF5 weights and solver states in Caffe's layout (needs the optional ``h5py``: ``caffelite[hdf5]``).

Caffe: src/caffe/net.cpp (``ToHDF5``, ``CopyTrainedLayersFromHDF5``),
src/caffe/solvers/sgd_solver.cpp (``SnapshotSolverStateToHDF5``), src/caffe/util/hdf5.cpp.

Weights: ``/data/<layer>/<i>`` float datasets (a group per layer, empty for layers without
parameters; a shared parameter only under its owner), and ``/diff/<layer>/<i>`` when diffs are
written.  Solver state: ``iter``, ``current_step`` (1-element int32 datasets), ``learned_net``
(a NUL-terminated fixed-length string) and ``/history/<i>``.  Files are written to a temporary
name and renamed, so an interrupted snapshot never leaves a torn file.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from caffelite.errors import CaffeFileNotFoundError, FileFormatError, UnsupportedError, WeightsError
from caffelite.protoio import create_temp_beside

__all__ = ["save_weights_hdf5", "load_weights_hdf5", "save_solver_state_hdf5", "load_solver_state_hdf5", "is_hdf5"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise UnsupportedError("HDF5 files need the optional package h5py: pip install 'caffelite[hdf5]' "
                               "(or pip install h5py)") from None
    return h5py


def is_hdf5(path: str) -> bool:
    """Whether the file starts with the HDF5 signature (Caffe's H5Fis_hdf5, for files at offset 0)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


@contextmanager
def _atomic_h5(path: str):
    """An h5py File on a temporary name beside ``path``, renamed into place on success."""
    h5py = _h5py()
    fd, tmp = create_temp_beside(path)  # the mode open(path, "wb") would give, not mkstemp's 0600
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _open(path: str, what: str):
    h5py = _h5py()
    if not os.path.exists(path):
        raise CaffeFileNotFoundError("%s file not found: %s" % (what, os.path.abspath(path)), file=str(path))
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FileFormatError("cannot open %s as HDF5: %s" % (path, e), file=str(path)) from None


def save_weights_hdf5(path: str, layers, write_diff: bool = False) -> None:
    """Caffe's Net::ToHDF5.

    ``layers``: per layer in net order, ``(name, blobs, owned)``: its parameter Blobs, and per blob
    whether it owns its data (False for a named share of an earlier layer's parameter, whose data
    is written only under its owner; its diff is written under every layer).
    """
    path = os.fspath(path)
    with _atomic_h5(path) as f:
        data = f.create_group("data")
        diff = f.create_group("diff") if write_diff else None
        for name, blobs, owned in layers:
            group = data.create_group(name)
            dgroup = diff.create_group(name) if diff is not None else None
            for j, blob in enumerate(blobs):
                if owned[j]:
                    group.create_dataset(str(j), data=np.asarray(blob.data, dtype=np.float32))
                if dgroup is not None:
                    dgroup.create_dataset(str(j), data=np.asarray(blob.diff, dtype=np.float32))


def load_weights_hdf5(path: str, layers) -> None:
    """Caffe's Net::CopyTrainedLayersFromHDF5: copy by layer name; shapes must match exactly.

    ``layers``: ``(name, blobs, owned)`` per layer, as for :func:`save_weights_hdf5`; a blob that is not
    its own owner may be absent from the file (its owner brings the data).
    """
    path = os.fspath(path)
    index = {name: (blobs, owned) for name, blobs, owned in layers}
    with _open(path, "weights (HDF5)") as f:
        if "data" not in f:
            raise FileFormatError("Error reading weights from %s: no /data group" % path, file=path)
        for name, group in f["data"].items():
            if name not in index:
                continue  # Caffe: "Ignoring source layer"
            target, owned = index[name]
            if len(group) > len(target):
                raise WeightsError("Incompatible number of blobs for layer %s (net has %d, weights have %d)"
                                   % (name, len(target), len(group)), file=path, layer=name)
            for j, blob in enumerate(target):
                if str(j) not in group:
                    if owned[j]:
                        raise WeightsError("Incompatible number of blobs for layer %s (no dataset %d)"
                                           % (name, j), file=path, layer=name)
                    continue  # a shared parameter: its owner brings it
                values = np.asarray(group[str(j)][()])
                if values.dtype.kind not in "fiu":
                    raise FileFormatError("dataset /data/%s/%d is %s, not numbers" % (name, j, values.dtype),
                                          file=path, layer=name)
                if tuple(values.shape) != tuple(blob.shape):
                    raise WeightsError("Cannot load blob from hdf5; shape mismatch. Source shape is %s (%d) "
                                       "target shape is %s" % (" ".join(map(str, values.shape)), values.size,
                                                               blob.shape_string()), file=path, layer=name)
                blob.data[...] = values


def save_solver_state_hdf5(path: str, it: int, learned_net: str, current_step: int, history) -> None:
    """Caffe's SGDSolver::SnapshotSolverStateToHDF5."""
    h5py = _h5py()
    with _atomic_h5(os.fspath(path)) as f:
        f.create_dataset("iter", data=np.array([it], dtype=np.int32))
        raw = learned_net.encode("utf-8") + b"\0"  # H5LTmake_dataset_string: NUL-terminated, C string size
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(len(raw))
        tid.set_strpad(h5py.h5t.STR_NULLTERM)
        f.create_dataset("learned_net", shape=(), dtype=h5py.Datatype(tid))
        f["learned_net"][()] = np.array(raw, dtype="S%d" % len(raw))
        f.create_dataset("current_step", data=np.array([current_step], dtype=np.int32))
        group = f.create_group("history")
        for i, h in enumerate(history):
            group.create_dataset(str(i), data=np.asarray(h, dtype=np.float32))


def load_solver_state_hdf5(path: str):
    """Caffe's SGDSolver::RestoreSolverStateFromHDF5: (iter, learned_net or None, current_step, history)."""
    path = os.fspath(path)
    with _open(path, "solver state (HDF5)") as f:
        try:
            it = int(np.asarray(f["iter"][()]).ravel()[0])
            current_step = int(np.asarray(f["current_step"][()]).ravel()[0]) if "current_step" in f else 0
            learned_net = None
            if "learned_net" in f:
                raw = f["learned_net"][()]
                raw = raw if isinstance(raw, bytes) else np.asarray(raw).ravel()[0]
                learned_net = (raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)).rstrip("\0")
            group = f["history"]
            history = [np.asarray(group[str(i)][()], dtype=np.float32) for i in range(len(group))]
        except (KeyError, IndexError) as e:
            raise FileFormatError("not a Caffe HDF5 solver state (%s)" % e, file=path) from None
    return it, learned_net, current_step, history
