"""``caffelite check``: find what BVLC Caffe would abort on, or silently do, in a net or solver.

The checker parses the prototxt (keeping every field's line and column, see
:mod:`caffelite.textloc`), upgrades it, filters it by phase (TRAIN and TEST unless one is
asked for), and infers every blob's shape by setting the layers up with caffelite's own
machinery.  What Caffe would refuse, or accept with surprising results, becomes a
:class:`Diagnostic` ``file:line:col: severity: [code] message``.  Shapes that cannot be known
(data files absent, Python layers not imported, layers caffelite does not implement yet) are
reported as unknown, which is never an error.

Every code, its severity and the Caffe behaviour behind it is in :data:`CODES`
(``caffelite check --list-codes`` prints them).  Python-layer modules are never imported unless
``allow_python_layers`` is true: a prototxt may come from anyone.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field

from google.protobuf import text_format

from caffelite.blob import Blob
from caffelite.errors import (
    BlobMemoryError,
    CaffeFileNotFoundError,
    CaffeliteError,
    FileFormatError,
    LabelError,
    ShapeError,
    UnsupportedError,
)
from caffelite.layer import TEST, TRAIN
from caffelite.layer_factory import layer_class, layer_type_list
from caffelite.layers.loss import get_normalizer, resolved_normalization
from caffelite.net import state_meets_rule
from caffelite.proto import caffe_pb2
from caffelite.textloc import Field, Message, find, parse_locations

__all__ = ["CODES", "Diagnostic", "CheckResult", "check_file", "check_text", "list_codes", "infer_shapes"]

ERROR, WARNING, NOTE = "error", "warning", "note"

# code -> (severity, what it means and the Caffe behaviour behind it)
CODES: dict[str, tuple[str, str]] = {
    "file-unreadable": (ERROR, "The file cannot be read (missing, a directory, not UTF-8 text). "
                               "Exit status 2."),
    "parse-error": (ERROR, "protobuf's text parser rejects the file (syntax, a bad enum value, a "
                           "repeated scalar given twice). Caffe's ReadProtoFromTextFileOrDie aborts the same way."),
    "unknown-field": (ERROR, "A field BVLC Caffe's caffe.proto does not have. Fields of Caffe forks "
                             "(e.g. pooling_param.ceil_mode of the SSD/MobileNet forks) fail to parse in BVLC "
                             "Caffe; the hint names the BVLC spelling when there is one (round_mode)."),
    "legacy-format": (NOTE, "A V0/V1 net (`layers` with enum types) or a deprecated solver field; Caffe "
                            "upgrades it on every load and logs a warning. `caffelite upgrade` writes the "
                            "current format."),
    "upgrade-failed": (ERROR, "The V0/V1 upgrade fails (Caffe: 'Failed to upgrade ...' and abort)."),
    "include-exclude": (ERROR, "A layer with both include and exclude rules. Caffe's FilterNet: "
                               "'Specify either include rules or exclude rules; not both.'"),
    "unknown-layer-type": (ERROR, "A type no BVLC Caffe layer has (Caffe: 'Unknown layer type', with the "
                                  "list of known types); a close match is suggested."),
    "unimplemented-layer": (NOTE, "A BVLC Caffe layer type caffelite does not implement yet: its tops' "
                                  "shapes, and what depends on them, are unknown."),
    "python-layer": (NOTE, "A Python layer: its module is not imported (a prototxt may come from "
                           "anyone) unless --allow-python-layers; give its tops' shapes with --input."),
    "unknown-shape": (NOTE, "A data layer whose files are absent or unreadable here: its tops' shapes "
                            "are unknown (give them with --input NAME=SHAPE). Not an error: Caffe only "
                            "needs the files where it runs."),
    "unknown-input": (WARNING, "An --input NAME that no layer of the net produces."),
    "unknown-bottom": (ERROR, "A bottom no earlier layer produces (Caffe's AppendBottom: 'Unknown bottom "
                              "blob'). Layer order matters: a blob must be produced before it is used."),
    "deploy-loss": (ERROR, "A loss or Accuracy layer in a deploy net: its label is not an input of "
                           "the net, so Caffe stops with 'Unknown bottom blob' for the label. Remove it, or "
                           "restrict it with include { phase: TRAIN }."),
    "duplicate-top": (ERROR, "A top produced twice (not in place). Caffe: 'Top blob ... produced by "
                             "multiple sources.'"),
    "blob-count": (ERROR, "Wrong number of bottoms or tops for the layer type (Caffe's "
                          "CheckBlobCounts: 'takes N bottom blob(s) as input' ...)."),
    "propagate-down-count": (ERROR, "propagate_down given neither 0 nor bottom_size times (Caffe CHECK)."),
    "loss-weight-count": (ERROR, "loss_weight given neither 0 times nor once per top (Caffe's "
                                 "SetLossWeights: 'loss_weight must be unspecified or specified once per top "
                                 "blob.')."),
    "shape-mismatch": (ERROR, "Bottom shapes the layer refuses (Caffe's shape CHECKs in Reshape)."),
    "label-count": (ERROR, "Label count does not match the predictions around the softmax axis: for "
                           "scores N×C×H×W and axis 1, Caffe needs N·H·W labels ('Number of labels must match "
                           "number of predictions')."),
    "layer-config": (ERROR, "A layer parameter Caffe refuses at setup (its CHECK message is quoted)."),
    "too-large": (NOTE, "A blob too large for this machine; shapes after it are not inferred."),
    "internal": (WARNING, "caffelite itself failed while setting this layer up (a caffelite bug, please "
                          "report it); shapes after it are unknown."),
    "softmax-two-tops": (WARNING, "SoftmaxWithLoss with two tops (loss and prob), as in many tutorials: "
                                  "caffelite runs it (prob = softmax, loss weight 0), BVLC Caffe aborts on it "
                                  "(its issue #2968). The portable form is a separate Softmax layer."),
    "normalization": (NOTE, "The normalization a loss layer resolves to, and its numeric normalizer for the "
                            "inferred shapes. Caffe: an explicit `normalization` wins; else `normalize: true` "
                            "is VALID and `normalize: false` is BATCH_SIZE (not NONE); else VALID, except "
                            "SigmoidCrossEntropyLoss, whose default is BATCH_SIZE."),
    "normalize-ignored": (WARNING, "Both `normalize` and `normalization` are set: Caffe reads only "
                                   "`normalization`, the legacy `normalize` is ignored."),
    "normalize-deprecated": (WARNING, "`normalize` is deprecated (caffe.proto: 'DEPRECATED. Ignored if "
                                      "normalization is specified'); write the `normalization` it means."),
    "normalization-ignored": (WARNING, "`normalize`/`normalization` on a loss that does not read them "
                                       "(EuclideanLoss, HingeLoss, ContrastiveLoss, MultinomialLogisticLoss "
                                       "always divide by the batch size N)."),
    "ignore-label-is-class": (WARNING, "ignore_label is a valid class index in [0, C): that class is never "
                                       "learned, and its pixels do not count. Use a value outside [0, C) "
                                       "(255 is the convention) unless this is meant."),
    "accuracy-ignore-label": (WARNING, "A loss ignores a label value that an Accuracy layer on the same "
                                       "labels does not: Accuracy counts those positions (and with a value "
                                       "outside [0, C) BVLC Caffe reads out of bounds)."),
    "unnormalized-loss": (WARNING, "A loss summed over many spatial positions (BATCH_SIZE or NONE with "
                                   "large H·W): the loss and gradients scale with H·W, so the learning rate "
                                   "must shrink by as much (FCN's normalize: false trains with base_lr 1e-10)."),
    "loss-weight-no-backward": (ERROR, "A non-zero loss_weight on a layer without a gradient (Accuracy, "
                                       "ArgMax, data layers, ...): Caffe treats its top as a loss and aborts in "
                                       "Backward (NOT_IMPLEMENTED)."),
    "missing-weight-filler": (WARNING, "A trainable layer without weight_filler: Caffe's default filler is "
                                       "constant 0, so every output unit gets the same gradient and they "
                                       "never differ (fine only when weights are loaded from a .caffemodel)."),
    "batchnorm-lr-mult": (ERROR, "A BatchNorm param with non-zero lr_mult: its blobs are statistics, not "
                                 "weights. Caffe CHECKs: 'Cannot configure batch normalization statistics as "
                                 "layer parameters.'"),
    "solver-lr-policy": (ERROR, "A solver without a (known) lr_policy: Caffe aborts at the first "
                                "iteration with 'Unknown learning rate policy'."),
    "solver-fields": (WARNING, "Solver fields that contradict each other or the lr_policy (stepsize "
                               "with 'multistep', gamma unset for 'step', momentum with AdaGrad, ...); the "
                               "message says what Caffe does with them. Severity error where Caffe aborts."),
}

BVLC_TYPES = frozenset("""
AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss Convolution Crop
Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter Flatten HDF5Data
HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM LSTMUnit Log MVN
MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU Reduction Reshape SPP
Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split Swish TanH Threshold
Tile WindowData""".split())
LOSS_TYPES = frozenset("""ContrastiveLoss EuclideanLoss HingeLoss InfogainLoss MultinomialLogisticLoss
SigmoidCrossEntropyLoss SoftmaxWithLoss""".split())
NORMALIZED_LOSSES = {"SoftmaxWithLoss": caffe_pb2.LossParameter.VALID,
                     "InfogainLoss": caffe_pb2.LossParameter.VALID,
                     "SigmoidCrossEntropyLoss": caffe_pb2.LossParameter.BATCH_SIZE}
LABELED_TYPES = LOSS_TYPES | {"Accuracy"}
NO_BACKWARD = frozenset("""Accuracy ArgMax Threshold Data ImageData HDF5Data HDF5Output WindowData
MemoryData Input DummyData""".split())
FILE_DATA_TYPES = frozenset("Data ImageData HDF5Data WindowData".split())
WEIGHTED_TYPES = frozenset("Convolution Deconvolution InnerProduct Embed RNN LSTM".split())
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
LARGE_SPATIAL = 1000  # positions per image above which an unnormalized loss is flagged

# fields of Caffe forks, with what BVLC Caffe offers instead
FORK_FIELDS = {
    "ceil_mode": "ceil_mode is a field of Caffe forks (SSD, MobileNet-Caffe, ...). BVLC Caffe spells it "
                 "pooling_param { round_mode: FLOOR } for ceil_mode: false; ceil_mode: true is BVLC's default "
                 "(round_mode: CEIL), so delete it",
    "eval_type": "eval_type is a solver field of the SSD fork (detection evaluation); BVLC Caffe has none",
    "ap_version": "ap_version is a solver field of the SSD fork; BVLC Caffe has none",
    "show_per_class_ap": "show_per_class_ap is a solver field of the SSD fork; BVLC Caffe has none",
    "bn_param": "bn_param belongs to the BN layer of forks (TSN, ...); BVLC Caffe uses BatchNorm followed "
                "by Scale (bias_term: true)",
    "scale_filler": "scale_filler is a BatchNorm field of forks; in BVLC Caffe the scale lives in a "
                    "separate Scale layer (scale_param { filler })",
}

_Norm = caffe_pb2.LossParameter
NORM_NAMES = {v: k for k, v in _Norm.NormalizationMode.items()}

SOFTMAX_REWRITE = ('layer {{ name: "{name}" type: "SoftmaxWithLoss" bottom: "{score}" bottom: "{label}"\n'
                   '        top: "{loss}"{rest} }}\n'
                   'layer {{ name: "{prob}" type: "Softmax" bottom: "{score}" top: "{prob}"{axis} }}')


@dataclass
class Diagnostic:
    """One finding: ``file:line:col: severity: [code] message`` (plus an optional indented hint)."""

    code: str
    message: str
    file: str
    line: int | None = None
    column: int | None = None
    severity: str = ""
    layer: str | None = None
    hint: str | None = None
    phases: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.severity:
            self.severity = CODES[self.code][0]

    def format(self) -> str:
        where = self.file
        if self.line:
            where += ":%d:%d" % (self.line, self.column or 1)
        text = "%s: %s: [%s] %s" % (where, self.severity, self.code, self.message)
        if self.phases:
            text += " (in %s)" % ", ".join(self.phases)
        if self.hint:
            text += "".join("\n    " + ln for ln in self.hint.splitlines())
        return text

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column, "severity": self.severity,
                "code": self.code, "message": self.message, "layer": self.layer, "hint": self.hint,
                "phases": self.phases}


@dataclass
class CheckResult:
    """Diagnostics of one check, and the blob shapes inferred per phase (None: unknown)."""

    file: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    shapes: dict[str, dict[str, list[int] | None]] = field(default_factory=dict)
    unreadable: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def exit_status(self) -> int:
        """0 without errors, 1 with errors, 2 when the file cannot be read."""
        return 2 if self.unreadable else (1 if self.errors else 0)

    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def format_text(self) -> str:
        lines = [d.format() for d in self.diagnostics]
        counts = {s: sum(d.severity == s for d in self.diagnostics) for s in (ERROR, WARNING, NOTE)}
        lines.append("%s: %d error(s), %d warning(s), %d note(s)" % (self.file, counts[ERROR], counts[WARNING],
                                                                     counts[NOTE]))
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"file": self.file, "exit_status": self.exit_status,
                           "diagnostics": [d.to_dict() for d in self.diagnostics],
                           "shapes": self.shapes}, indent=2)


def list_codes() -> str:
    """Every diagnostic code with its severity and the Caffe behaviour behind it."""
    out = []
    for code, (severity, doc) in CODES.items():
        out.append("%s (%s)\n    %s" % (code, severity, doc))
    return "\n".join(out)


def _did_you_mean(name: str, candidates) -> str:
    candidates = sorted(set(candidates))
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return " Did you mean '%s'?" % close[0] if close else ""


def parse_shape(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` or ``1x3x224x224`` as a shape tuple."""
    parts = text.replace("x", ",").replace("X", ",").replace("×", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise ValueError("bad shape %r: expected integers like 1,3,224,224" % text) from None
    if any(d < 0 for d in dims):
        raise ValueError("bad shape %r: negative dimension" % text)
    return dims


# --- the checker ----------------------------------------------------------------------------
class _Checker:
    def __init__(self, source: str, text: str, inputs: dict[str, tuple[int, ...]], allow_python: bool,
                 solver_base_lr: float | None = None):
        self.source = source
        self.text = text
        self.tree = parse_locations(text)
        self.inputs = dict(inputs)
        self.allow_python = allow_python
        self.base_lr = solver_base_lr
        self.diags: dict[tuple, Diagnostic] = {}
        self.shapes: dict[str, dict[str, list[int] | None]] = {}
        self.phase_name = ""
        self.layer_nodes: list[Field | None] = []
        self.trainable_net = False

    # --- reporting ---------------------------------------------------------------------
    def report(self, code: str, message: str, where: Field | None = None, layer: str | None = None,
               hint: str | None = None, severity: str = "") -> None:
        line, col = (where.line, where.column) if where is not None else (None, None)
        key = (code, line, col, message)
        d = self.diags.get(key)
        if d is None:
            d = self.diags[key] = Diagnostic(code, message, self.source, line, col, severity, layer, hint)
        if self.phase_name and self.phase_name not in d.phases:
            d.phases.append(self.phase_name)

    def at(self, k: int, path: str | None = None) -> Field | None:
        """The written place of layer ``k``'s field ``path`` (dotted, indexed); its layer when absent."""
        node = self.layer_nodes[k] if k < len(self.layer_nodes) else None
        if node is None or not path or node.message is None:
            return node
        hit = find(node.message, path)
        if hit is None:  # search any sub-message for the last component (e.g. 'axis')
            last = path.split(".")[-1].split("[")[0]
            hit = _search(node.message, last)
        return hit or node

    # --- parsing -----------------------------------------------------------------------
    def check_fields(self, msg: Message, descriptor, prefix: str = "") -> None:
        """Report fields that descriptor (BVLC's schema) does not have; recurse into sub-messages."""
        for f in msg.fields:
            if f.name.startswith("[") or "." in f.name or "/" in f.name:
                continue
            fd = descriptor.fields_by_name.get(f.name)
            if fd is None:
                hint = FORK_FIELDS.get(f.name)
                msg_text = "%s has no field named '%s'" % (descriptor.name, f.name)
                if hint is None:
                    msg_text += "." + _did_you_mean(f.name, descriptor.fields_by_name)
                    hint = "Fields BVLC Caffe does not know come from a Caffe fork, or a typo."
                self.report("unknown-field", msg_text, f, hint=hint)
            elif fd.message_type is not None and f.message is not None:
                self.check_fields(f.message, fd.message_type, prefix + f.name + ".")

    def map_layers(self, param) -> None:
        """Pair each (upgraded) layer with the place it was written: by unique name, else by order."""
        entries = self.tree.all("layer") or self.tree.all("layers")
        by_name: dict[str, list[Field]] = {}
        for e in entries:
            name = e.get("name") or e.get("layer") and e.get("layer").get("name")  # V0 nests `layer`
            if name is not None and name.value is not None:
                by_name.setdefault(name.value, []).append(e)
        nodes = []
        for k, lp in enumerate(param.layer):
            same = by_name.get(lp.name, [])
            if len(same) == 1:
                nodes.append(same[0])
            elif len(entries) == len(param.layer):
                nodes.append(entries[k])
            else:
                nodes.append(same[0] if same else None)
        self.layer_nodes = nodes

    # --- per-phase analysis ------------------------------------------------------------
    def analyse(self, param, phase: int, stages: tuple[str, ...], label: str) -> None:
        """Filter the net for (phase, stages) as Caffe's FilterNet does, then walk its layers."""
        self.phase_name = label
        state = caffe_pb2.NetState()
        state.CopyFrom(param.state)
        state.phase = phase
        del state.stage[:]
        state.stage.extend(stages)
        shapes: dict[str, tuple[int, ...] | None] = {}
        self.net_has_inputs = bool(len(param.input)) or any(lp.type == "Input" for lp in param.layer)
        self.net_has_data = any(lp.type in FILE_DATA_TYPES | {"Python", "MemoryData", "DummyData"}
                                and not len(lp.bottom) for lp in param.layer)
        self.labels_ignored: list[tuple[str, int | None, str]] = []  # (label blob, ignore, loss name)
        self.accuracies: list[tuple[int, str, int | None]] = []
        for i, name in enumerate(param.input):  # net-level inputs the upgrade left in place
            shape = None
            if i < len(param.input_shape):
                shape = tuple(param.input_shape[i].dim)
            elif len(param.input_dim) >= 4 * (i + 1):
                shape = tuple(param.input_dim[4 * i:4 * i + 4])
            shapes[name] = self.inputs.get(name, shape)
        kept = []
        for k, lp in enumerate(param.layer):
            if len(lp.include) and len(lp.exclude):
                self.report("include-exclude", "Specify either include rules or exclude rules; not both. "
                            "(layer '%s')" % lp.name, self.at(k, "exclude"), lp.name)
                continue
            included = len(lp.include) == 0
            if included and any(state_meets_rule(state, r) for r in lp.exclude):
                included = False
            if not included and any(state_meets_rule(state, r) for r in lp.include):
                included = True
            if included:
                kept.append(k)
        for k in kept:
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(param.layer[k])
            if not lp.HasField("phase"):
                lp.phase = phase
            self.layer(k, lp, shapes)
        self.check_accuracy_ignore()
        for name in self.inputs:
            if name not in shapes:
                self.report("unknown-input", "--input %s: no layer of the net produces a blob '%s'.%s"
                            % (name, name, _did_you_mean(name, shapes)))
        self.shapes[label] = {n: (list(s) if s is not None else None) for n, s in shapes.items()}

    def layer(self, k: int, lp, shapes: dict) -> None:
        name, ltype = lp.name, lp.type
        if len(lp.propagate_down) and len(lp.propagate_down) != len(lp.bottom):
            self.report("propagate-down-count", "propagate_down param must be specified either 0 or "
                        "bottom_size times (%d given, %d bottoms)" % (len(lp.propagate_down), len(lp.bottom)),
                        self.at(k, "propagate_down"), name)
        bottoms_known = True
        for j, b in enumerate(lp.bottom):
            if b in shapes:
                bottoms_known &= shapes[b] is not None
                continue
            bottoms_known = False
            if ltype in LABELED_TYPES and j >= 1 and self.net_has_inputs and not self.net_has_data:
                self.report("deploy-loss", "%s layer '%s' needs the label '%s', which this deploy net does "
                            "not provide (Caffe: Unknown bottom blob '%s')." % (ltype, name, b, b),
                            self.at(k, "bottom[%d]" % j), name,
                            hint="Remove the layer from the deploy net, or use a Softmax layer for "
                                 "probabilities; in a train_val net, add include { phase: TRAIN }.")
            else:
                self.report("unknown-bottom", "Unknown bottom blob '%s' (layer '%s', bottom index %d).%s"
                            % (b, name, j, _did_you_mean(b, shapes)), self.at(k, "bottom[%d]" % j), name)
        for j, t in enumerate(lp.top):
            in_place = j < len(lp.bottom) and lp.bottom[j] == t
            if t in shapes and not in_place:
                self.report("duplicate-top", "Top blob '%s' produced by multiple sources." % t,
                            self.at(k, "top[%d]" % j), name)
        self.static_checks(k, lp)

        top_shapes: list | None = None
        cls = self.resolve_type(k, lp)
        given = [self.inputs.get(t) for t in lp.top]
        if lp.top and all(g is not None for g in given) and not len(lp.bottom):
            top_shapes = given  # --input wins over files and Python modules
        elif cls is not None and bottoms_known:
            top_shapes = self.setup(k, lp, cls, [shapes[b] for b in lp.bottom])
        for j, t in enumerate(lp.top):
            shape = top_shapes[j] if top_shapes is not None and j < len(top_shapes) else None
            if given[j] is not None:
                shape = given[j]
            shapes[t] = tuple(shape) if shape is not None else None
        self.semantic_checks(k, lp, [shapes.get(b) for b in lp.bottom])

    def resolve_type(self, k: int, lp):
        """The layer class, or None (with a diagnostic) when caffelite cannot set it up here."""
        ltype = lp.type
        if ltype == "Python" and not self.allow_python:
            module = lp.python_param.module
            self.report("python-layer", "Python layer '%s' (%s.%s) is not imported; its tops %s have unknown "
                        "shapes (pass --input NAME=SHAPE, or --allow-python-layers to run its setup)"
                        % (lp.name, module, lp.python_param.layer, list(lp.top)), self.at(k, "type"), lp.name)
            return None
        try:
            return layer_class(ltype)
        except CaffeliteError:
            pass
        if ltype in BVLC_TYPES:
            self.report("unimplemented-layer", "%s is a BVLC Caffe layer that caffelite does not implement "
                        "yet; shapes after layer '%s' are unknown." % (ltype, lp.name), self.at(k, "type"),
                        lp.name)
        else:
            self.report("unknown-layer-type", "Unknown layer type: %s.%s" % (
                ltype, _did_you_mean(ltype, BVLC_TYPES | set(layer_type_list()))), self.at(k, "type"),
                lp.name, hint="BVLC Caffe's layer types: " + ", ".join(sorted(BVLC_TYPES)))
        return None

    def setup(self, k: int, lp, cls, bottom_shapes: list) -> list | None:
        """Set the layer up on blobs of the bottom shapes; the top shapes, or None."""
        cheap = caffe_pb2.LayerParameter()
        cheap.CopyFrom(lp)
        _cheap_fillers(cheap)
        try:
            layer = cls.create(cheap)
            bottom = [Blob(s) for s in bottom_shapes]
            top = []
            for j, t in enumerate(lp.top):
                in_place = j < len(lp.bottom) and lp.bottom[j] == t
                top.append(bottom[j] if in_place else Blob())
            if layer.auto_top_blobs():
                needed = max(layer.min_top_blobs(), layer.exact_num_top_blobs())
                top.extend(Blob() for _ in range(len(top), needed))
            layer.run_setup(bottom, top)
            return [tuple(b.shape) for b in top]
        except (CaffeFileNotFoundError, FileFormatError, UnsupportedError, ImportError, OSError) as e:
            if not len(lp.bottom):
                self.report("unknown-shape", "%s layer '%s': its data cannot be read here (%s); tops %s have "
                            "unknown shapes (give them with --input NAME=SHAPE)."
                            % (lp.type, lp.name, _short(e), list(lp.top)), self.at(k, "type"), lp.name)
            else:
                self.report("layer-config", "%s" % _short(e), self.at(k, _field(e)), lp.name)
        except BlobMemoryError as e:
            self.report("too-large", _short(e), self.at(k, "top"), lp.name)
        except LabelError as e:
            self.report("label-count", _short(e), self.at(k, _field(e) or "bottom[1]"), lp.name)
        except ShapeError as e:
            self.report("shape-mismatch", _short(e), self.at(k, _field(e) or "bottom"), lp.name)
        except CaffeliteError as e:
            fld = _field(e)
            code = "layer-config"
            if fld == "loss_weight":
                code = "loss-weight-count"
            elif "blob(s)" in e.message or "one top blob as output for each" in e.message:
                code = "blob-count"
            self.report(code, _short(e), self.at(k, fld or "type"), lp.name)
        except Exception as e:  # noqa: BLE001 - a bug in a layer must not crash the checker
            self.report("internal", "setting up %s layer '%s' failed: %s: %s"
                        % (lp.type, lp.name, type(e).__name__, e), self.at(k, "type"), lp.name)
        return None

    # --- checks that need no shapes ----------------------------------------------------
    def static_checks(self, k: int, lp) -> None:
        name, ltype = lp.name, lp.type
        n_top = len(lp.top)
        try:
            cls = layer_class(ltype) if ltype != "Python" else None
        except CaffeliteError:
            cls = None
        if cls is not None:
            try:
                layer = cls(lp)
                if layer.auto_top_blobs():
                    n_top = max(n_top, layer.min_top_blobs(), layer.exact_num_top_blobs())
                layer.check_blob_counts([None] * len(lp.bottom), [None] * n_top)
            except CaffeliteError as e:
                self.report("blob-count", e.message, self.at(k, e.field or "type"), name)
            except Exception:  # noqa: BLE001 - setup reports a failing layer class as 'internal'
                pass
        if len(lp.loss_weight) and len(lp.loss_weight) != n_top:
            self.report("loss-weight-count", "loss_weight must be unspecified or specified once per top blob. "
                        "(%d weight(s), %d top(s))" % (len(lp.loss_weight), n_top), self.at(k, "loss_weight"),
                        name)
        no_backward = ltype in NO_BACKWARD or (cls is not None and not cls.has_backward)
        for j, w in enumerate(lp.loss_weight):
            if w and no_backward:
                self.report("loss-weight-no-backward", "loss_weight %g on %s layer '%s', which has no gradient: "
                            "Caffe would treat top '%s' as a loss and abort in Backward (NOT_IMPLEMENTED)."
                            % (w, ltype, name, lp.top[j] if j < len(lp.top) else "?"),
                            self.at(k, "loss_weight[%d]" % j), name)
        if ltype == "BatchNorm":
            for j, spec in enumerate(lp.param):
                if spec.HasField("lr_mult") and spec.lr_mult != 0:
                    self.report("batchnorm-lr-mult", "BatchNorm param %d has lr_mult %g: Cannot configure batch "
                                "normalization statistics as layer parameters (Caffe CHECK). Use lr_mult: 0 or "
                                "omit the param blocks." % (j, spec.lr_mult), self.at(k, "param[%d].lr_mult" % j),
                                name)
        if ltype in WEIGHTED_TYPES and self.trainable_net:
            sub = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
                   "InnerProduct": "inner_product_param", "Embed": "embed_param",
                   "RNN": "recurrent_param", "LSTM": "recurrent_param"}[ltype]
            frozen = len(lp.param) > 0 and all(s.HasField("lr_mult") and s.lr_mult == 0 for s in lp.param[:1])
            if not getattr(lp, sub).HasField("weight_filler") and not frozen:
                self.report("missing-weight-filler", "%s layer '%s' has no weight_filler: its weights start "
                            "as constant 0 (Caffe's default filler), so its outputs get identical gradients "
                            "and never differ, unless weights are loaded from a .caffemodel."
                            % (ltype, name), self.at(k, sub), name,
                            hint="add %s { weight_filler { type: \"xavier\" } } (or gaussian/msra)" % sub)
        lp_loss = lp.loss_param
        if lp.HasField("loss_param") and ltype in LOSS_TYPES:
            has_norm, has_legacy = lp_loss.HasField("normalization"), lp_loss.HasField("normalize")
            if ltype not in NORMALIZED_LOSSES and (has_norm or has_legacy):
                self.report("normalization-ignored", "%s ignores loss_param.%s: it always divides by the batch "
                            "size N." % (ltype, "normalization" if has_norm else "normalize"),
                            self.at(k, "loss_param.normalization" if has_norm else "loss_param.normalize"), name)
            elif has_norm and has_legacy:
                self.report("normalize-ignored", "normalize: %s is ignored because normalization: %s is set "
                            "(Caffe reads normalize only when normalization is unset)."
                            % (str(lp_loss.normalize).lower(), NORM_NAMES[lp_loss.normalization]),
                            self.at(k, "loss_param.normalize"), name)
            elif has_legacy and ltype == "InfogainLoss":
                self.report("layer-config", 'normalize is deprecated. use "normalization" (InfogainLoss CHECKs '
                            "that normalize is unset)", self.at(k, "loss_param.normalize"), name)
            elif has_legacy:
                mode = NORM_NAMES[resolved_normalization(lp_loss)]
                self.report("normalize-deprecated", "normalize is deprecated: normalize: %s means "
                            "normalization: %s%s." % (str(lp_loss.normalize).lower(), mode,
                                                      " (not NONE)" if not lp_loss.normalize else ""),
                            self.at(k, "loss_param.normalize"), name,
                            hint="write loss_param { normalization: %s }" % mode)

    # --- checks that use shapes ----------------------------------------------------------
    def semantic_checks(self, k: int, lp, bottom_shapes: list) -> None:
        name, ltype = lp.name, lp.type
        scores = bottom_shapes[0] if bottom_shapes else None
        label = lp.bottom[1] if len(lp.bottom) > 1 else None
        if ltype == "SoftmaxWithLoss" and len(lp.top) == 2:
            rest = ""
            if lp.HasField("loss_param"):
                rest = " loss_param { %s }" % text_format.MessageToString(lp.loss_param, as_one_line=True)
            axis = ""
            if lp.HasField("softmax_param"):
                axis = " softmax_param { %s }" % text_format.MessageToString(lp.softmax_param, as_one_line=True)
            rewrite = SOFTMAX_REWRITE.format(name=name, score=lp.bottom[0] if lp.bottom else "?",
                                             label=label or "?", loss=lp.top[0], prob=lp.top[1], rest=rest,
                                             axis=axis)
            self.report("softmax-two-tops", "SoftmaxWithLoss layer '%s' has two tops ('%s', '%s'): caffelite "
                        "runs it (the second top is the softmax probability, loss weight 0), but BVLC Caffe "
                        "aborts on it (issue #2968). Portable rewrite:" % (name, lp.top[0], lp.top[1]),
                        self.at(k, "top[1]"), name, hint=rewrite)
        if ltype in LOSS_TYPES | {"Accuracy"} and scores is not None:
            self.loss_shapes(k, lp, scores)
        if ltype in NORMALIZED_LOSSES:
            ignore = lp.loss_param.ignore_label if lp.loss_param.HasField("ignore_label") else None
            if label is not None:
                self.labels_ignored.append((label, ignore, name))
        if ltype == "Accuracy" and label is not None:
            p = lp.accuracy_param
            self.accuracies.append((k, label, p.ignore_label if p.HasField("ignore_label") else None))

    def loss_shapes(self, k: int, lp, scores: tuple) -> None:
        name, ltype = lp.name, lp.type
        if ltype in ("SoftmaxWithLoss", "InfogainLoss", "Accuracy"):
            axis = lp.accuracy_param.axis if ltype == "Accuracy" else lp.softmax_param.axis
            if not -len(scores) <= axis < len(scores):
                return
            axis %= len(scores)
            outer, channels = _prod(scores[:axis]), scores[axis]
            inner = _prod(scores[axis + 1:])
        else:
            outer, channels, inner = (scores[0] if scores else 1), None, _prod(scores[1:])
        lparam = lp.accuracy_param if ltype == "Accuracy" else lp.loss_param
        ignore = lparam.ignore_label if lparam.HasField("ignore_label") else None
        if ignore is not None and channels is not None and 0 <= ignore < channels and ltype != "Accuracy":
            self.report("ignore-label-is-class", "ignore_label %d is a valid class index (C = %d classes, "
                        "labels 0..%d): class %d is never learned and its positions are skipped."
                        % (ignore, channels, channels - 1, ignore), self.at(k, "loss_param.ignore_label"), name)
        if ltype not in NORMALIZED_LOSSES:
            return
        default = NORMALIZED_LOSSES[ltype]
        mode = resolved_normalization(lp.loss_param, default)
        lpar = lp.loss_param
        if lpar.HasField("normalization"):
            why = "normalization: %s (explicit)" % NORM_NAMES[mode]
        elif lpar.HasField("normalize"):
            why = "normalize: %s resolves to %s" % (str(lpar.normalize).lower(), NORM_NAMES[mode])
            if not lpar.normalize:
                why += ", not NONE"
        else:
            why = "%s (the default%s)" % (NORM_NAMES[mode], " of SigmoidCrossEntropyLoss" if ltype ==
                                          "SigmoidCrossEntropyLoss" else "")
        positions = outer * inner
        if mode == _Norm.VALID and ignore is not None:
            value = "the number of labels != %d (at most %d = N·positions %d×%d), known only at run time" % (
                ignore, positions, outer, inner)
        else:
            n = get_normalizer(mode, outer, inner, -1)
            formula = {_Norm.FULL: "N·positions = %d×%d" % (outer, inner),
                       _Norm.VALID: "every label counts (no ignore_label): %d×%d" % (outer, inner),
                       _Norm.BATCH_SIZE: "N = %d" % outer, _Norm.NONE: "1"}[mode]
            value = "%g (%s)" % (n, formula)
            if mode in (_Norm.BATCH_SIZE, _Norm.NONE) and inner > 1:
                value += ": the loss is a sum over all %d positions per image" % inner
        self.report("normalization", "%s loss '%s' (scores %s): %s; divides the summed loss by %s."
                    % (ltype, name, "x".join(map(str, scores)), why, value),
                    self.at(k, "loss_param.normalization" if lpar.HasField("normalization") else
                            "loss_param.normalize" if lpar.HasField("normalize") else "type"), name)
        if mode in (_Norm.BATCH_SIZE, _Norm.NONE) and inner >= LARGE_SPATIAL:
            lr = ("; this solver's base_lr %g acts like %g on a VALID-normalized loss" % (self.base_lr,
                                                                                        self.base_lr * inner)
                  if self.base_lr is not None else "")
            self.report("unnormalized-loss", "%s loss '%s' is summed over %d positions per image (%s): loss "
                        "and gradients are ~%d× those of VALID/FULL normalization, so the learning rate must be "
                        "~%d× smaller; FCN's normalize: false nets train with base_lr 1e-10 (momentum 0.99)%s."
                        % (ltype, name, inner, NORM_NAMES[mode], inner, inner, lr),
                        self.at(k, "loss_param.normalize" if lpar.HasField("normalize") else
                                "loss_param.normalization"), name)

    def check_accuracy_ignore(self) -> None:
        for k, label, acc_ignore in self.accuracies:
            for loss_label, ignore, loss_name in self.labels_ignored:
                if loss_label == label and ignore is not None and acc_ignore != ignore:
                    self.report("accuracy-ignore-label", "loss '%s' ignores label %d but this Accuracy layer on "
                                "the same labels '%s' %s: it counts the ignored positions."
                                % (loss_name, ignore, label, "has no ignore_label" if acc_ignore is None
                                   else "ignores %d instead" % acc_ignore),
                                self.at(k, "accuracy_param.ignore_label" if acc_ignore is not None else "type"),
                                hint="add accuracy_param { ignore_label: %d }" % ignore)


