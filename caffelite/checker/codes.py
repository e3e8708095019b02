"""The documented diagnostic codes of ``caffelite check``: severity and the Caffe behaviour behind each.

``caffelite check --list-codes`` prints them (:func:`list_codes`).
"""

from __future__ import annotations

from caffelite.suggest import FORK_FIELDS  # noqa: F401  (importable from here, as before)

__all__ = ["ERROR", "WARNING", "NOTE", "CODES", "FORK_FIELDS", "list_codes"]

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
    "blob-over-int-max": (ERROR, "A blob of more than INT_MAX (2^31 - 1) elements: Caffe's Blob::Reshape "
                                 "CHECKs 'blob size exceeds INT_MAX' and aborts."),
    "weights-mismatch": (ERROR, "--weights: a layer of the .caffemodel that does not fit the net's layer of the same "
                                "name (blob count, shape or value count). Caffe's CopyTrainedLayersFrom aborts "
                                "('Incompatible number of blobs', 'Cannot copy param ... shape mismatch')."),
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
                                   "must shrink by as much (FCN's normalize: false trains with base_lr 1e-10). "
                                   "A note when the solver's base_lr·H·W is at most 0.1: its rate accounts for it."),
    "loss-weight-no-backward": (ERROR, "A non-zero loss_weight on a layer without a gradient (Accuracy, "
                                       "ArgMax, data layers, ...): Caffe treats its top as a loss and aborts in "
                                       "Backward (NOT_IMPLEMENTED)."),
    "missing-weight-filler": (WARNING, "A trainable layer without weight_filler: Caffe's default filler is "
                                       "constant 0, so every output unit gets the same gradient and they "
                                       "never differ (fine only when weights are loaded from a .caffemodel). "
                                       "Not reported for layers whose weights --weights gives; one note when no "
                                       "layer of the net has a filler (a net meant for loaded weights)."),
    "batchnorm-lr-mult": (ERROR, "A BatchNorm param with non-zero lr_mult: its blobs are statistics, not "
                                 "weights. Caffe CHECKs: 'Cannot configure batch normalization statistics as "
                                 "layer parameters.'"),
    "solver-lr-policy": (ERROR, "A solver without a (known) lr_policy: Caffe aborts at the first "
                                "iteration with 'Unknown learning rate policy'."),
    "solver-fields": (WARNING, "Solver fields that contradict each other or the lr_policy (stepsize "
                               "with 'multistep', gamma unset for 'step', momentum with AdaGrad, ...); the "
                               "message says what Caffe does with them. Severity error where Caffe aborts."),
}

SILENCING = """Silencing a code:
    --ignore CODE                       on the command line (repeatable): not reported anywhere;
    # caffelite: ignore[CODE, CODE2]    in the prototxt: not reported on that line (written alone on a
                                        line: on the next line too; on a layer's first line: in the
                                        whole layer)."""


def list_codes() -> str:
    """Every diagnostic code with its severity and the Caffe behaviour behind it, then how to silence one."""
    out = []
    for code, (severity, doc) in CODES.items():
        out.append("%s (%s)\n    %s" % (code, severity, doc))
    return "\n".join(out + ["", SILENCING])
