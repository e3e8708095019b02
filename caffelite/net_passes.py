"""The net's pure passes and wiring rules: NetParameter in, NetParameter (or a verdict) out.

Caffe: src/caffe/net.cpp (``FilterNet``, ``StateMeetsRule``, ``AppendTop``, ``AppendBottom``),
src/caffe/util/insert_splits.cpp (``InsertSplits``, ``SplitLayerName``, ``SplitBlobName``).

One home for these rules: ``Net`` builds with them, the checker reports with them (it keeps going
where the net raises, so each rule also exists as a predicate or a message), and the drawing
filters with them.  Nothing here sets a layer up or touches a blob.
"""

from __future__ import annotations

from caffelite.errors import NetError
from caffelite.proto import caffe_pb2
from caffelite.suggest import did_you_mean

__all__ = [
    "state_meets_rule", "layer_included", "filter_net", "INCLUDE_AND_EXCLUDE",
    "split_layer_name", "split_blob_name", "insert_splits",
    "is_in_place", "num_top_blobs", "propagate_down_count_error", "unknown_bottom_message",
    "duplicate_top_message",
]

INCLUDE_AND_EXCLUDE = "Specify either include rules or exclude rules; not both."


# --- FilterNet ---------------------------------------------------------------------------------
def set_state(state, phase: int, stages=None, level: int | None = None):
    """Put a NetState in (phase, stages, level) as the caller asks: ``stages`` None keeps the state's
    stages, ``level`` None keeps its level.  Returns ``state``."""
    state.phase = phase
    if stages is not None:
        del state.stage[:]
        state.stage.extend(stages)
    if level is not None:
        state.level = int(level)
    return state


def state_meets_rule(state, rule) -> bool:
    """Caffe's Net::StateMeetsRule: phase, min/max level, all stages, no not_stage."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def layer_included(state, layer) -> bool:
    """FilterNet's verdict for one LayerParameter under ``state``.

    No include rules: kept unless an exclude rule is met.  Include rules: kept only if one is met
    (exclude rules are then not looked at; ``filter_net`` refuses a layer that has both).
    """
    if len(layer.include):
        return any(state_meets_rule(state, rule) for rule in layer.include)
    return not any(state_meets_rule(state, rule) for rule in layer.exclude)


def filter_net(param, source: str | None = None):
    """Caffe's Net::FilterNet: keep the layers whose include/exclude rules the NetState meets."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if len(layer.include) and len(layer.exclude):
            raise NetError(INCLUDE_AND_EXCLUDE, file=source, layer=layer.name, layer_type=layer.type,
                           field="include")
        if layer_included(param.state, layer):
            out.layer.add().CopyFrom(layer)
    return out


# --- InsertSplits ------------------------------------------------------------------------------
def split_layer_name(layer_name: str, blob_name: str, blob_idx: int) -> str:
    """Caffe's SplitLayerName: ``<blob>_<producer>_<top index>_split``."""
    return "%s_%s_%d_split" % (blob_name, layer_name, blob_idx)


def split_blob_name(layer_name: str, blob_name: str, blob_idx: int, split_idx: int) -> str:
    """Caffe's SplitBlobName: ``<blob>_<producer>_<top index>_split_<k>``."""
    return "%s_%s_%d_split_%d" % (blob_name, layer_name, blob_idx, split_idx)


def insert_splits(param, source: str | None = None):
    """Caffe's InsertSplits: a Split layer for every top consumed more than once.

    A top with an explicit non-zero ``loss_weight`` counts as one more consumer, and the
    split's first output then carries that weight.
    """
    last_top = {}  # blob name -> (layer index, top index) of its latest producer
    source_of = {}  # (layer, bottom index) -> producing (layer, top index)
    consumers = {}  # (layer, top index) -> count
    loss_weight = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_top:
                raise NetError(unknown_bottom_message(name, layer.name, j) + "." + did_you_mean(name, last_top),
                               file=source, layer=layer.name, layer_type=layer.type, field="bottom[%d]" % j)
            source_of[(i, j)] = last_top[name]
            consumers[last_top[name]] = consumers.get(last_top[name], 0) + 1
        for j, name in enumerate(layer.top):
            last_top[name] = (i, j)
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            idx = last_top[layer.top[j]]
            loss_weight[idx] = layer.loss_weight[j]
            if loss_weight[idx]:
                consumers[idx] = consumers.get(idx, 0) + 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    next_split = {}
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j in range(len(new.bottom)):
            idx = source_of[(i, j)]
            if consumers.get(idx, 0) > 1:
                k = next_split.get(idx, 0)
                next_split[idx] = k + 1
                new.bottom[j] = split_blob_name(param.layer[idx[0]].name, new.bottom[j], idx[1], k)
        for j, name in enumerate(new.top):
            count = consumers.get((i, j), 0)
            if count > 1:
                weight = loss_weight.get((i, j), 0.0)
                split = out.layer.add()
                split.name = split_layer_name(layer.name, name, j)
                split.type = "Split"
                split.bottom.append(name)
                for k in range(count):
                    split.top.append(split_blob_name(layer.name, name, j, k))
                    split.loss_weight.append(weight if (k == 0 and weight) else 0.0)
                if weight:
                    del new.loss_weight[:]
                    next_split[(i, j)] = next_split.get((i, j), 0) + 1
    return out


# --- AppendBottom / AppendTop wiring rules ---------------------------------------------------------
def is_in_place(layer_param, top_id: int) -> bool:
    """Caffe's AppendTop: top ``top_id`` is computed in place when it names the bottom at the same index."""
    return top_id < len(layer_param.bottom) and layer_param.bottom[top_id] == layer_param.top[top_id]


def num_top_blobs(layer, num_named: int) -> int:
    """How many tops the layer gets: the named ones, plus anonymous ones for ``auto_top_blobs`` layers.

    Caffe's Net::Init: a layer with AutoTopBlobs() gets unnamed tops up to
    max(MinTopBlobs(), ExactNumTopBlobs()).
    """
    if not layer.auto_top_blobs():
        return num_named
    return max(num_named, layer.min_top_blobs(), layer.exact_num_top_blobs())


def propagate_down_count_error(layer_param) -> str | None:
    """Caffe's CHECK in Net::Init: propagate_down given 0 or bottom_size times; the message, or None."""
    n_pd, n_bottom = len(layer_param.propagate_down), len(layer_param.bottom)
    if n_pd and n_pd != n_bottom:
        return ("propagate_down param must be specified either 0 or bottom_size times "
                "(%d given, %d bottoms)" % (n_pd, n_bottom))
    return None


def unknown_bottom_message(blob_name: str, layer_name: str, bottom_id: int) -> str:
    """Caffe's AppendBottom, for a bottom no earlier layer produces (or that a split already consumed)."""
    return "Unknown bottom blob '%s' (layer '%s', bottom index %d)" % (blob_name, layer_name, bottom_id)


def duplicate_top_message(blob_name: str) -> str:
    """Caffe's AppendTop, for a top that is not in place and names a blob that already exists."""
    return "Top blob '%s' produced by multiple sources." % blob_name
