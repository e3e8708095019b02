"""Net rules of ``caffelite check``: what Caffe's Net::Init would refuse, or accept with surprising results.

For each NetState (phase and stages), the layers are filtered and wired with the rules of
:mod:`caffelite.net_passes` (as ``Net`` builds), but where ``Net`` raises, the checker reports
the place and goes on.  Shapes come from :mod:`caffelite.shape_inference`; why a shape is
unknown becomes a diagnostic.  Python-layer modules are imported only when ``allow_python``.
"""

from __future__ import annotations

from google.protobuf import text_format

from caffelite.checker.codes import NOTE
from caffelite.checker.report import Reporter, did_you_mean, error_field, error_text
from caffelite.errors import (
    BlobMemoryError,
    CaffeFileNotFoundError,
    CaffeliteError,
    FileFormatError,
    LabelError,
    ShapeError,
    UnsupportedError,
)
from caffelite.layer_factory import layer_class, layer_type_list, layer_types_where
from caffelite.layers.loss import get_normalizer, resolved_normalization
from caffelite.net_passes import (
    INCLUDE_AND_EXCLUDE,
    duplicate_top_message,
    is_in_place,
    layer_included,
    num_top_blobs,
    propagate_down_count_error,
    set_state,
    unknown_bottom_message,
)
from caffelite.proto import caffe_pb2
from caffelite.protoio import weights_mismatch
from caffelite.shape_inference import ShapeInference
from caffelite.suggest import fork_layer_hint

__all__ = ["NetChecker", "BVLC_TYPES", "LOSS_TYPES", "NORMALIZED_LOSSES", "LABELED_TYPES", "NO_BACKWARD",
           "FILE_DATA_TYPES", "WEIGHTED_TYPES", "LARGE_SPATIAL", "SOFTMAX_REWRITE"]

BVLC_TYPES = frozenset("""
AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss Convolution Crop
Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter Flatten HDF5Data
HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM LSTMUnit Log MVN
MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU Reduction Reshape SPP
Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split Swish TanH Threshold
Tile WindowData""".split())
# Layer facts, derived from the layer classes (caffelite.layer.Layer documents each one).
LOSS_TYPES = layer_types_where(lambda c: c.is_loss)
NORMALIZED_LOSSES = {t: layer_class(t).default_normalization
                     for t in layer_types_where(lambda c: c.default_normalization is not None)}
LABELED_TYPES = layer_types_where(lambda c: c.label_bottom is not None)
NO_BACKWARD = layer_types_where(lambda c: c.loss_weight_aborts())  # a loss_weight on their tops aborts Caffe
FILE_DATA_TYPES = layer_types_where(lambda c: c.reads_source)
DATA_TYPES = layer_types_where(lambda c: c.provides_data)
WEIGHTED_TYPES = layer_types_where(lambda c: c.weight_param is not None)
LARGE_SPATIAL = 1000  # positions per image above which an unnormalized loss is flagged
# base_lr·positions at most this: the solver's rate accounts for a summed loss (BVLC's normalized nets use <= 0.1)
NORMALIZED_LR_MAX = 0.1

SOFTMAX_REWRITE = ('layer {{ name: "{name}" type: "SoftmaxWithLoss" bottom: "{score}" bottom: "{label}"\n'
                   '        top: "{loss}"{rest} }}\n'
                   'layer {{ name: "{prob}" type: "Softmax" bottom: "{score}" top: "{prob}"{axis} }}')

_Norm = caffe_pb2.LossParameter
_norm_name = _Norm.NormalizationMode.Name  # LossParameter.NormalizationMode value -> its name


