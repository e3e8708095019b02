"""The caffelite internals the exporter uses, imported in this one place so a move is one edit here.

Everything else in :mod:`caffelite.onnx` imports caffelite's public API only (``caffelite.Net``,
``caffelite.TEST``, ``caffelite.errors``, ``caffelite.proto.caffe_pb2``).
"""

from caffelite.net import filter_net  # noqa: F401  (Caffe's Net::FilterNet, a pure pass)
from caffelite.textloc import parse_locations  # noqa: F401  (where each layer sits in the prototxt)
from caffelite.upgrade import read_net_param  # noqa: F401  (read, then V0/V1 upgrade)
