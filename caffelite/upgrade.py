"""Upgrades of old Caffe formats to the current one, as pure in-place passes over protos.

Caffe: src/caffe/util/upgrade_proto.cpp.  Each upgrade is a ``*_needs_*`` test and an in-place
``upgrade_*`` function on a NetParameter or SolverParameter, so each can be tested alone:

========================  ==============================================================
V0 → V1                   ``layers { layer { type: "conv" } }`` (padding layers folded in)
data transformation       scale / mean_file / crop_size / mirror → ``transform_param``
V1 → V2                   ``layers { type: CONVOLUTION }`` → ``layer { type: "Convolution" }``
net inputs                ``input`` + ``input_shape`` / ``input_dim`` → an ``Input`` layer
BatchNorm                 three ``param`` specs → their ``lr_mult`` / ``decay_mult`` set to 0
solver type               ``solver_type: SGD`` → ``type: "SGD"``
========================  ==============================================================

``upgrade_net_as_needed`` and ``upgrade_solver_as_needed`` run them in Caffe's order, and the
readers ``read_net_param`` / ``read_net_param_binary`` / ``read_solver_param`` (Caffe's
``Read*ParamsFrom*FileOrDie``) parse a file and upgrade it.  Caffe logs
what it upgrades; so do we, on the ``caffelite.upgrade`` logger (INFO; WARNING for settings the
upgrade has to drop).  Where Caffe aborts we raise a :mod:`caffelite.errors` type naming the file.
"""

from __future__ import annotations

import logging
import os

from caffelite.errors import NetError, ProtoError, SolverError, UnknownLayerTypeError
from caffelite.proto import caffe_pb2
from caffelite.protoio import (
    decode_text,
    looks_binary,
    parse_binary,
    parse_text,
    read_binary_proto,
    read_bytes,
    read_text,
    read_text_proto,
    write_binary_proto,
    write_text_proto,
)

logger = logging.getLogger("caffelite.upgrade")

V1 = caffe_pb2.V1LayerParameter

# --- V0 → V1 ---------------------------------------------------------------------------------
V0_LAYER_TYPES = {
    "accuracy": V1.ACCURACY,
    "bnll": V1.BNLL,
    "concat": V1.CONCAT,
    "conv": V1.CONVOLUTION,
    "data": V1.DATA,
    "dropout": V1.DROPOUT,
    "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN,
    "hdf5_data": V1.HDF5_DATA,
    "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL,
    "images": V1.IMAGE_DATA,
    "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT,
    "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS,
    "pool": V1.POOLING,
    "relu": V1.RELU,
    "sigmoid": V1.SIGMOID,
    "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS,
    "split": V1.SPLIT,
    "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}

# V0 field -> {V0 layer type: (V1 sub-message, field there)}; a V0 field set on a layer type not
# listed is dropped with a warning, as Caffe does ("Unknown parameter ... for layer type ...").
_V0_FIELDS = {
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"), "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"), "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "batchsize": {"data": ("data_param", "batch_size"), "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": ("hdf5_output_param", None)},
}
# V0 transformation fields go to transform_param whatever the layer type (as in Caffe).
_V0_TRANSFORM_FIELDS = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size",
                        "mirror": "mirror"}
# V0 fields Caffe's upgrader never reads (new_num, new_channels): dropped with a warning here.
_V0_IGNORED_FIELDS = ("new_num", "new_channels")


def _where(source):
    return str(source) if source is not None else None


def _label(source):
    return str(source) if source is not None else "<proto>"


