"""caffelite.upgrade: Caffe's upgrade_proto passes, on the real-world corpus and on small snippets.

The corpus (tests/corpus, copied from ../shared/corpus, see tests/corpus/SOURCE.md) gives the
breadth; caffe_shapes.json there (what BVLC Caffe built) and the golden net_legacy_v1 case (the
net Caffe's upgrader wrote back) are the references; the snippets pin each upgrade path and each
of Caffe's CHECKs.
"""

import csv
import json
import logging
import os
import re

import pytest
from google.protobuf import text_format

from caffelite import upgrade as U
from caffelite.errors import NetError, ProtoError, SolverError, UnknownLayerTypeError
from caffelite.layer_factory import layer_type_list
from caffelite.net import filter_net, insert_splits
from caffelite.proto import caffe_pb2
from caffelite.protoio import parse_text, read_text_proto, write_binary_proto
from tests.fixtures import committed

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
GOLDEN_V1 = os.path.join(HERE, "golden", "layers", "net_legacy_v1")

# Every layer type BVLC Caffe master (9b89154) registers: the REGISTER_LAYER_CLASS and
# REGISTER_LAYER_CREATOR names of src/caffe/layers/*.cpp and src/caffe/layer_factory.cpp (RecurrentLayer
# is only the base of LSTM and RNN: never registered).  Fixed here, not read from our registry, so the
# tests below can tell stock types from fork types; test_every_stock_type_is_registered ties the two.
BVLC_LAYER_TYPES = frozenset("""
AbsVal Accuracy ArgMax BatchNorm BatchReindex Bias BNLL Clip Concat ContrastiveLoss Convolution Crop
Data Deconvolution Dropout DummyData Eltwise ELU Embed EuclideanLoss Exp Filter Flatten HDF5Data
HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input Log LRN LSTM LSTMUnit MemoryData
MultinomialLogisticLoss MVN Parameter Pooling Power PReLU Python Reduction ReLU Reshape RNN
Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split SPP Swish TanH
Threshold Tile WindowData
""".split())
KNOWN_TYPES = BVLC_LAYER_TYPES | set(layer_type_list())


def test_every_stock_type_is_registered():
    assert sorted(BVLC_LAYER_TYPES - set(layer_type_list())) == []