class NetChecker(Reporter):
    """The diagnostics of one net prototxt, checked in one or more NetStates (:meth:`analyse`).

    ``inputs``: blob -> shape given on the command line; ``solver_base_lr``: the base_lr of the
    solver that trains the net, if known (to say how an unnormalized loss scales it); ``weights``:
    the layers of a .caffemodel the net starts from (checked to fit; their params need no filler).
    """

    def __init__(self, source: str, text: str, inputs: dict[str, tuple[int, ...]], allow_python: bool,
                 solver_base_lr: float | None = None, weights: dict | None = None):
        super().__init__(source, text)
        self.inputs = dict(inputs)
        self.allow_python = allow_python
        self.base_lr = solver_base_lr
        self.weights = weights  # layer name -> its LayerParameter in the --weights .caffemodel (None: none given)
        self.shapes: dict[str, dict[str, list[int] | None]] = {}  # NetState label -> blob -> shape
        self.trainable_net = False

    # --- per-NetState analysis ---------------------------------------------------------
    def analyse(self, param, phase: int, stages: tuple[str, ...], label: str, state=None) -> None:
        """Filter the net for (phase, stages) as Caffe's FilterNet does, then walk its layers.

        ``state``: the whole NetState (a solver's, with level) instead of (phase, stages).
        """
        self.phase_name = label
        if state is None:
            state = caffe_pb2.NetState()
            state.CopyFrom(param.state)
            set_state(state, phase, stages)
        phase = state.phase
        self.net_has_inputs = bool(len(param.input)) or any(lp.type == "Input" for lp in param.layer)
        self.net_has_data = any(lp.type in DATA_TYPES | {"Python"}
                                and not len(lp.bottom) for lp in param.layer)
        self.labels_ignored: list[tuple[str, int | None, str]] = []  # (label blob, ignore, loss name)
        self.accuracies: list[tuple[int, str, int | None]] = []
        self.inference = ShapeInference(param, self.inputs)
        kept = []
        for k, lp in enumerate(param.layer):
            if len(lp.include) and len(lp.exclude):
                self.report("include-exclude", "%s (layer '%s')" % (INCLUDE_AND_EXCLUDE, lp.name),
                            self.at(k, "exclude"), lp.name)
                continue
            if layer_included(state, lp):
                kept.append(k)
        self.unfilled: list[tuple[int, str, str]] = []  # (layer index, name, sub-message) without weight_filler
        self.filled = 0
        for k in kept:
            lp = caffe_pb2.LayerParameter()
            lp.CopyFrom(param.layer[k])
            if not lp.HasField("phase"):
                lp.phase = phase
            self.layer(k, lp)
        self.check_accuracy_ignore()
        self.report_unfilled()
        shapes = self.inference.shapes
        for name in self.inputs:
            if name not in shapes:
                self.report("unknown-input", "--input %s: no layer of the net produces a blob '%s'.%s"
                            % (name, name, did_you_mean(name, shapes)))
        self.shapes[label] = {n: (list(s) if s is not None else None) for n, s in shapes.items()}

    def layer(self, k: int, lp) -> None:
        """Wire layer ``k`` (AppendBottom/AppendTop rules), check it, and infer its tops' shapes."""
        name, ltype = lp.name, lp.type
        shapes = self.inference.shapes
        pd_error = propagate_down_count_error(lp)
        if pd_error is not None:
            self.report("propagate-down-count", pd_error, self.at(k, "propagate_down"), name)
        for j, b in enumerate(lp.bottom):
            if b in shapes:
                continue
            if ltype in LABELED_TYPES and j >= 1 and self.net_has_inputs and not self.net_has_data:
                restricted = [r.phase for r in lp.include if r.HasField("phase")]
                hint = ("Remove the layer from the deploy net, or use a Softmax layer for probabilities; in a "
                        "train_val net, add include { phase: TRAIN }.")
                if restricted:  # include { phase: TRAIN } would not help: no phase of a deploy net has labels
                    hint = ("Remove the layer from the deploy net (it is already restricted to phase %s, and no "
                            "phase of a deploy net has labels); use a Softmax layer for probabilities."
                            % caffe_pb2.Phase.Name(restricted[0]))
                self.report("deploy-loss", "%s layer '%s' needs the label '%s', which this deploy net does "
                            "not provide (Caffe: Unknown bottom blob '%s')." % (ltype, name, b, b),
                            self.at(k, "bottom[%d]" % j), name, hint=hint)
            else:
                self.report("unknown-bottom", "%s.%s" % (unknown_bottom_message(b, name, j), did_you_mean(b, shapes)),
                            self.at(k, "bottom[%d]" % j), name)
        for j, t in enumerate(lp.top):
            if t in shapes and not is_in_place(lp, j):
                self.report("duplicate-top", duplicate_top_message(t), self.at(k, "top[%d]" % j), name)
        self.static_checks(k, lp)
        error = self.inference.add_layer(lp, self.resolve_type(k, lp))
        if error is not None:
            self.report_setup_error(k, lp, error)
        self.check_weights(k, lp)
        self.semantic_checks(k, lp, self.inference.bottom_shapes(lp))

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
        elif fork_layer_hint(ltype):
            self.report("unknown-layer-type", "Unknown layer type: %s. %s" % (ltype, fork_layer_hint(ltype)),
                        self.at(k, "type"), lp.name,
                        hint="BVLC Caffe (and caffelite) cannot build this net; a Caffe built from that fork can.")
        else:
            self.report("unknown-layer-type", "Unknown layer type: %s.%s" % (
                ltype, did_you_mean(ltype, BVLC_TYPES | set(layer_type_list()))), self.at(k, "type"),
                lp.name, hint="BVLC Caffe's layer types: " + ", ".join(sorted(BVLC_TYPES)))
        return None

    def report_setup_error(self, k: int, lp, e: Exception) -> None:
        """What the layer's setup raised, as the diagnostic of its kind."""
        if isinstance(e, (CaffeFileNotFoundError, FileFormatError, UnsupportedError, ImportError, OSError)):
            if not len(lp.bottom):
                self.report("unknown-shape", "%s layer '%s': its data cannot be read here (%s); tops %s have "
                            "unknown shapes (give them with --input NAME=SHAPE)."
                            % (lp.type, lp.name, error_text(e), list(lp.top)), self.at(k, "type"), lp.name)
            else:
                self.report("layer-config", "%s" % error_text(e), self.at(k, error_field(e)), lp.name)
        elif isinstance(e, BlobMemoryError) and "exceeds INT_MAX" in e.message:
            self.report("blob-over-int-max", "%s (Caffe's Blob::Reshape CHECKs count <= INT_MAX and aborts)"
                        % error_text(e), self.at(k, "top"), lp.name)
        elif isinstance(e, BlobMemoryError):
            self.report("too-large", error_text(e), self.at(k, "top"), lp.name)
        elif isinstance(e, LabelError):
            self.report("label-count", error_text(e), self.at(k, error_field(e) or "bottom[1]"), lp.name)
        elif isinstance(e, ShapeError):
            self.report("shape-mismatch", error_text(e), self.at(k, error_field(e) or "bottom"), lp.name)
        elif isinstance(e, CaffeliteError):
            fld = error_field(e)
            code = "layer-config"
            if fld == "loss_weight":
                code = "loss-weight-count"
            elif "blob(s)" in e.message or "one top blob as output for each" in e.message:
                code = "blob-count"
            self.report(code, error_text(e), self.at(k, fld or "type"), lp.name)
        else:  # a bug in a layer must not crash the checker
            self.report("internal", "setting up %s layer '%s' failed: %s: %s"
                        % (lp.type, lp.name, type(e).__name__, e), self.at(k, "type"), lp.name)

    def report_unfilled(self) -> None:
        """missing-weight-filler: per layer, or once when no layer has one (a net meant for loaded weights)."""
        if len(self.unfilled) > 1 and not self.filled:
            k, name, ltype, sub = self.unfilled[0]
            names = [u[1] for u in self.unfilled]
            self.report("missing-weight-filler", "no layer of this net has a weight_filler (%d layers: %s): its "
                        "weights must come from a .caffemodel; trained from scratch, they would start as constant 0 "
                        "and every unit of a layer would get the same gradient."
                        % (len(names), ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")),
                        self.at(k, sub), name, severity=NOTE,
                        hint="check that the weights fit with --weights W.caffemodel")
            return
        for k, name, ltype, sub in self.unfilled:
            self.report("missing-weight-filler", "%s layer '%s' has no weight_filler: its weights start "
                        "as constant 0 (Caffe's default filler), so its outputs get identical gradients "
                        "and never differ, unless weights are loaded from a .caffemodel."
                        % (ltype, name), self.at(k, sub), name,
                        hint="add %s { weight_filler { type: \"xavier\" } } (or gaussian/msra), or give the "
                             "weights with --weights W.caffemodel" % sub)

    def check_weights(self, k: int, lp) -> None:
        """--weights: the .caffemodel's blobs for this layer fit its parameters (Caffe's CopyTrainedLayersFrom)."""
        if self.weights is None or lp.name not in self.weights or lp.name not in self.inference.param_shapes:
            return
        message = weights_mismatch(self.inference.param_shapes[lp.name], self.weights[lp.name])
        if message is not None:
            self.report("weights-mismatch", message, self.at(k, "name"), lp.name)

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
                n_top = num_top_blobs(layer, n_top)
                layer.check_blob_counts([None] * len(lp.bottom), [None] * n_top)
            except CaffeliteError as e:
                self.report("blob-count", e.message, self.at(k, e.field or "type"), name)
            except Exception:  # noqa: BLE001 - setup reports a failing layer class as 'internal'
                pass
        if len(lp.loss_weight) and len(lp.loss_weight) != n_top:
            self.report("loss-weight-count", "loss_weight must be unspecified or specified once per top blob. "
                        "(%d weight(s), %d top(s))" % (len(lp.loss_weight), n_top), self.at(k, "loss_weight"),
                        name)
        no_backward = cls is not None and cls.loss_weight_aborts()
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
            sub = layer_class(ltype).weight_param
            frozen = len(lp.param) > 0 and all(s.HasField("lr_mult") and s.lr_mult == 0 for s in lp.param[:1])
            loaded = self.weights is not None and len(self.weights.get(name, caffe_pb2.LayerParameter()).blobs) > 0
            if getattr(lp, sub).HasField("weight_filler"):
                self.filled += 1
            elif not (frozen or loaded):
                self.unfilled.append((k, name, ltype, sub))
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
                            % (str(lp_loss.normalize).lower(), _norm_name(lp_loss.normalization)),
                            self.at(k, "loss_param.normalize"), name)
            elif has_legacy and ltype == "InfogainLoss":
                self.report("layer-config", 'normalize is deprecated. use "normalization" (InfogainLoss CHECKs '
                            "that normalize is unset)", self.at(k, "loss_param.normalize"), name)
            elif has_legacy:
                mode = _norm_name(resolved_normalization(lp_loss))
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
                portable = caffe_pb2.LossParameter()
                portable.CopyFrom(lp.loss_param)
                if portable.HasField("normalize"):  # deprecated, and ignored beside normalization
                    portable.normalization = resolved_normalization(lp.loss_param, self.default_norm(ltype))
                    portable.ClearField("normalize")
                rest = " loss_param { %s }" % text_format.MessageToString(portable, as_one_line=True)
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
            why = "normalization: %s (explicit)" % _norm_name(mode)
        elif lpar.HasField("normalize"):
            why = "normalize: %s resolves to %s" % (str(lpar.normalize).lower(), _norm_name(mode))
            if not lpar.normalize:
                why += ", not NONE"
        else:
            why = "%s (the default%s)" % (_norm_name(mode), " of SigmoidCrossEntropyLoss" if ltype ==
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
            accounted = self.base_lr is not None and self.base_lr * inner <= NORMALIZED_LR_MAX
            if accounted:
                lr += ", which accounts for the sum"
            self.report("unnormalized-loss", "%s loss '%s' is summed over %d positions per image (%s): loss "
                        "and gradients are ~%d× those of VALID/FULL normalization, so the learning rate must be "
                        "~%d× smaller; FCN's normalize: false nets train with base_lr 1e-10 (momentum 0.99)%s."
                        % (ltype, name, inner, _norm_name(mode), inner, inner, lr),
                        self.at(k, "loss_param.normalize" if lpar.HasField("normalize") else
                                "loss_param.normalization"), name, severity=NOTE if accounted else "")

    @staticmethod
    def default_norm(ltype: str) -> int:
        return NORMALIZED_LOSSES.get(ltype, _Norm.VALID)

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


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n