def net_needs_v0_to_v1_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when any ``layers`` entry wraps a V0 ``layer`` (Caffe's NetNeedsV0ToV1Upgrade)."""
    return any(conn.HasField("layer") for conn in param.layers)


def upgrade_v0_padding_layers(param: caffe_pb2.NetParameter, source=None) -> None:
    """Remove V0 ``padding`` layers, moving their ``pad`` into the conv/pool layer they feed.

    Caffe: UpgradeV0PaddingLayers.  Each padding layer must have one bottom and one top and feed
    only single-bottom ``conv`` or ``pool`` layers, whose bottom is rewired to the padding layer's.
    """
    where = _where(source)
    original = list(param.layers)
    kept = []
    last_top = {name: -1 for name in param.input}  # blob -> index of the layer that wrote it last
    for i, conn in enumerate(original):
        v0 = conn.layer
        if v0.type != "padding":
            kept.append(caffe_pb2.V1LayerParameter())
            kept[-1].CopyFrom(conn)
        here = {"file": where, "layer": v0.name or None, "layer_type": v0.type or None}
        for j, blob in enumerate(conn.bottom):
            if blob not in last_top:
                raise NetError(f"Unknown blob input {blob} to layer {j}", field="bottom", **here)
            src = last_top[blob]
            if src == -1 or original[src].layer.type != "padding":
                continue
            pad_layer = original[src]
            pad_here = {"file": where, "layer": pad_layer.layer.name or None, "layer_type": "padding"}
            if v0.type not in ("conv", "pool"):
                raise NetError("Padding layer input to non-convolutional / non-pooling layer type "
                               f"{v0.type}", **here)
            if len(conn.bottom) != 1:
                raise NetError("Conv Layer takes a single blob as input. "
                               f"(it has {len(conn.bottom)} bottoms)", **here)
            if len(pad_layer.bottom) != 1:
                raise NetError("Padding Layer takes a single blob as input. "
                               f"(it has {len(pad_layer.bottom)} bottoms)", **pad_here)
            if len(pad_layer.top) != 1:
                raise NetError("Padding Layer produces a single blob as output. "
                               f"(it has {len(pad_layer.top)} tops)", **pad_here)
            kept[-1].layer.pad = pad_layer.layer.pad
            kept[-1].bottom[j] = pad_layer.bottom[0]
        for blob in conn.top:
            last_top[blob] = i
    del param.layers[:]
    param.layers.extend(kept)


def upgrade_v0_layer_type(type_name: str, source=None, layer=None) -> int:
    """The V1 enum value of a V0 type string (Caffe's UpgradeV0LayerType)."""
    try:
        return V0_LAYER_TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(V0_LAYER_TYPES))
        raise UnknownLayerTypeError(f"Unknown layer name: {type_name} (known V0 layer types: {known})",
                                    file=_where(source), layer=layer, layer_type=type_name,
                                    field="type") from None


def upgrade_v0_layer(conn: caffe_pb2.V1LayerParameter,
                     source=None) -> tuple[caffe_pb2.V1LayerParameter, bool]:
    """One V0 layer (inside its V1 wrapper) as a V1 layer; also whether nothing had to be dropped.

    Caffe: UpgradeV0LayerParameter.  Only ``bottom``/``top`` of the wrapper are kept; everything
    else comes from the V0 ``layer``.
    """
    out = caffe_pb2.V1LayerParameter()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not conn.HasField("layer"):
        return out, True
    v0 = conn.layer
    name = v0.name if v0.HasField("name") else None
    kind = v0.type
    compatible = True
    if v0.HasField("name"):
        out.name = v0.name
    if v0.HasField("type"):
        out.type = upgrade_v0_layer_type(kind, source, name)
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in _V0_FIELDS.items():
        if not v0.HasField(field):
            continue
        if kind not in targets:
            logger.warning("%s: layer %s: Unknown parameter %s for layer type %s (dropped)",
                           _label(source), name, field, kind)
            compatible = False
            continue
        sub_name, target = targets[kind]
        sub = getattr(out, sub_name)
        value = getattr(v0, field)
        if target is None:  # a whole sub-message (hdf5_output_param)
            sub.CopyFrom(value)
        elif field in ("weight_filler", "bias_filler"):
            getattr(sub, target).CopyFrom(value)
        elif field == "pool":  # V0 and V1 pooling enums share names, not necessarily numbers
            sub.pool = caffe_pb2.PoolingParameter.PoolMethod.Value(
                caffe_pb2.V0LayerParameter.PoolMethod.Name(value))
        elif isinstance(getattr(sub, target), (int, float, str, bool)):
            setattr(sub, target, value)
        else:  # repeated in ConvolutionParameter (pad, kernel_size, stride)
            getattr(sub, target).append(value)
    for field, target in _V0_TRANSFORM_FIELDS.items():
        if v0.HasField(field):
            setattr(out.transform_param, target, getattr(v0, field))
    for field in _V0_IGNORED_FIELDS:
        if v0.HasField(field):
            logger.warning("%s: layer %s: V0 parameter %s is not upgraded by Caffe (dropped)",
                           _label(source), name, field)
            compatible = False
    return out, compatible