def _search(msg: Message, name: str) -> Field | None:
    for f in msg.fields:
        if f.name == name:
            return f
    for f in msg.fields:
        if f.message is not None:
            hit = _search(f.message, name)
            if hit is not None:
                return hit
    return None


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _field(e) -> str | None:
    return getattr(e, "field", None)


def _short(e) -> str:
    return getattr(e, "message", None) or str(e)


_CHEAP = {"constant", "uniform", "gaussian", "positive_unitball", "xavier", "msra"}


def _cheap_fillers(msg) -> None:
    """Turn random fillers into constant 0: shape inference needs no random numbers (VGG's fc6
    has 100M weights).  Unknown filler names stay, so their errors are still reported."""
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        values = value if fd.is_repeated else [value]
        for v in values:
            if fd.message_type.name == "FillerParameter":
                if v.type in _CHEAP:
                    v.type, v.value, v.sparse = "constant", 0.0, -1
            else:
                _cheap_fillers(v)


# --- entry points ----------------------------------------------------------------------------
def _read(path: str) -> tuple[str | None, str | None]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, "cannot read %s: %s" % (path, e.strerror or e)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, "%s is not a UTF-8 text prototxt (byte %d); is it a binary .caffemodel?" % (path, e.start)


def _parse(checker: _Checker, message) -> bool:
    checker.check_fields(checker.tree, message.DESCRIPTOR)
    try:
        text_format.Parse(checker.text, message, allow_unknown_field=True)
    except text_format.ParseError as e:
        msg = str(e)
        prefix = "%s:%s : " % (e.GetLine(), e.GetColumn())
        msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        if msg.startswith("'") and "': " in msg:  # protobuf quotes the offending line first
            msg = msg.split("': ", 1)[1]
        if "has no field named" in msg and any(d.code == "unknown-field" for d in checker.diags.values()):
            return False
        where = Field("", e.GetLine() or 0, e.GetColumn() or 1)
        checker.report("parse-error", msg.replace("caffelite.", ""), where if e.GetLine() else None)
        return False
    except (ValueError, TypeError) as e:
        checker.report("parse-error", str(e))
        return False
    return True


