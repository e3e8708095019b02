"""NetSpec: write Caffe nets in Python, with pycaffe's ``caffe.net_spec`` semantics.

pycaffe: python/caffe/net_spec.py.  ``layers`` (usually imported as ``L``) makes a layer from
any attribute name: ``L.Convolution(bottom, kernel_size=5, num_output=20)`` returns its top
(or a tuple of tops with ``ntop=N``; the Function itself with ``ntop=0``).  Keyword arguments go
into the layer's ``<type>_param`` message when it has that field, else into the LayerParameter
itself (``param=...``, ``loss_weight=...``, ``include=...``, any ``*_param=dict(...)``); lists
fill repeated fields, dicts fill messages.  ``params`` (``P``) gives the enums:
``P.Pooling.MAX``, ``P.Loss.FULL``.  Tops are named by assignment to a :class:`NetSpec`
(``n.conv1 = L.Convolution(...)``); others get ``<Type><count>`` names.  ``in_place=True`` makes
the layer's tops its bottoms.

Example, the seed article's block::

    n = NetSpec()
    n.fc1, n.label = L.Input(ntop=2)
    n.loss, n.prob = L.SoftmaxWithLoss(n.fc1, n.label, ntop=2, loss_param=dict(
        ignore_label=0, normalize=True, normalization=P.Loss.FULL))
    print(n.to_proto())
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from caffelite.proto import caffe_pb2

__all__ = ["NetSpec", "Top", "Function", "layers", "params", "to_proto", "param_name_dict", "assign_proto"]


def param_name_dict() -> dict[str, str]:
    """Layer type name -> the prefix of its ``*_param`` field (``Convolution`` -> ``convolution``),
    taken from the LayerParameter schema as pycaffe does (by the parameter message's name)."""
    out = {}
    for fd in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if fd.name.endswith("_param") and fd.message_type is not None \
                and fd.message_type.name.endswith("Parameter"):
            out[fd.message_type.name[:-len("Parameter")]] = fd.name[:-len("_param")]
    return out


def to_proto(*tops) -> caffe_pb2.NetParameter:
    """The NetParameter holding every layer needed to compute ``tops`` (names automatic)."""
    layers_: OrderedDict = OrderedDict()
    autonames: Counter = Counter()
    for top in tops:  # a Function (ntop=0) is accepted as well
        getattr(top, "fn", top)._to_proto(layers_, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers_.values())
    return net


def assign_proto(proto, name: str, val) -> None:
    """Set field ``name`` of ``proto`` from a Python value: dicts fill sub-messages, lists (or a
    single value for a repeated field) extend repeated fields, lists of dicts add messages."""
    is_repeated = hasattr(getattr(proto, name), "extend")
    if is_repeated and not isinstance(val, list):
        val = [val]
    if isinstance(val, list):
        if val and isinstance(val[0], dict):
            for item in val:
                sub = getattr(proto, name).add()
                for k, v in item.items():
                    assign_proto(sub, k, v)
        else:
            getattr(proto, name).extend(val)
    elif isinstance(val, dict):
        for k, v in val.items():
            assign_proto(getattr(proto, name), k, v)
    else:
        setattr(proto, name, val)


class Top:
    """One output of a Function (``n`` is its index among the Function's tops)."""

    def __init__(self, fn: Function, n: int):
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The net that computes this top (pycaffe's ``Top.to_proto``)."""
        return to_proto(self)

    def _to_proto(self, layers_, names, autonames):
        return self.fn._to_proto(layers_, names, autonames)

    def __repr__(self) -> str:
        return "<Top %d of %s>" % (self.n, self.fn.type_name)


class Function:
    """A layer not yet written out: its type, input Tops and parameters."""

    def __init__(self, type_name: str, inputs, params: dict):
        self.type_name = type_name
        for i, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                # pycaffe's exact words: scripts and pycaffe's own tests match on them
                raise TypeError("%s input %d is not a Top (type is %s)" % (type_name, i, type(inp)))
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames) -> str:
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top: Top, names, autonames) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers_, names, autonames) -> None:
        if self in layers_:
            return
        bottom_names = []
        for inp in self.inputs:
            inp._to_proto(layers_, names, autonames)
            bottom_names.append(layers_[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)
        prefixes = param_name_dict()
        for k, v in self.params.items():
            if k.endswith("param"):  # e.g. param=..., loss_param=..., convolution_param=...
                assign_proto(layer, k, v)
                continue
            try:
                assign_proto(getattr(layer, prefixes[self.type_name] + "_param"), k, v)
            except (AttributeError, KeyError):
                assign_proto(layer, k, v)
        layers_[self] = layer


class NetSpec:
    """Named tops, in the order they were assigned; ``to_proto`` writes the net."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key: str, value) -> None:
        self.__setattr__(key, value)

    def __getitem__(self, item: str):
        return self.__getattr__(item)

    def __delitem__(self, name: str) -> None:
        del self.tops[name]

    def keys(self) -> list[str]:
        return list(self.tops.keys())

    def vals(self) -> list:
        return list(self.tops.values())

    def to_proto(self) -> caffe_pb2.NetParameter:
        names = {v: k for k, v in self.tops.items()}
        autonames: Counter = Counter()
        layers_: OrderedDict = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers_, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers_.values())
        return net


class Layers:
    """``L.<Type>(*bottoms, **params)``: a Function's top, its tops (ntop > 1) or itself (ntop 0)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        return layer_fn


class Parameters:
    """``P.<Type>.<ENUM>``: the enum values of ``caffe_pb2.<Type>Parameter``."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        class Param:
            def __getattr__(self, param_name):
                return getattr(getattr(caffe_pb2, name + "Parameter"), param_name)

        return Param()


layers = Layers()
params = Parameters()
