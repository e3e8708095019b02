"""pycaffe's batch helpers for ``Net``: ``forward_all``, ``forward_backward_all`` and ``_batch``.

pycaffe: python/caffe/pycaffe.py (``_Net_forward_all``, ``_Net_forward_backward_all``,
``_Net_batch``).  Plain functions taking the net first, so ``Net`` can attach them as methods::

    Net.forward_all = forward_all

Semantics are pycaffe's: inputs are cut into batches of the net's batch size (the first axis of
its first blob); the last, short batch is padded with zeros and the padding is dropped from the
results.  Differences, all where pycaffe fails: called without input arrays, both functions
run the net once on what its data layers give (pycaffe dies with ``StopIteration``);
``forward_backward_all`` stacks every requested blob and diff (pycaffe's ``zip`` of the two dicts
leaves the longer one's extra entries as lists), and an input list of unequal lengths is an error.
"""

from __future__ import annotations

from itertools import zip_longest

import numpy as np

from caffelite.errors import ShapeError

__all__ = ["forward_all", "forward_backward_all", "_batch"]


def _batch(net, blobs: dict):
    """Yield ``{name: array}`` batches of the net's batch size from ``{name: array of N items}``.

    The last batch, when N is not a multiple of the batch size, is the remainder followed by
    zeros (float64 zeros, as pycaffe's ``np.zeros``).
    """
    if not blobs:
        return
    lengths = {name: len(value) for name, value in blobs.items()}
    num = next(iter(lengths.values()))
    if len(set(lengths.values())) > 1:
        raise ShapeError("batch inputs differ in length: %s" % lengths)
    batch_size = next(iter(net.blobs.values())).shape[0]
    remainder = num % batch_size
    for b in range(num // batch_size):
        i = b * batch_size
        yield {name: blobs[name][i:i + batch_size] for name in blobs}
    if remainder > 0:
        padded = {}
        for name in blobs:
            value = np.asarray(blobs[name])
            padding = np.zeros((batch_size - remainder,) + value.shape[1:])
            padded[name] = np.concatenate([value[-remainder:], padding])
        yield padded


def forward_all(net, blobs=None, **kwargs) -> dict:
    """Run the net forward over inputs of any length, batch by batch.

    Parameters
    ----------
    blobs : list of str, optional
        Blobs to return besides the net's outputs.
    **kwargs
        Input blob name -> array of N items (N need not be a multiple of the batch size).

    Returns
    -------
    dict
        Blob name -> array of N items (copies of each batch's data, padding dropped).
    """
    names = set(net.outputs + list(blobs or []))
    if not kwargs:  # nothing to batch: one pass on whatever the data layers produce
        outs = net.forward(blobs=blobs)
        return {name: np.asarray(outs[name]).copy() for name in names}
    all_outs: dict = {name: [] for name in names}
    for batch in _batch(net, kwargs):
        outs = net.forward(blobs=blobs, **batch)
        for name, value in outs.items():
            all_outs[name].extend(value.copy())
    for name in all_outs:
        all_outs[name] = np.asarray(all_outs[name])
    pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
    if pad:
        for name in all_outs:
            all_outs[name] = all_outs[name][:-pad]
    return all_outs


def forward_backward_all(net, blobs=None, diffs=None, **kwargs) -> tuple[dict, dict]:
    """Run forward and backward over inputs (and output diffs) of any length, batch by batch.

    Parameters
    ----------
    blobs : list of str, optional
        Blobs whose data to return besides the outputs.
    diffs : list of str, optional
        Blobs whose diff to return besides the inputs'.
    **kwargs
        Input blob name -> array (fed to forward) and output blob name -> array (fed to
        backward as the top diff).  Without either, the net's own inputs / loss weights are used.

    Returns
    -------
    (dict, dict)
        Blob name -> stacked data, and blob name -> stacked diff, padding dropped.
    """
    all_outs: dict = {name: [] for name in set(net.outputs + list(blobs or []))}
    all_diffs: dict = {name: [] for name in set(net.inputs + list(diffs or []))}
    if not kwargs:  # nothing to batch: one pass on whatever the data layers produce
        outs = net.forward(blobs=blobs)
        grads = net.backward(diffs=diffs)
        return ({name: np.asarray(outs[name]).copy() for name in all_outs},
                {name: np.asarray(grads[name]).copy() for name in all_diffs})
    forward_batches = _batch(net, {name: kwargs[name] for name in net.inputs if name in kwargs})
    backward_batches = _batch(net, {name: kwargs[name] for name in net.outputs if name in kwargs})
    for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
        batch_blobs = net.forward(blobs=blobs, **fb)
        batch_diffs = net.backward(diffs=diffs, **bb)
        for name, value in batch_blobs.items():
            all_outs[name].extend(value.copy())
        for name, value in batch_diffs.items():
            all_diffs[name].extend(value.copy())
    for table in (all_outs, all_diffs):
        for name in table:
            table[name] = np.asarray(table[name])
    pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
    if pad > 0:
        for table in (all_outs, all_diffs):
            for name in table:
                table[name] = table[name][:-pad]
    return all_outs, all_diffs