def _looks_like_solver(text: str) -> bool:
    tree = parse_locations(text)
    names = {f.name for f in tree.fields}
    solver_only = {"base_lr", "lr_policy", "max_iter", "net", "train_net", "solver_mode", "test_iter",
                   "snapshot_prefix", "solver_type", "net_param"}
    return bool(names & solver_only) and not names & {"layer", "layers"}


def check_text(text: str, source: str = "<string>", *, inputs: dict | None = None,
               phases: list[int] | None = None, stages: list[str] | None = None,
               allow_python_layers: bool = False, solver_base_lr: float | None = None) -> CheckResult:
    """Check prototxt text (a net, or a solver when it looks like one)."""
    if _looks_like_solver(text):
        return _check_solver_text(text, source, inputs or {}, phases, allow_python_layers)
    checker = _Checker(source, text, inputs or {}, allow_python_layers, solver_base_lr)
    result = CheckResult(source)
    param = caffe_pb2.NetParameter()
    if _parse(checker, param):
        _check_net(checker, param, phases, stages)
    result.diagnostics = _finish(checker)
    result.shapes = checker.shapes
    return result


def _check_net(checker: _Checker, param, phases, stages=None) -> None:
    from caffelite import upgrade

    legacy = len(param.layers) > 0 or len(param.input_dim) > 0
    if legacy:
        checker.report("legacy-format", "net in a deprecated format (%s); Caffe upgrades it on load. "
                       "`caffelite upgrade` writes the current format." %
                       ("V1 `layers`" if len(param.layers) else "net-level input_dim"),
                       checker.tree.fields[0] if checker.tree.fields else None)
    try:
        upgrade.upgrade_net_as_needed(param, checker.source)
    except CaffeliteError as e:
        checker.report("upgrade-failed", _short(e))
        return
    if len(param.layers) and not len(param.layer):
        checker.report("upgrade-failed", "this V0/V1 net could not be upgraded here (caffelite.upgrade does not "
                       "convert it yet); nothing else checked.", severity=NOTE)
        return
    checker.map_layers(param)
    checker.trainable_net = any(lp.type in LOSS_TYPES for lp in param.layer)
    mentioned = sorted({st for lp in param.layer for r in list(lp.include) + list(lp.exclude)
                        for st in list(r.stage) + list(r.not_stage)})
    for phase in phases or [TRAIN, TEST]:
        name = "TRAIN" if phase == TRAIN else "TEST"
        if stages is not None or len(param.state.stage) or not mentioned:
            given = tuple(stages if stages is not None else param.state.stage)
            variants = [(given, name + (" stage=%s" % ",".join(given) if given else ""))]
        else:  # the net is meant to be run with a stage: check each, and without one
            variants = [((), name + " (no stage)")] + [((st,), "%s stage=%s" % (name, st)) for st in mentioned]
        for given, label in variants:
            checker.analyse(param, phase, given, label)
        labels = {label for _, label in variants}
        for d in checker.diags.values():
            seen = labels.intersection(d.phases)
            if len(labels) > 1 and d.severity == ERROR and seen and seen != labels:
                d.severity = WARNING  # Caffe builds the net in the other stages
                d.hint = d.hint or ("an error only in some NetStates; it does not occur in %s. Check one "
                                    "state with --stage NAME" % ", ".join(sorted(labels - seen)))
    checker.phase_name = ""
    checker.all_phases = sorted(checker.shapes)