def upgrade_v0_net(param: caffe_pb2.NetParameter, source=None) -> bool:
    """Upgrade a V0 net to V1 in place; returns whether nothing had to be dropped.

    Caffe: UpgradeV0Net.  As in Caffe, only ``name``, the layers, ``input``, ``input_dim`` and
    ``force_backward`` survive; padding layers are folded into the layers they feed first.
    """
    padded = caffe_pb2.NetParameter()
    padded.CopyFrom(param)
    upgrade_v0_padding_layers(padded, source)
    compatible = True
    layers = []
    for conn in padded.layers:
        layer, ok = upgrade_v0_layer(conn, source)
        layers.append(layer)
        compatible &= ok
    param.Clear()
    if padded.HasField("name"):
        param.name = padded.name
    param.layers.extend(layers)
    param.input.extend(padded.input)
    param.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        param.force_backward = padded.force_backward
    return compatible


# --- data transformation ---------------------------------------------------------------------
_DATA_PARAMS = {V1.DATA: "data_param", V1.IMAGE_DATA: "image_data_param",
                V1.WINDOW_DATA: "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def net_needs_data_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when a V1 Data/ImageData/WindowData layer sets a transformation field in its own
    parameters (Caffe's NetNeedsDataUpgrade)."""
    for layer in param.layers:
        sub = _DATA_PARAMS.get(layer.type)
        if sub and any(getattr(layer, sub).HasField(f) for f in _TRANSFORM_FIELDS):
            return True
    return False


def upgrade_net_data_transformation(param: caffe_pb2.NetParameter) -> None:
    """Move scale / mean_file / crop_size / mirror of V1 data layers into ``transform_param``.

    Caffe: UpgradeNetDataTransformation (its CONVERT_LAYER_TRANSFORM_PARAM macro).
    """
    for layer in param.layers:
        sub_name = _DATA_PARAMS.get(layer.type)
        if not sub_name:
            continue
        sub = getattr(layer, sub_name)
        for field in _TRANSFORM_FIELDS:
            if sub.HasField(field):
                setattr(layer.transform_param, field, getattr(sub, field))
                sub.ClearField(field)


# --- V1 → V2 ---------------------------------------------------------------------------------
V1_LAYER_TYPES = {
    V1.NONE: "",
    V1.ABSVAL: "AbsVal",
    V1.ACCURACY: "Accuracy",
    V1.ARGMAX: "ArgMax",
    V1.BNLL: "BNLL",
    V1.CONCAT: "Concat",
    V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    V1.CONVOLUTION: "Convolution",
    V1.DECONVOLUTION: "Deconvolution",
    V1.DATA: "Data",
    V1.DROPOUT: "Dropout",
    V1.DUMMY_DATA: "DummyData",
    V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    V1.ELTWISE: "Eltwise",
    V1.EXP: "Exp",
    V1.FLATTEN: "Flatten",
    V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output",
    V1.HINGE_LOSS: "HingeLoss",
    V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData",
    V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct",
    V1.LRN: "LRN",
    V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    V1.MVN: "MVN",
    V1.POOLING: "Pooling",
    V1.POWER: "Power",
    V1.RELU: "ReLU",
    V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax",
    V1.SOFTMAX_LOSS: "SoftmaxWithLoss",
    V1.SPLIT: "Split",
    V1.SLICE: "Slice",
    V1.TANH: "TanH",
    V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
}

# The V1 sub-messages copied unchanged into the V2 layer (every *_param of V1LayerParameter).
V1_COPIED_PARAMS = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param",
    "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param", "pooling_param",
    "power_param", "relu_param", "sigmoid_param", "softmax_param", "slice_param", "tanh_param",
    "threshold_param", "window_data_param", "transform_param", "loss_param",
)


def net_needs_v1_to_v2_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when the net uses the V1 ``layers`` field (Caffe's NetNeedsV1ToV2Upgrade)."""
    return len(param.layers) > 0


def upgrade_v1_layer_type(value: int, source=None, layer=None) -> str:
    """The V2 type string of a V1 enum value (Caffe's UpgradeV1LayerType)."""
    try:
        return V1_LAYER_TYPES[value]
    except KeyError:
        raise UnknownLayerTypeError(f"Unknown V1LayerParameter layer type: {value}",
                                    file=_where(source), layer=layer, field="type") from None


def _param_spec(layer: caffe_pb2.LayerParameter, i: int) -> caffe_pb2.ParamSpec:
    while len(layer.param) <= i:
        layer.param.add()
    return layer.param[i]


def upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter, source=None) -> tuple[caffe_pb2.LayerParameter, bool]:
    """One V1 layer as a V2 layer; also whether nothing had to be dropped.

    Caffe: UpgradeV1LayerParameter.  ``blobs_lr``, ``weight_decay``, the sharing names ``param``
    and ``blob_share_mode`` become ``param { lr_mult decay_mult name share_mode }``, one spec per
    parameter blob.
    """
    out = caffe_pb2.LayerParameter()
    name = v1.name if v1.HasField("name") else None
    compatible = True
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        out.type = upgrade_v1_layer_type(v1.type, source, name)
    out.blobs.extend(v1.blobs)
    for i, share_name in enumerate(v1.param):
        _param_spec(out, i).name = share_name
    for i, mode in enumerate(v1.blob_share_mode):
        _param_spec(out, i).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(
            V1.DimCheckMode.Name(mode))
    for i, lr in enumerate(v1.blobs_lr):
        _param_spec(out, i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        _param_spec(out, i).decay_mult = decay
    out.loss_weight.extend(v1.loss_weight)
    for field in V1_COPIED_PARAMS:
        if v1.HasField(field):
            getattr(out, field).CopyFrom(getattr(v1, field))
    if v1.HasField("layer"):
        logger.warning("%s: layer %s: Input NetParameter has V0 layer -- ignoring.", _label(source), name)
        compatible = False
    return out, compatible


def upgrade_v1_net(param: caffe_pb2.NetParameter, source=None) -> bool:
    """Upgrade a V1 net (``layers``) to V2 (``layer``) in place; whether nothing was dropped.

    Caffe: UpgradeV1Net.  As in Caffe, a net that has both ``layers`` and ``layer`` keeps only the
    upgraded ``layers`` (with a warning).
    """
    compatible = True
    if len(param.layer):
        logger.warning("%s: Input NetParameter to be upgraded already specifies 'layer' fields; "
                       "these will be ignored for the upgrade.", _label(source))
        compatible = False
    upgraded = []
    for i, v1 in enumerate(param.layers):
        layer, ok = upgrade_v1_layer(v1, source)
        if not ok:
            logger.warning("%s: Upgrade of input layer %d failed.", _label(source), i)
            compatible = False
        upgraded.append(layer)
    param.ClearField("layers")
    param.ClearField("layer")
    param.layer.extend(upgraded)
    return compatible


# --- net inputs ------------------------------------------------------------------------------
def net_needs_input_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when the net declares net-level ``input`` blobs (Caffe's NetNeedsInputUpgrade)."""
    return len(param.input) > 0


def upgrade_net_input(param: caffe_pb2.NetParameter, source=None) -> None:
    """Turn ``input`` + ``input_shape`` / ``input_dim`` into one ``Input`` layer named "input",
    placed first; then clear the net-level input fields.

    Caffe: UpgradeNetInput (and the input CHECKs of Caffe's older Net::Init).  Inputs without any
    shape (as a .caffemodel stores them) are simply dropped.
    """
    where = _where(source)
    n_in, n_shape, n_dim = len(param.input), len(param.input_shape), len(param.input_dim)
    if n_shape and n_dim:
        raise NetError("Must specify either input_shape OR deprecated input_dim, not both. "
                       f"({n_shape} input_shape, {n_dim} input_dim)", file=where, field="input_dim")
    if n_dim and n_dim != 4 * n_in:
        raise NetError(f"Incorrect input blob dimension specifications: {n_dim} input_dim values for "
                       f"{n_in} inputs (4 per input expected)", file=where, field="input_dim")
    if n_shape and n_shape != n_in:
        raise NetError(f"Exactly one input_shape must be specified per input: {n_shape} input_shape "
                       f"for {n_in} inputs", file=where, field="input_shape")
    if n_shape or n_dim:
        rest = list(param.layer)
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        layer.top.extend(param.input)
        if n_shape:
            layer.input_param.shape.extend(param.input_shape)
        else:
            for i in range(n_in):
                layer.input_param.shape.add().dim.extend(param.input_dim[4 * i:4 * i + 4])
        param.ClearField("layer")
        param.layer.append(layer)  # first, so the inputs exist before any layer reads them
        param.layer.extend(rest)
    param.ClearField("input")
    param.ClearField("input_shape")
    param.ClearField("input_dim")


# --- BatchNorm -------------------------------------------------------------------------------
def net_needs_batch_norm_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when a BatchNorm layer declares three ``param`` specs, as the first BatchNorm
    definition required (Caffe's NetNeedsBatchNormUpgrade)."""
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in param.layer)


def upgrade_net_batch_norm(param: caffe_pb2.NetParameter) -> bool:
    """Set ``lr_mult`` and ``decay_mult`` to 0 in the three param specs of each such BatchNorm
    layer, keeping their names (sharing) intact; returns whether any value changed.

    Caffe: UpgradeNetBatchNorm (master, after BVLC/caffe#5184).  The statistics are computed,
    never learned, so BatchNorm refuses a non-zero ``lr_mult``.
    """
    changed = False
    for layer in param.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                for field in ("lr_mult", "decay_mult"):
                    if not spec.HasField(field) or getattr(spec, field) != 0.0:
                        setattr(spec, field, 0.0)
                        changed = True
    return changed


# --- the net entry points --------------------------------------------------------------------
def net_needs_upgrade(param: caffe_pb2.NetParameter) -> bool:
    """True when any of the net upgrades applies."""
    return (net_needs_v0_to_v1_upgrade(param) or net_needs_data_upgrade(param)
            or net_needs_v1_to_v2_upgrade(param) or net_needs_input_upgrade(param)
            or net_needs_batch_norm_upgrade(param))


def upgrade_net_as_needed(param: caffe_pb2.NetParameter, source=None) -> bool:
    """Bring a NetParameter to the current format in place; returns whether anything changed.

    Caffe: UpgradeNetAsNeeded — V0 → V1, data transformation, V1 → V2, net inputs, BatchNorm,
    in that order.  Settings an upgrade has to drop are logged as warnings (Caffe's "continuing
    anyway"); impossible nets raise NetError.
    """
    changed = False
    if net_needs_v0_to_v1_upgrade(param):
        logger.info("Attempting to upgrade input file specified using deprecated V0LayerParameter: %s",
                    source)
        if upgrade_v0_net(param, source):
            logger.info("Successfully upgraded file specified using deprecated V0LayerParameter")
        else:
            logger.warning("%s: had one or more problems upgrading V0NetParameter to NetParameter "
                           "(see above); continuing anyway.", _label(source))
        changed = True
    if net_needs_data_upgrade(param):
        logger.info("Attempting to upgrade input file specified using deprecated transformation "
                    "parameters: %s", source)
        upgrade_net_data_transformation(param)
        logger.info("Successfully upgraded file specified using deprecated data transformation "
                    "parameters.")
        changed = True
    if net_needs_v1_to_v2_upgrade(param):
        logger.info("Attempting to upgrade input file specified using deprecated V1LayerParameter: %s",
                    source)
        if upgrade_v1_net(param, source):
            logger.info("Successfully upgraded file specified using deprecated V1LayerParameter")
        else:
            logger.warning("%s: had one or more problems upgrading V1LayerParameter (see above); "
                           "continuing anyway.", _label(source))
        changed = True
    if net_needs_input_upgrade(param):
        logger.info("Attempting to upgrade input file specified using deprecated input fields: %s",
                    source)
        upgrade_net_input(param, source)
        logger.info("Successfully upgraded file specified using deprecated input fields.")
        changed = True
    if net_needs_batch_norm_upgrade(param):
        logger.info("Attempting to upgrade batch norm layers using deprecated params: %s", source)
        changed |= upgrade_net_batch_norm(param)
        logger.info("Successfully upgraded batch norm layers using deprecated params.")
    return changed


# --- solvers ---------------------------------------------------------------------------------
SOLVER_TYPES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}


def solver_needs_type_upgrade(param: caffe_pb2.SolverParameter) -> bool:
    """True when the deprecated ``solver_type`` enum is set (Caffe's SolverNeedsTypeUpgrade)."""
    return param.HasField("solver_type")


def upgrade_solver_type(param: caffe_pb2.SolverParameter, source=None) -> bool:
    """``solver_type: ENUM`` → ``type: "Name"`` in place; False when there was nothing to do.

    Caffe: UpgradeSolverType.  Setting both fields is refused, as in Caffe, even when they agree.
    """
    if param.HasField("solver_type") and param.HasField("type"):
        old = caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)
        raise SolverError("Failed to upgrade solver: old solver_type field (enum) and new type field "
                          "(string) cannot be both specified in solver proto text. "
                          f"(solver_type: {old}, type: {param.type!r})", file=_where(source),
                          field="solver_type")
    if not param.HasField("solver_type"):
        logger.warning("%s: solver type already up to date.", _label(source))
        return False
    try:
        param.type = SOLVER_TYPES[param.solver_type]
    except KeyError:
        raise SolverError(f"Unknown SolverParameter solver_type: {param.solver_type}",
                          file=_where(source), field="solver_type") from None
    param.ClearField("solver_type")
    return True


def upgrade_solver_as_needed(param: caffe_pb2.SolverParameter, source=None) -> bool:
    """Bring a SolverParameter to the current format in place; returns whether anything changed.

    Caffe: UpgradeSolverAsNeeded (only ``solver_type``; nets given inline are upgraded when the
    solver builds them, see :func:`upgrade_solver_nets`).
    """
    if not solver_needs_type_upgrade(param):
        return False
    logger.info("Attempting to upgrade input file specified using deprecated 'solver_type' field "
                "(enum)': %s", source)
    changed = upgrade_solver_type(param, source)
    logger.info("Successfully upgraded file specified using deprecated 'solver_type' field (enum) "
                "to 'type' field (string).")
    return changed


def upgrade_solver_nets(param: caffe_pb2.SolverParameter, source=None) -> bool:
    """Upgrade the nets a solver gives inline (``net_param``, ``train_net_param``,
    ``test_net_param``) in place; returns whether any changed.

    Not part of Caffe's UpgradeSolverAsNeeded: ``caffelite upgrade`` uses it so an upgraded solver
    file is current throughout (Caffe's own consolidated LeNet solver embeds a V1 net).
    """
    changed = False
    for field in ("net_param", "train_net_param"):
        if param.HasField(field):
            changed |= upgrade_net_as_needed(getattr(param, field), f"{source} ({field})")
    for i, net in enumerate(param.test_net_param):
        changed |= upgrade_net_as_needed(net, f"{source} (test_net_param {i})")
    return changed


# --- reading (Caffe's Read*ParamsFrom*FileOrDie) ---------------------------------------------
def read_net_param(source, what: str = "net") -> caffe_pb2.NetParameter:
    """Caffe's ReadNetParamsFromTextFileOrDie: parse a prototxt and upgrade it to the current format.

    ``source`` is a path, or a NetParameter (copied, then upgraded).
    """
    param = caffe_pb2.NetParameter()
    if isinstance(source, caffe_pb2.NetParameter):
        param.CopyFrom(source)
        name = "<NetParameter>"
    else:
        name = os.fspath(source)
        read_text_proto(name, param, what)
    upgrade_net_as_needed(param, name)
    return param


def read_net_param_binary(path: str) -> caffe_pb2.NetParameter:
    """Caffe's ReadNetParamsFromBinaryFileOrDie (a .caffemodel), upgraded."""
    param = read_binary_proto(path, caffe_pb2.NetParameter(), "weights (.caffemodel)")
    upgrade_net_as_needed(param, str(path))
    return param


def read_solver_param(path: str) -> caffe_pb2.SolverParameter:
    """Caffe's ReadSolverParamsFromTextFileOrDie: parse and upgrade (``solver_type`` → ``type``)."""
    param = read_text_proto(path, caffe_pb2.SolverParameter(), "solver")
    upgrade_solver_as_needed(param, str(path))
    return param


# --- files -----------------------------------------------------------------------------------
def detect_proto_kind(text: str, source: str = "<string>") -> str:
    """"net" or "solver": which message the prototxt ``text`` parses as.

    When it parses as neither, raises the ProtoError of the one that got further into the text
    (a net with a typo on line 90 fails as a solver on line 1).  Text that parses as both (empty,
    or only fields the two share) counts as a net.
    """
    errors = {}
    for kind, message in (("net", caffe_pb2.NetParameter()), ("solver", caffe_pb2.SolverParameter())):
        try:
            parse_text(text, message, source)
            return kind
        except ProtoError as e:
            errors[kind] = e
    net_err, solver_err = errors["net"], errors["solver"]
    raise net_err if _parse_reach(net_err) >= _parse_reach(solver_err) else solver_err


def _parse_reach(err: ProtoError) -> tuple[int, int]:
    return (err.line or 0, err.column or 0)


def upgrade_net_file(in_path: str, out_path: str, binary: bool | None = None) -> bool:
    """Read a net (prototxt, or binary .caffemodel), upgrade it, write it in the same form.

    Caffe's upgrade_net_proto_text / upgrade_net_proto_binary.  ``binary`` None: decide from the
    file's bytes.  Returns whether the net needed an upgrade (the file is written either way).
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    data = read_bytes(in_path, "net")
    if binary is None:
        binary = looks_binary(data)
    param = caffe_pb2.NetParameter()
    if binary:
        parse_binary(data, param, in_path, "net (.caffemodel)")
    else:
        parse_text(decode_text(data, "net", in_path), param, in_path)
    changed = upgrade_net_as_needed(param, in_path)
    (write_binary_proto if binary else write_text_proto)(out_path, param)
    return changed


def upgrade_solver_file(in_path: str, out_path: str) -> bool:
    """Read a solver prototxt, upgrade it and the nets it gives inline, write the result.

    Caffe's upgrade_solver_proto_text (plus :func:`upgrade_solver_nets`).  Returns whether
    anything needed an upgrade.
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    param = parse_text(read_text(in_path, "solver"), caffe_pb2.SolverParameter(), in_path)
    changed = upgrade_solver_as_needed(param, in_path)
    changed |= upgrade_solver_nets(param, in_path)
    write_text_proto(out_path, param)
    return changed


def upgrade_file(in_path: str, out_path: str) -> tuple[str, bool]:
    """Upgrade a net or solver file, whichever it is; returns (kind, whether anything changed).

    Binary files are nets (.caffemodel); text files are told apart by :func:`detect_proto_kind`.
    """
    in_path = os.fspath(in_path)
    data = read_bytes(in_path, "proto")
    if looks_binary(data):
        return "net", upgrade_net_file(in_path, out_path, binary=True)
    kind = detect_proto_kind(decode_text(data, "proto", in_path), in_path)
    if kind == "solver":
        return kind, upgrade_solver_file(in_path, out_path)
    return kind, upgrade_net_file(in_path, out_path, binary=False)


__all__ = [
    "detect_proto_kind", "net_needs_batch_norm_upgrade", "net_needs_data_upgrade", "net_needs_input_upgrade",
    "net_needs_upgrade", "net_needs_v0_to_v1_upgrade", "net_needs_v1_to_v2_upgrade", "read_net_param",
    "read_net_param_binary", "read_solver_param", "solver_needs_type_upgrade", "upgrade_file",
    "upgrade_net_as_needed", "upgrade_net_batch_norm", "upgrade_net_data_transformation", "upgrade_net_file",
    "upgrade_net_input", "upgrade_solver_as_needed", "upgrade_solver_file", "upgrade_solver_nets",
    "upgrade_solver_type", "upgrade_v0_layer", "upgrade_v0_layer_type", "upgrade_v0_net",
    "upgrade_v0_padding_layers", "upgrade_v1_layer", "upgrade_v1_layer_type", "upgrade_v1_net",
]
