"""What to say after "it is wrong": close names, valid enum values, Caffe forks, and where it was written.

``caffelite check`` and the runtime (``Net``, the prototxt readers) give the same help for the same
mistake: a misspelled field or blob gets "Did you mean ...?" (only when the name is really close),
a wrong enum value lists the valid ones, a field or layer type of a known Caffe fork says which
fork it comes from, and an error about a layer of a prototxt file gets its line and column.
"""

from __future__ import annotations

import difflib
import re

from caffelite.proto import caffe_pb2

__all__ = ["did_you_mean", "FORK_FIELDS", "FORK_LAYERS", "fork_layer_hint", "parse_error_hint", "locate_error"]

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

_SSD = "the SSD fork (weiliu89/caffe, branch ssd)"
_FRCNN = "the Fast/Faster R-CNN fork (rbgirshick/caffe-fast-rcnn)"
# layer types of known Caffe forks -> the fork, and what BVLC Caffe offers instead (if anything)
FORK_LAYERS = {
    "Permute": (_SSD, "BVLC Caffe has no transpose layer"),
    "PriorBox": (_SSD, ""),
    "DetectionOutput": (_SSD, ""),
    "DetectionEvaluate": (_SSD, ""),
    "MultiBoxLoss": (_SSD, ""),
    "AnnotatedData": (_SSD, ""),
    "Normalize": ("the SSD and ParseNet forks", "an L2 normalization across channels; BVLC Caffe has none"),
    "ROIPooling": (_FRCNN, "BVLC's Pooling pools the whole map, not regions of interest"),
    "SmoothL1Loss": (_FRCNN, ""),
    "PSROIPooling": ("the R-FCN fork (daijifeng001/caffe-rfcn)", ""),
    "Axpy": ("SENet (hujie-frank/SENet)", "a·x + y per channel; BVLC Caffe spells it Scale (axis 0) then "
             "Eltwise SUM"),
    "BN": ("the TSN, SegNet and PSPNet forks", "BVLC Caffe uses BatchNorm followed by Scale (bias_term: true)"),
    "VideoData": ("the TSN fork (yjxiong/caffe)", ""),
    "Interp": ("the DeepLab and PSPNet forks", "BVLC Caffe upsamples with Deconvolution (bilinear filler)"),
    "Upsample": ("the SegNet fork (alexgkendall/caffe-segnet)", ""),
    "DepthwiseConvolution": ("MobileNet forks", "BVLC Caffe spells it Convolution with group = num_output"),
    "ConvolutionDepthwise": ("MobileNet forks", "BVLC Caffe spells it Convolution with group = num_output"),
    "ShuffleChannel": ("the ShuffleNet forks", ""),
    "ReLU6": ("MobileNet forks", "BVLC Caffe spells it Clip (min 0, max 6)"),
    "Region": ("the YOLO forks", ""),
    "Reorg": ("the YOLO forks", ""),
    "DenseCRF": ("the DeepLab fork", ""),
    "CenterLoss": ("the center-loss fork (ydwen/caffe-face)", ""),
}

_ENUM_ERROR = re.compile(r'Enum type "([\w.]+)" has no value named ([\w-]+)')
_FIELD_ERROR = re.compile(r'Message type "([\w.]+)" has no field named "?(\w+)"?')


def did_you_mean(name: str, candidates, cutoff: float = 0.75) -> str:
    """`` Did you mean 'x'?`` for a really close candidate (or one that differs only in case), else ''."""
    candidates = sorted(set(candidates))
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return " Did you mean '%s'?" % lowered[name.lower()]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=cutoff)
    return " Did you mean '%s'?" % close[0] if close else ""


def fork_layer_hint(type_name: str) -> str | None:
    """Where a layer type of a known Caffe fork comes from, or None."""
    if type_name not in FORK_LAYERS:
        return None
    fork, instead = FORK_LAYERS[type_name]
    return "%s is a layer of %s, not of BVLC Caffe%s." % (type_name, fork, "; " + instead if instead else "")


def _descriptor(full_name: str, find):
    for name in (full_name, re.sub(r"^\w+\.", caffe_pb2.DESCRIPTOR.package + ".", full_name)):
        try:
            return find(name)
        except KeyError:
            continue
    return None


def parse_error_hint(message: str) -> str:
    """What protobuf's text-parser error lacks: the valid enum values, a close field name, a fork's field."""
    pool = caffe_pb2.DESCRIPTOR.pool
    m = _ENUM_ERROR.search(message)
    if m:
        enum = _descriptor(m.group(1), pool.FindEnumTypeByName)
        if enum is not None:
            names = [v.name for v in enum.values]
            return " Valid values: %s.%s" % (", ".join(names), did_you_mean(m.group(2), names, cutoff=0.6))
    m = _FIELD_ERROR.search(message)
    if m:
        if m.group(2) in FORK_FIELDS:
            return " " + FORK_FIELDS[m.group(2)] + "."
        desc = _descriptor(m.group(1), pool.FindMessageTypeByName)
        if desc is not None:
            return did_you_mean(m.group(2), desc.fields_by_name)
    return ""


def locate_error(err, text: str | None = None) -> None:
    """Give a layer error from a prototxt file the line and column of its layer (and field), in place.

    ``err`` names the file, the layer and maybe a field (``bottom[1]``); nothing changes when any
    is unknown, when the file is not a text prototxt, or when the layer's name is not unique.
    """
    if getattr(err, "line", None) is not None or not getattr(err, "layer", None):
        return
    if text is None:
        if not getattr(err, "file", None):
            return
        try:
            with open(err.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return
    from caffelite.textloc import find, parse_locations

    tree = parse_locations(text)
    entries = [e for e in tree.all("layer") + tree.all("layers")
               if e.get("name") is not None and e.get("name").value == err.layer]
    if len(entries) != 1:
        return
    hit = entries[0]
    if err.field and hit.message is not None:
        hit = find(hit.message, err.field) or hit
    err.line, err.column = hit.line, hit.column