def _check_solver_text(text, source, inputs, phases, allow_python) -> CheckResult:
    """Check a solver, the nets it gives inline, and the net files it names that exist here."""
    checker = _Checker(source, text, inputs, allow_python)
    result = CheckResult(source)
    param = caffe_pb2.SolverParameter()
    extra: list[Diagnostic] = []
    if _parse(checker, param):
        check_solver_param(checker, param)
        base_lr = param.base_lr if param.HasField("base_lr") else None
        for fld in ("net_param", "train_net_param"):
            if not param.HasField(fld):
                continue
            sub = _Checker(source, text, inputs, allow_python, base_lr)  # locations inside the solver file
            sub.tree = checker.tree.get(fld).message or Message()
            _check_net(sub, getattr(param, fld), phases)
            for d in _finish(sub):
                checker.diags[(d.code, d.line, d.column, d.message)] = d
            checker.shapes.update(sub.shapes)
        for fld in ("net", "train_net"):
            path = getattr(param, fld)
            if path and os.path.isfile(path):  # Caffe resolves it against the working directory
                net_text, _ = _read(path)
                if net_text is not None:
                    extra += check_text(net_text, path, inputs=inputs, phases=phases,
                                        allow_python_layers=allow_python, solver_base_lr=base_lr).diagnostics
    result.diagnostics = _finish(checker) + extra
    result.shapes = checker.shapes
    return result