def _manifest():
    with open(os.path.join(CORPUS, "MANIFEST.tsv"), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _manifest()
BVLC_ROWS = [r for r in ROWS if r["bvlc_only"] == "yes"]
FORK_ROWS = [r for r in ROWS if r["bvlc_only"] == "no"]
LEGACY_ROWS = [r for r in ROWS if r["kind"] in ("legacy_v0", "legacy_v1")]
with open(os.path.join(CORPUS, "caffe_shapes.json")) as _f:
    CAFFE_SHAPES = json.load(_f)
BUILT = sorted(k for k, v in CAFFE_SHAPES.items() if "layers" in v)


def _ids(rows):
    return [r["file"] for r in rows]


def _path(row):
    return os.path.join(CORPUS, row["file"])


def _read(row):
    message = caffe_pb2.SolverParameter() if row["kind"] == "solver" else caffe_pb2.NetParameter()
    return read_text_proto(_path(row), message)


def net(text):
    return parse_text(text, caffe_pb2.NetParameter(), "snippet.prototxt")


def solver(text):
    return parse_text(text, caffe_pb2.SolverParameter(), "solver.prototxt")


def assert_current_net(param, where):
    assert len(param.layers) == 0, where
    assert not param.input and not param.input_shape and not param.input_dim, where
    unknown = sorted({layer.type for layer in param.layer} - KNOWN_TYPES)
    assert not unknown, "%s: layer types %s are neither registered nor BVLC stock types" % (where, unknown)
    # (net_needs_upgrade stays true for BatchNorm with three specs, as in Caffe: see below)
    assert not (U.net_needs_v0_to_v1_upgrade(param) or U.net_needs_data_upgrade(param)
                or U.net_needs_v1_to_v2_upgrade(param) or U.net_needs_input_upgrade(param)), where


def assert_idempotent_net(param, where):
    again = caffe_pb2.NetParameter()
    again.CopyFrom(param)
    assert U.upgrade_net_as_needed(again, where) is False, where
    assert again == param, where


# --- the corpus ------------------------------------------------------------------------------
def test_corpus_copy_is_complete():
    assert len(BVLC_ROWS) == 116 and len(FORK_ROWS) == 12
    assert len(LEGACY_ROWS) == 20
    missing = [r["file"] for r in ROWS if not os.path.isfile(_path(r))]
    assert not missing


@pytest.mark.parametrize("row", BVLC_ROWS, ids=_ids(BVLC_ROWS))
def test_corpus_file_parses_and_upgrades(row):
    param = _read(row)
    where = row["file"]
    if row["kind"] == "solver":
        U.upgrade_solver_as_needed(param, where)
        assert not param.HasField("solver_type")
        assert param.type in U.SOLVER_TYPES.values()
        U.upgrade_solver_nets(param, where)
        nets = [param.net_param] if param.HasField("net_param") else []
        nets += [param.train_net_param] if param.HasField("train_net_param") else []
        for inline in nets + list(param.test_net_param):
            assert_current_net(inline, where)
            assert_idempotent_net(inline, where)
        again = caffe_pb2.SolverParameter()
        again.CopyFrom(param)
        assert U.upgrade_solver_as_needed(again, where) is False and again == param
    else:
        U.upgrade_net_as_needed(param, where)
        assert_current_net(param, where)
        assert_idempotent_net(param, where)


@pytest.mark.parametrize("row", BVLC_ROWS, ids=_ids(BVLC_ROWS))
def test_corpus_kind_is_detected(row):
    with open(_path(row)) as f:
        kind = U.detect_proto_kind(f.read(), row["file"])
    assert kind == ("solver" if row["kind"] == "solver" else "net")


@pytest.mark.parametrize("row", LEGACY_ROWS, ids=_ids(LEGACY_ROWS))
def test_legacy_net_types_are_upgraded_to_their_v2_names(row):
    param = _read(row)
    assert U.net_needs_v1_to_v2_upgrade(param)
    assert U.net_needs_v0_to_v1_upgrade(param) == (row["kind"] == "legacy_v0")
    U.upgrade_net_as_needed(param, row["file"])
    assert_current_net(param, row["file"])
    assert_idempotent_net(param, row["file"])
    # the manifest lists the file's own (V0 or V1) spellings, in order of first appearance
    old = row["layer_types"].split(",")
    if row["kind"] == "legacy_v0":
        expected = [U.V1_LAYER_TYPES[U.V0_LAYER_TYPES[t]] for t in old]
    else:
        expected = [U.V1_LAYER_TYPES[caffe_pb2.V1LayerParameter.LayerType.Value(t)] for t in old]
    got = list(dict.fromkeys(layer.type for layer in param.layer if layer.type != "Input"))
    assert got == expected


@pytest.mark.parametrize("name", BUILT)
def test_upgraded_layers_match_what_caffe_built(name):
    """After upgrade, TEST filtering and splits: Caffe's own (name, type) list for the net."""
    param = read_text_proto(os.path.join(CORPUS, name), caffe_pb2.NetParameter())
    U.upgrade_net_as_needed(param, name)
    param.state.phase = caffe_pb2.TEST
    built = insert_splits(filter_net(param, name), name)
    assert [[layer.name, layer.type] for layer in built.layer] == CAFFE_SHAPES[name]["layers"]


def _parse_error_place(notes):
    m = re.search(r"\((\d+):(\d+) : ", notes)
    return (int(m.group(1)), int(m.group(2))) if m else None


@pytest.mark.parametrize("row", FORK_ROWS, ids=_ids(FORK_ROWS))
def test_fork_files_fail_to_parse_naming_file_line_column(row):
    place = _parse_error_place(row["notes"])
    if place is None:
        # parses with the stock schema (SENet's Axpy): fine, but it uses a non-BVLC layer type
        param = _read(row)
        U.upgrade_net_as_needed(param, row["file"])
        assert {layer.type for layer in param.layer} - BVLC_LAYER_TYPES == {"Axpy"}
        return
    with pytest.raises(ProtoError) as info:
        _read(row)
    err = info.value
    assert err.file == _path(row)
    assert (err.line, err.column) == place
    assert str(err).startswith("%s:%d:%d: cannot parse " % ((_path(row),) + place))


def test_fork_parse_failures_and_parses_are_as_listed():
    unparsed = [r for r in FORK_ROWS if _parse_error_place(r["notes"])]
    assert len(unparsed) == 10 and len(FORK_ROWS) - len(unparsed) == 2


def test_golden_v1_net_upgrades_to_what_caffe_wrote_back():
    """net_legacy_v1's weights.caffemodel is Caffe's Net::ToProto of its own upgrade of the net."""
    committed("golden", "layers", "net_legacy_v1", "weights.caffemodel")
    param = read_text_proto(os.path.join(GOLDEN_V1, "net.prototxt"), caffe_pb2.NetParameter())
    assert U.upgrade_net_as_needed(param, "net.prototxt")
    caffe = caffe_pb2.NetParameter()
    with open(os.path.join(GOLDEN_V1, "weights.caffemodel"), "rb") as f:
        caffe.ParseFromString(f.read())
    for layer in caffe.layer:
        del layer.blobs[:]
        layer.ClearField("phase")
    param.ClearField("force_backward")  # ToProto does not write it
    assert param == caffe


# --- V0 → V1 ---------------------------------------------------------------------------------
V0_PADDED = """
name: "padded"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 } bottom: "pad1" top: "conv1" }
layers { layer { name: "pad2" type: "padding" pad: 1 } bottom: "conv1" top: "pad2" }
layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } bottom: "pad2" top: "pool1" }
"""


def test_v0_padding_layers_fold_into_the_conv_and_pool_they_feed():
    param = net(V0_PADDED)
    U.upgrade_v0_padding_layers(param)
    assert [c.layer.name for c in param.layers] == ["conv1", "pool1"]
    conv, pool = param.layers
    assert (conv.layer.pad, list(conv.bottom)) == (2, ["data"])
    assert (pool.layer.pad, list(pool.bottom)) == (1, ["conv1"])


def test_v0_padded_net_upgrades_to_current_format():
    param = net(V0_PADDED)
    assert U.upgrade_net_as_needed(param, "padded.prototxt")
    expected = net("""
    name: "padded"
    layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
            convolution_param { num_output: 4 pad: 2 kernel_size: 3 } }
    layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
            pooling_param { pool: AVE pad: 1 kernel_size: 2 stride: 2 } }
    """)
    assert param == expected


@pytest.mark.parametrize("consumer, message", [
    ('layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }',
     "Padding layer input to non-convolutional / non-pooling layer type relu"),
    ('layers { layer { name: "c" type: "conv" } bottom: "p" bottom: "data" top: "c" }',
     "Conv Layer takes a single blob as input."),
])
def test_v0_padding_checks(consumer, message):
    param = net('input: "data" layers { layer { name: "p" type: "padding" pad: 1 } bottom: "data" top: "p" }'
                + consumer)
    with pytest.raises(NetError, match=re.escape(message)) as info:
        U.upgrade_net_as_needed(param, "bad.prototxt")
    assert info.value.file == "bad.prototxt"


def test_v0_padding_layer_with_two_tops_is_refused():
    param = net('input: "data" layers { layer { name: "p" type: "padding" } bottom: "data" top: "p" top: "q" }'
                'layers { layer { name: "c" type: "conv" } bottom: "p" top: "c" }')
    with pytest.raises(NetError, match="Padding Layer produces a single blob as output") as info:
        U.upgrade_net_as_needed(param, "bad.prototxt")
    assert info.value.layer == "p"


def test_v0_unknown_bottom_blob():
    param = net('layers { layer { name: "c" type: "conv" } bottom: "nowhere" top: "c" }')
    with pytest.raises(NetError, match="Unknown blob input nowhere to layer 0"):
        U.upgrade_net_as_needed(param, "bad.prototxt")


def test_v0_unknown_layer_type():
    param = net('layers { layer { name: "x" type: "frobnicate" } top: "x" }')
    with pytest.raises(UnknownLayerTypeError, match="Unknown layer name: frobnicate") as info:
        U.upgrade_net_as_needed(param, "old.prototxt")
    assert (info.value.file, info.value.layer, info.value.field) == ("old.prototxt", "x", "type")


def test_v0_field_mapping_for_every_layer_type():
    param = net("""
    name: "all" force_backward: true
    layers { layer { name: "d" type: "data" source: "db" meanfile: "m.bp" batchsize: 8 cropsize: 5
                     mirror: true scale: 0.5 rand_skip: 3 } top: "data" top: "label" }
    layers { layer { name: "h" type: "hdf5_data" source: "list.txt" batchsize: 4 } top: "hd" }
    layers { layer { name: "i" type: "images" source: "imgs.txt" batchsize: 2 rand_skip: 1
                     shuffle_images: true new_height: 6 new_width: 7 } top: "im" top: "il" }
    layers { layer { name: "w" type: "window_data" source: "win.txt" batchsize: 16 det_fg_threshold: 0.6
                     det_bg_threshold: 0.4 det_fg_fraction: 0.3 det_context_pad: 16
                     det_crop_mode: "square" } top: "wd" top: "wl" }
    layers { layer { name: "c" type: "conv" num_output: 4 biasterm: false pad: 1 kernelsize: 3 group: 2
                     stride: 2 weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" }
                     blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 } bottom: "data" top: "c" }
    layers { layer { name: "p" type: "pool" pool: STOCHASTIC kernelsize: 3 stride: 2 pad: 1 }
             bottom: "c" top: "p" }
    layers { layer { name: "n" type: "lrn" local_size: 3 alpha: 0.1 beta: 0.5 k: 2 } bottom: "p" top: "n" }
    layers { layer { name: "f" type: "innerproduct" num_output: 10 biasterm: false
                     weight_filler { type: "xavier" } bias_filler { type: "constant" value: 1 } }
             bottom: "n" top: "f" }
    layers { layer { name: "o" type: "dropout" dropout_ratio: 0.3 } bottom: "f" top: "f" }
    layers { layer { name: "cc" type: "concat" concat_dim: 0 } bottom: "f" bottom: "f" top: "cc" }
    layers { layer { name: "g" type: "infogain_loss" source: "H.bp" } bottom: "f" bottom: "label" top: "g" }
    layers { layer { name: "out" type: "hdf5_output" hdf5_output_param { file_name: "o.h5" } }
             bottom: "f" bottom: "label" }
    """)
    U.upgrade_net_as_needed(param, "all.prototxt")
    expected = net("""
    name: "all" force_backward: true
    layer { name: "d" type: "Data" top: "data" top: "label"
            transform_param { scale: 0.5 mirror: true crop_size: 5 mean_file: "m.bp" }
            data_param { source: "db" batch_size: 8 rand_skip: 3 } }
    layer { name: "h" type: "HDF5Data" top: "hd" hdf5_data_param { source: "list.txt" batch_size: 4 } }
    layer { name: "i" type: "ImageData" top: "im" top: "il"
            image_data_param { source: "imgs.txt" batch_size: 2 rand_skip: 1 shuffle: true new_height: 6
                               new_width: 7 } }
    layer { name: "w" type: "WindowData" top: "wd" top: "wl"
            window_data_param { source: "win.txt" batch_size: 16 fg_threshold: 0.6 bg_threshold: 0.4
                                fg_fraction: 0.3 context_pad: 16 crop_mode: "square" } }
    layer { name: "c" type: "Convolution" bottom: "data" top: "c"
            param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
            convolution_param { num_output: 4 bias_term: false pad: 1 kernel_size: 3 group: 2 stride: 2
                                weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" } } }
    layer { name: "p" type: "Pooling" bottom: "c" top: "p"
            pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 pad: 1 } }
    layer { name: "n" type: "LRN" bottom: "p" top: "n" lrn_param { local_size: 3 alpha: 0.1 beta: 0.5 k: 2 } }
    layer { name: "f" type: "InnerProduct" bottom: "n" top: "f"
            inner_product_param { num_output: 10 bias_term: false weight_filler { type: "xavier" }
                                  bias_filler { type: "constant" value: 1 } } }
    layer { name: "o" type: "Dropout" bottom: "f" top: "f" dropout_param { dropout_ratio: 0.3 } }
    layer { name: "cc" type: "Concat" bottom: "f" bottom: "f" top: "cc" concat_param { concat_dim: 0 } }
    layer { name: "g" type: "InfogainLoss" bottom: "f" bottom: "label" top: "g"
            infogain_loss_param { source: "H.bp" } }
    layer { name: "out" type: "HDF5Output" bottom: "f" bottom: "label" hdf5_output_param { file_name: "o.h5" } }
    """)
    assert param == expected, text_format.MessageToString(param)


def test_v0_keeps_only_name_layers_inputs_and_force_backward():
    param = net('name: "n" debug_info: true state { phase: TRAIN } force_backward: false '
                'input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 '
                'layers { layer { name: "r" type: "relu" } bottom: "x" top: "x" }')
    U.upgrade_v0_net(param)
    assert param == net('name: "n" force_backward: false '
                        'input: "x" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 '
                        'layers { name: "r" type: RELU bottom: "x" top: "x" }')


def test_v0_field_on_the_wrong_layer_type_is_dropped_with_a_warning(caplog):
    param = net('layers { layer { name: "r" type: "relu" num_output: 3 } top: "x" }')
    with caplog.at_level(logging.INFO, logger="caffelite.upgrade"):
        assert U.upgrade_net_as_needed(param, "old.prototxt")
    assert param == net('layer { name: "r" type: "ReLU" top: "x" }')
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Unknown parameter num_output for layer type relu" in w for w in warnings)
    assert any("had one or more problems upgrading V0NetParameter" in w for w in warnings)


def test_every_v0_type_has_a_v1_enum_with_a_stock_name():
    for v0, v1 in U.V0_LAYER_TYPES.items():
        assert U.upgrade_v1_layer_type(v1) in BVLC_LAYER_TYPES, v0


# --- data transformation ---------------------------------------------------------------------
@pytest.mark.parametrize("kind, sub", [("DATA", "data_param"), ("IMAGE_DATA", "image_data_param"),
                                       ("WINDOW_DATA", "window_data_param")])
def test_data_transformation_fields_move_to_transform_param(kind, sub):
    param = net('layers { name: "d" type: %s top: "data" %s { source: "s" scale: 0.25 mean_file: "m" '
                'crop_size: 3 mirror: true } }' % (kind, sub))
    assert U.net_needs_data_upgrade(param)
    U.upgrade_net_data_transformation(param)
    layer = param.layers[0]
    assert layer.transform_param == caffe_pb2.TransformationParameter(
        scale=0.25, mean_file="m", crop_size=3, mirror=True)
    assert getattr(layer, sub) == getattr(net('layers { %s { source: "s" } }' % sub).layers[0], sub)
    assert not U.net_needs_data_upgrade(param)


def test_data_upgrade_ignores_other_layers_and_v2_nets():
    assert not U.net_needs_data_upgrade(net('layers { type: MEMORY_DATA } layers { type: HDF5_DATA }'))
    v2 = net('layer { name: "d" type: "Data" data_param { scale: 0.5 } }')
    assert not U.net_needs_data_upgrade(v2)  # Caffe only upgrades V1 layers


def test_data_transformation_then_v1_upgrade():
    param = net('layers { name: "d" type: DATA top: "data" data_param { source: "s" mirror: true } }')
    U.upgrade_net_as_needed(param)
    assert param == net('layer { name: "d" type: "Data" top: "data" transform_param { mirror: true } '
                        'data_param { source: "s" } }')


# --- V1 → V2 ---------------------------------------------------------------------------------
def test_v1_layer_fields_become_v2_fields():
    param = net("""
    layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "y" top: "z"
             blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
             param: "w" param: "b" blob_share_mode: PERMISSIVE
             loss_weight: 0.5 loss_weight: 0
             include { phase: TRAIN stage: "s" } exclude { not_stage: "t" }
             inner_product_param { num_output: 3 } loss_param { ignore_label: 2 }
             blobs { shape { dim: 1 } data: 7 } }
    layers { name: "shared" type: CONVOLUTION param: "" param: "b2" blobs_lr: 0 }
    """)
    assert U.upgrade_net_as_needed(param, "v1.prototxt")
    expected = net("""
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" top: "z"
            loss_weight: 0.5 loss_weight: 0
            param { name: "w" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 1 }
            param { name: "b" lr_mult: 2 decay_mult: 0 }
            blobs { shape { dim: 1 } data: 7 }
            include { phase: TRAIN stage: "s" } exclude { not_stage: "t" }
            loss_param { ignore_label: 2 } inner_product_param { num_output: 3 } }
    layer { name: "shared" type: "Convolution" param { name: "" lr_mult: 0 } param { name: "b2" } }
    """)
    assert param == expected, text_format.MessageToString(param)


def test_v1_copied_params_are_every_v1_sub_message():
    v1_params = {f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields if f.name.endswith("_param")}
    assert set(U.V1_COPIED_PARAMS) == v1_params
    v2_fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    for name in U.V1_COPIED_PARAMS:
        assert v2_fields[name].message_type is caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name[
            name].message_type, name


def test_every_v1_sub_message_is_copied():
    v1 = caffe_pb2.V1LayerParameter(name="l", type=caffe_pb2.V1LayerParameter.SPLIT)
    for name in U.V1_COPIED_PARAMS:
        getattr(v1, name).SetInParent()
    layer, ok = U.upgrade_v1_layer(v1)
    assert ok and all(layer.HasField(name) for name in U.V1_COPIED_PARAMS)


def test_every_v1_enum_value_has_a_type_name():
    for value in caffe_pb2.V1LayerParameter.LayerType.values():
        name = U.upgrade_v1_layer_type(value)
        assert name in BVLC_LAYER_TYPES or value == caffe_pb2.V1LayerParameter.NONE


def test_unknown_v1_enum_value():
    with pytest.raises(UnknownLayerTypeError, match="Unknown V1LayerParameter layer type: 99") as info:
        U.upgrade_v1_layer_type(99, "old.prototxt", "l")
    assert (info.value.file, info.value.layer) == ("old.prototxt", "l")


def test_unknown_v1_enum_name_fails_to_parse_with_its_place():
    with pytest.raises(ProtoError) as info:
        net('layers {\n  name: "x"\n  type: CONVOLUTON\n}')
    assert (info.value.file, info.value.line) == ("snippet.prototxt", 3)
    assert "CONVOLUTON" in str(info.value)


def test_v1_net_with_v2_layers_keeps_only_the_upgraded_ones(caplog):
    param = net('layer { name: "new" type: "ReLU" } layers { name: "old" type: RELU }')
    with caplog.at_level(logging.WARNING, logger="caffelite.upgrade"):
        U.upgrade_net_as_needed(param, "mixed.prototxt")
    assert [layer.name for layer in param.layer] == ["old"]
    assert "already specifies 'layer' fields; these will be ignored" in caplog.text


def test_upgrade_logs_at_info(caplog):
    with caplog.at_level(logging.INFO, logger="caffelite.upgrade"):
        U.upgrade_net_as_needed(net('layers { name: "r" type: RELU }'), "old.prototxt")
    assert ("Attempting to upgrade input file specified using deprecated V1LayerParameter: old.prototxt"
            in caplog.messages)
    assert all(r.levelno == logging.INFO for r in caplog.records)


# --- net inputs ------------------------------------------------------------------------------
def test_input_dim_becomes_a_first_input_layer():
    param = net('input: "a" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 '
                'input: "b" input_dim: 5 input_dim: 6 input_dim: 7 input_dim: 8 '
                'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }')
    assert U.net_needs_input_upgrade(param)
    U.upgrade_net_input(param)
    assert param == net('layer { name: "input" type: "Input" top: "a" top: "b" input_param { '
                        'shape { dim: 1 dim: 2 dim: 3 dim: 4 } shape { dim: 5 dim: 6 dim: 7 dim: 8 } } } '
                        'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }')


def test_input_shape_becomes_a_first_input_layer():
    param = net('layer { name: "r" type: "ReLU" bottom: "a" top: "a" } '
                'input: "a" input_shape { dim: 2 dim: 7 } input: "b" input_shape { dim: 3 }')
    assert U.upgrade_net_as_needed(param, "deploy.prototxt")
    assert param == net('layer { name: "input" type: "Input" top: "a" top: "b" input_param { '
                        'shape { dim: 2 dim: 7 } shape { dim: 3 } } } '
                        'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }')


def test_input_without_shapes_is_dropped():
    param = net('input: "data" layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    U.upgrade_net_input(param)
    assert param == net('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')


@pytest.mark.parametrize("text, message", [
    ('input: "a" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1 input_shape { dim: 1 }',
     "Must specify either input_shape OR deprecated input_dim, not both."),
    ('input: "a" input_dim: 1 input_dim: 2 input_dim: 3',
     "Incorrect input blob dimension specifications: 3 input_dim values for 1 inputs"),
    ('input: "a" input: "b" input_shape { dim: 1 }',
     "Exactly one input_shape must be specified per input: 1 input_shape for 2 inputs"),
])
def test_input_checks(text, message):
    with pytest.raises(NetError, match=re.escape(message)) as info:
        U.upgrade_net_as_needed(net(text), "deploy.prototxt")
    assert info.value.file == "deploy.prototxt"


# --- BatchNorm -------------------------------------------------------------------------------
def test_batch_norm_with_three_params_gets_zero_lr_and_decay_keeping_names():
    param = net('layer { name: "bn" type: "BatchNorm" param { name: "m" lr_mult: 1 } param { decay_mult: 3 } '
                'param { name: "c" lr_mult: 0 decay_mult: 0 } } '
                'layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } } '
                'layer { name: "s" type: "Scale" param { lr_mult: 1 } param { } param { } }')
    assert U.net_needs_batch_norm_upgrade(param)
    assert U.upgrade_net_as_needed(param, "bn.prototxt")
    assert param == net('layer { name: "bn" type: "BatchNorm" param { name: "m" lr_mult: 0 decay_mult: 0 } '
                        'param { lr_mult: 0 decay_mult: 0 } param { name: "c" lr_mult: 0 decay_mult: 0 } } '
                        'layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } } '
                        'layer { name: "s" type: "Scale" param { lr_mult: 1 } param { } param { } }')
    # Caffe keeps asking (three specs) but nothing changes any more
    assert U.net_needs_batch_norm_upgrade(param)
    assert U.upgrade_net_as_needed(param, "bn.prototxt") is False


def test_corpus_batch_norm_net_needs_the_upgrade():
    row = next(r for r in BVLC_ROWS if r["file"].endswith("cifar10_full_sigmoid_train_test_bn.prototxt"))
    param = _read(row)
    assert U.net_needs_batch_norm_upgrade(param)
    U.upgrade_net_as_needed(param)
    specs = [s for layer in param.layer if layer.type == "BatchNorm" for s in layer.param]
    assert specs and all((s.lr_mult, s.decay_mult) == (0, 0) for s in specs)


# --- solvers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("enum, name", [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                                        ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type_enum_becomes_type_string(enum, name):
    param = solver("base_lr: 0.1 solver_type: %s" % enum)
    assert U.solver_needs_type_upgrade(param)
    assert U.upgrade_solver_as_needed(param, "solver.prototxt")
    assert param == solver('base_lr: 0.1 type: "%s"' % name)


@pytest.mark.parametrize("text", ['solver_type: ADAM type: "SGD"', 'solver_type: SGD type: "SGD"'])
def test_solver_type_and_type_together_are_refused(text):
    with pytest.raises(SolverError, match="old solver_type field \\(enum\\) and new type field \\(string\\) "
                                          "cannot be both specified") as info:
        U.upgrade_solver_as_needed(solver(text), "solver.prototxt")
    assert info.value.file == "solver.prototxt"


def test_current_solver_is_left_alone():
    param = solver('type: "Adam" solver_mode: 1')
    assert U.upgrade_solver_as_needed(param) is False
    assert param == solver('type: "Adam" solver_mode: GPU')


def test_solver_inline_nets_are_upgraded_by_upgrade_solver_nets():
    param = solver('net_param { layers { name: "r" type: RELU } } '
                   'test_net_param { input: "x" input_shape { dim: 1 } }')
    assert U.upgrade_solver_as_needed(param) is False  # Caffe's solver upgrade leaves nets alone
    assert U.upgrade_solver_nets(param, "s.prototxt")
    assert param == solver('net_param { layer { name: "r" type: "ReLU" } } test_net_param { layer { '
                           'name: "input" type: "Input" top: "x" input_param { shape { dim: 1 } } } }')


# --- files -----------------------------------------------------------------------------------
def test_upgrade_net_file_writes_the_current_format(tmp_path):
    src = os.path.join(CORPUS, "BVLC__caffe@rc/examples/mnist/lenet.prototxt")
    out = tmp_path / "lenet.prototxt"
    assert U.upgrade_net_file(src, out)
    param = read_text_proto(str(out), caffe_pb2.NetParameter())
    assert_current_net(param, "lenet")
    assert "layers {" not in out.read_text() and 'type: "Convolution"' in out.read_text()
    assert U.upgrade_net_file(out, tmp_path / "again.prototxt") is False
    assert (tmp_path / "again.prototxt").read_text() == out.read_text()


def test_upgrade_binary_net_file(tmp_path):
    old = net('layers { name: "ip" type: INNER_PRODUCT blobs_lr: 1 blobs { shape { dim: 2 } data: 1 data: 2 } }')
    write_binary_proto(str(tmp_path / "old.caffemodel"), old)
    kind, changed = U.upgrade_file(tmp_path / "old.caffemodel", tmp_path / "new.caffemodel")
    assert (kind, changed) == ("net", True)
    new = caffe_pb2.NetParameter()
    new.ParseFromString((tmp_path / "new.caffemodel").read_bytes())
    assert new == net('layer { name: "ip" type: "InnerProduct" param { lr_mult: 1 } '
                      'blobs { shape { dim: 2 } data: 1 data: 2 } }')


def test_upgrade_file_tells_solvers_from_nets(tmp_path):
    src = os.path.join(CORPUS, "BVLC__caffe/examples/mnist/lenet_consolidated_solver.prototxt")
    kind, changed = U.upgrade_file(src, tmp_path / "solver.prototxt")
    assert (kind, changed) == ("solver", True)
    param = read_text_proto(str(tmp_path / "solver.prototxt"), caffe_pb2.SolverParameter())
    assert_current_net(param.net_param, "net_param")
    assert U.upgrade_file(tmp_path / "solver.prototxt", tmp_path / "again.prototxt") == ("solver", False)


def test_detect_proto_kind_reports_the_error_of_the_likelier_kind():
    with pytest.raises(ProtoError) as info:
        U.detect_proto_kind('name: "n"\nlayer {\n  name: "x"\n  typo: 1\n}', "net.prototxt")
    assert info.value.line == 4 and "cannot parse NetParameter" in str(info.value)
    with pytest.raises(ProtoError) as info:
        U.detect_proto_kind('base_lr: 0.1\nmax_iter: 10\nbogus: 1\n', "solver.prototxt")
    assert info.value.line == 3 and "SolverParameter" in str(info.value)
    assert U.detect_proto_kind("") == "net"


def test_upgrade_file_missing_and_bad_files(tmp_path):
    from caffelite.errors import CaffeFileNotFoundError

    with pytest.raises(CaffeFileNotFoundError):
        U.upgrade_file(tmp_path / "nope.prototxt", tmp_path / "out.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layers { name: "x" type: NOT_A_TYPE }\n')
    with pytest.raises(ProtoError) as info:
        U.upgrade_file(bad, tmp_path / "out.prototxt")
    assert info.value.file == str(bad) and info.value.line == 1
    assert not (tmp_path / "out.prototxt").exists()
