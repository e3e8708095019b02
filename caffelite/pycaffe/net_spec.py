"""``caffe.net_spec``: pycaffe's NetSpec module, served by caffelite.net_spec."""

from caffelite.net_spec import *  # noqa: F401,F403
from caffelite.net_spec import Function, Layers, NetSpec, Parameters, Top, assign_proto, layers, params, to_proto

__all__ = ["Function", "Layers", "NetSpec", "Parameters", "Top", "assign_proto", "layers", "params", "to_proto"]