def check_solver_param(checker: _Checker, p) -> None:
    """Solver diagnostics: lr_policy and contradictory fields."""
    def at(name):
        return checker.tree.get(name)

    if not p.lr_policy:
        checker.report("solver-lr-policy", "lr_policy is not set: Caffe aborts at the first iteration with "
                       "'Unknown learning rate policy: '.", at("base_lr"),
                       hint="add lr_policy: \"fixed\" (or step, multistep, exp, inv, poly, sigmoid)")
    elif p.lr_policy not in LR_POLICIES:
        checker.report("solver-lr-policy", "Unknown learning rate policy: %s.%s" % (
            p.lr_policy, _did_you_mean(p.lr_policy, LR_POLICIES)), at("lr_policy"))
    policy = p.lr_policy
    uses = {"fixed": set(), "step": {"gamma", "stepsize"}, "exp": {"gamma"}, "inv": {"gamma", "power"},
            "multistep": {"gamma", "stepvalue"}, "poly": {"power"}, "sigmoid": {"gamma", "stepsize"}}
    if policy in uses:
        need = uses[policy]
        for fld in sorted(need):
            is_set = len(p.stepvalue) > 0 if fld == "stepvalue" else p.HasField(fld)
            if not is_set:
                sev = ERROR if fld == "stepsize" and policy == "step" else WARNING
                effect = {"gamma": "gamma defaults to 0, so the learning rate drops to 0",
                          "stepsize": "stepsize 0 divides by zero in Caffe's step policy" if policy == "step"
                          else "stepsize defaults to 0",
                          "power": "power defaults to 0, so the policy keeps the rate fixed",
                          "stepvalue": "without stepvalue the rate never changes"}[fld]
                checker.report("solver-fields", "lr_policy \"%s\" needs %s: %s." % (policy, fld, effect),
                               at("lr_policy"), severity=sev)
        for fld in ("stepsize", "stepvalue", "power"):
            is_set = len(p.stepvalue) > 0 if fld == "stepvalue" else p.HasField(fld)
            if is_set and fld not in need:
                checker.report("solver-fields", "%s is set but lr_policy \"%s\" does not use it." % (fld, policy),
                               at(fld))
        values = list(p.stepvalue)
        if any(b <= a for a, b in zip(values, values[1:])):
            checker.report("solver-fields", "stepvalue must increase (%s): Caffe steps through them in order."
                           % values, at("stepvalue"))
    if p.HasField("solver_type") and p.HasField("type"):
        checker.report("solver-fields", "both solver_type and type are set: Caffe's upgrade aborts ('old "
                       "solver_type field (enum) and new type field (string) cannot be both specified').",
                       at("solver_type"), severity=ERROR)
    elif p.HasField("solver_type"):
        checker.report("legacy-format", "solver_type is deprecated; write type: \"%s\"."
                       % caffe_pb2.SolverParameter.SolverType.Name(p.solver_type).replace("ADA", "Ada")
                       .replace("NESTEROV", "Nesterov").replace("RMSPROP", "RMSProp").replace("ADAM", "Adam"),
                       at("solver_type"))
    solver = p.type
    if p.HasField("solver_type") and not p.HasField("type"):
        solver = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}.get(
            p.solver_type, "SGD")
    if solver in ("AdaGrad", "RMSProp") and p.momentum != 0:
        checker.report("solver-fields", "Momentum cannot be used with %s (Caffe CHECK; momentum %g)."
                       % (solver, p.momentum), at("momentum"), severity=ERROR)
    nets = [f for f in ("net", "net_param", "train_net", "train_net_param") if p.HasField(f)]
    if len(nets) > 1:
        checker.report("solver-fields", "%s are mutually exclusive: give the train net once (Caffe CHECK)."
                       % ", ".join(nets), at(nets[1]), severity=ERROR)
    if not p.HasField("base_lr"):
        checker.report("solver-fields", "base_lr is not set (0): nothing is learned.", None)
    if len(p.test_iter) and not p.test_interval:
        checker.report("solver-fields", "test_iter is set but test_interval is 0: Caffe never tests.",
                       at("test_iter"))


