"""pycaffe's Python-side Net surface, as the base class of :class:`caffelite.net.Net`.

pycaffe: python/caffe/pycaffe.py attaches these to the C++ Net (``Net.blobs = property(_Net_blobs)``,
``Net.forward = _Net_forward``, ...), and python/caffe/_caffe.cpp adds ``set_input_arrays``.  Here
they are the methods of a base class, so net.py reads as Caffe's net.cpp: construction, the
forward/backward loops, weights.  They use only what Net builds (its blob and layer tables and
``forward_from_to``/``backward_from_to``); nothing here builds or changes the graph.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import zip_longest

import numpy as np

from caffelite.errors import LayerError, NetError, ShapeError

__all__ = ["PycaffeNet"]


class PycaffeNet:
    """pycaffe's ``caffe.Net`` methods over the tables :class:`caffelite.net.Net` builds."""

    # --- pycaffe's properties -------------------------------------------------------------------
    @property
    def blobs(self) -> OrderedDict:
        """Blob name -> Blob, in order of creation (automatic splits included), built as pycaffe's
        ``OrderedDict(zip(self._blob_names, self._blobs))``: a layer's anonymous tops are all named
        ``(automatic)``, so they collapse to one key, at the first one's place, holding the last one."""
        if self._blobs_dict is None:
            self._blobs_dict = OrderedDict(zip(self._blob_names, self._blob_list))
        return self._blobs_dict

    @property
    def params(self) -> OrderedDict:
        """Layer name -> list of parameter Blobs, for layers that have any."""
        if self._params_dict is None:
            self._params_dict = OrderedDict((n, list(layer.blobs))
                                            for n, layer in zip(self._layer_names, self.layers) if layer.blobs)
        return self._params_dict

    @property
    def layer_dict(self) -> OrderedDict:
        return OrderedDict(zip(self._layer_names, self.layers))

    @property
    def inputs(self) -> list[str]:
        """pycaffe's ``[list(self.blobs.keys())[i] for i in self._inputs]``."""
        return self._keys_at(self._input_ids, "input")

    @property
    def outputs(self) -> list[str]:
        """pycaffe's ``[list(self.blobs.keys())[i] for i in self._outputs]``.

        pycaffe indexes the keys of ``blobs`` by blob index, so in a net with several ``(automatic)``
        blobs (which share one key) an output created after the second of them is named by the key
        that follows it, and one past the end of the keys makes pycaffe raise IndexError; both are
        reproduced (the latter as a NetError).  ``output_blob_indices`` and ``blob_names`` give
        Caffe's own outputs, as its C++ tools and solvers use them.
        """
        return self._keys_at(self._output_ids, "output")

    def _keys_at(self, ids: Sequence[int], what: str) -> list[str]:
        keys = list(self.blobs.keys())
        for i in ids:
            if i >= len(keys):
                raise NetError("pycaffe cannot name %s blob #%d '%s': it indexes the %d keys of net.blobs by "
                               "blob index, and the net's %d '(automatic)' blobs share one key (pycaffe "
                               "raises IndexError here; net.%s_blob_indices and net.blob_names give the blobs)"
                               % (what, i, self._blob_names[i], len(keys), self._blob_names.count("(automatic)"),
                                  what), file=self._source)
        return [keys[i] for i in ids]

    @property
    def top_names(self) -> OrderedDict:
        return OrderedDict((n, [self._blob_names[i] for i in ids])
                           for n, ids in zip(self._layer_names, self._top_ids))

    @property
    def bottom_names(self) -> OrderedDict:
        return OrderedDict((n, [self._blob_names[i] for i in ids])
                           for n, ids in zip(self._layer_names, self._bottom_ids))

    @property
    def blob_loss_weights(self) -> OrderedDict:
        """pycaffe's ``OrderedDict(zip(self._blob_names, self._blob_loss_weights))``."""
        return OrderedDict((n, self._blob_loss_weights.get(i, 0.0)) for i, n in enumerate(self._blob_names))

    def _layer_index(self, name: str | None, default: int) -> int:
        if name is None:
            return default
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise NetError("Unknown layer name '%s' (layers: %s)" % (name, ", ".join(self._layer_names)),
                           file=self._source) from None

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's ``Net.set_input_arrays``: serve ``data``/``labels`` from the first layer, a MemoryData.

        ``data``: C-contiguous float32 N x C x H x W; ``labels``: float32 N (or N x 1 x 1 x 1);
        N a multiple of the layer's batch_size.  Caffe: python/caffe/_caffe.cpp.
        """
        layer = self.layers[0] if self.layers else None
        if not hasattr(layer, "set_input_arrays"):
            raise LayerError("set_input_arrays may only be called if the first layer is a MemoryDataLayer")
        layer.set_input_arrays(data, labels)

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.forward``: set inputs from kwargs, run, return the outputs' data."""
        blobs = list(blobs or [])
        start_ind = self._layer_index(start, 0)
        end_ind = self._layer_index(end, len(self.layers) - 1)
        outputs = set([end] + blobs) if end is not None else set(self.outputs + blobs)
        if end is not None:  # pycaffe returns the end layer's name as a blob: use its tops
            outputs.discard(end)
            outputs.update(self.top_names[end])
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise NetError("Input blob arguments do not match net inputs (%s given, net inputs %s)."
                               % (sorted(kwargs), self.inputs), file=self._source)
            for name, value in kwargs.items():
                value = np.asarray(value)
                blob = self.blobs[name]
                if value.ndim == 0 or value.shape[0] != blob.shape[0]:
                    raise ShapeError("Input is not batch sized: '%s' has shape %s, blob is %s"
                                     % (name, value.shape, blob.shape), file=self._source)
                blob.data[...] = value
        self.forward_from_to(start_ind, end_ind)
        return {name: self.blobs[name].data for name in outputs}

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.backward``: set output diffs from kwargs, run, return the inputs' diffs."""
        diffs = list(diffs or [])
        start_ind = self._layer_index(start, len(self.layers) - 1)
        end_ind = self._layer_index(end, 0)
        if end is not None:
            outputs = set(diffs) | set(self.bottom_names[end])
        else:
            outputs = set(self.inputs + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise NetError("Top diff arguments do not match net outputs (%s given, net outputs %s)."
                               % (sorted(kwargs), self.outputs), file=self._source)
            for name, value in kwargs.items():
                value = np.asarray(value)
                blob = self.blobs[name]
                if value.ndim == 0 or value.shape[0] != blob.shape[0]:
                    raise ShapeError("Diff is not batch sized: '%s' has shape %s, blob is %s"
                                     % (name, value.shape, blob.shape), file=self._source)
                blob.diff[...] = value
        self.backward_from_to(start_ind, end_ind)
        return {name: self.blobs[name].diff for name in outputs}

    # --- batch helpers (_Net_forward_all, _Net_forward_backward_all, _Net_batch) -------------------
    # Inputs are cut into batches of the net's batch size (the first axis of its first
    # blob); the last, short batch is padded with zeros and the padding is dropped from the results.
    # Where pycaffe fails, we don't: without input arrays both run the net once on what its data
    # layers give (pycaffe: StopIteration); forward_backward_all stacks every requested blob and diff
    # (pycaffe's zip of the two dicts leaves the longer one's extras as lists); inputs of unequal
    # lengths are an error.
    def forward_all(self, blobs: Sequence[str] | None = None, **kwargs) -> dict:
        """pycaffe's ``Net.forward_all``: forward inputs of any length in batches, stacking outputs.

        ``blobs``: blobs to return besides the outputs; ``kwargs``: input name -> array of N items.
        Returns blob name -> array of N items (copies of each batch's data, padding dropped).
        """
        names = set(self.outputs + list(blobs or []))
        if not kwargs:  # nothing to batch: one pass on whatever the data layers produce
            outs = self.forward(blobs=blobs)
            return {name: np.asarray(outs[name]).copy() for name in names}
        all_outs: dict = {name: [] for name in names}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)
            for name, value in outs.items():
                all_outs[name].extend(value.copy())
        for name in all_outs:
            all_outs[name] = np.asarray(all_outs[name])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            for name in all_outs:
                all_outs[name] = all_outs[name][:-pad]
        return all_outs

    def forward_backward_all(self, blobs: Sequence[str] | None = None, diffs: Sequence[str] | None = None,
                             **kwargs) -> tuple[dict, dict]:
        """pycaffe's ``Net.forward_backward_all``: batched forward and backward, stacking both.

        ``blobs`` / ``diffs``: blobs whose data / diff to return besides the outputs / inputs;
        ``kwargs``: input name -> array (fed to forward) and output name -> array (fed to backward as
        the top diff).  Returns (blob name -> stacked data, blob name -> stacked diff), padding dropped.
        """
        all_outs: dict = {name: [] for name in set(self.outputs + list(blobs or []))}
        all_diffs: dict = {name: [] for name in set(self.inputs + list(diffs or []))}
        if not kwargs:  # nothing to batch: one pass on whatever the data layers produce
            outs = self.forward(blobs=blobs)
            grads = self.backward(diffs=diffs)
            return ({name: np.asarray(outs[name]).copy() for name in all_outs},
                    {name: np.asarray(grads[name]).copy() for name in all_diffs})
        forward_batches = self._batch({name: kwargs[name] for name in self.inputs if name in kwargs})
        backward_batches = self._batch({name: kwargs[name] for name in self.outputs if name in kwargs})
        for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
            batch_blobs = self.forward(blobs=blobs, **fb)
            batch_diffs = self.backward(diffs=diffs, **bb)
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

    def _batch(self, blobs: dict):
        """pycaffe's ``Net._batch``: yield ``{name: array}`` batches of the net's batch size.

        The last batch, when N is not a multiple of the batch size, is the remainder followed by
        zeros (float64 zeros, as pycaffe's ``np.zeros``).
        """
        if not blobs:
            return
        lengths = {name: len(value) for name, value in blobs.items()}
        num = next(iter(lengths.values()))
        if len(set(lengths.values())) > 1:
            raise ShapeError("batch inputs differ in length: %s" % lengths)
        batch_size = next(iter(self.blobs.values())).shape[0]
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