def _finish(checker: _Checker) -> list[Diagnostic]:
    """Sorted diagnostics; phases are kept only for those not seen in every checked state."""
    everywhere = set(getattr(checker, "all_phases", []))
    for d in checker.diags.values():
        if everywhere and set(d.phases) >= everywhere:
            d.phases = []
    return sorted(checker.diags.values(), key=lambda d: (d.file, d.line or 0, d.column or 0, d.code))


def check_file(path: str, *, solver: str | None = None, inputs: dict | None = None,
               phases: list[int] | None = None, stages: list[str] | None = None,
               allow_python_layers: bool = False) -> CheckResult:
    """Check a net prototxt (and optionally a solver): what ``caffelite check`` prints."""
    path = os.fspath(path)
    text, err = _read(path)
    if text is None:
        result = CheckResult(path, unreadable=True)
        result.diagnostics.append(Diagnostic("file-unreadable", err, path))
        return result
    base_lr = None
    solver_result = None
    if solver is not None:
        stext, serr = _read(solver)
        if stext is None:
            result = CheckResult(path, unreadable=True)
            result.diagnostics.append(Diagnostic("file-unreadable", serr, solver))
            return result
        solver_result = _check_solver_text(stext, solver, inputs or {}, phases, allow_python_layers)
        sp = caffe_pb2.SolverParameter()
        try:
            text_format.Parse(stext, sp, allow_unknown_field=True)
            base_lr = sp.base_lr if sp.HasField("base_lr") else None
        except text_format.ParseError:
            pass
    result = check_text(text, path, inputs=inputs, phases=phases, stages=stages,
                        allow_python_layers=allow_python_layers, solver_base_lr=base_lr)
    if solver_result is not None:
        result.diagnostics = solver_result.diagnostics + result.diagnostics
    return result


def infer_shapes(path: str, phase: int = TEST, inputs: dict | None = None, stages: list[str] | None = None,
                 allow_python_layers: bool = False) -> dict[str, list[int] | None]:
    """Blob name -> shape (None when unknown) of a net in one phase, as the checker infers them."""
    result = check_file(path, inputs=inputs, phases=[phase], stages=list(stages or []),
                        allow_python_layers=allow_python_layers)
    return next(iter(result.shapes.values()), {})
