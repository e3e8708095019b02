"""The ONNX graph under construction, and the view of one Caffe layer that a converter gets.

A converter (see :mod:`caffelite.onnx.convert`) reads the layer through :class:`LayerContext`:
its parameter message, its parameter blobs, the ONNX tensors holding its bottoms, and the shapes
caffelite's net computed for its bottoms and tops.  It adds ONNX nodes with :meth:`LayerContext.op`
and returns one tensor name per top.  Nodes are made with ``onnx.helper`` and constants with
``onnx.numpy_helper``: never hand-written protobuf.
"""

from __future__ import annotations

import numpy as np

from caffelite.errors import UnsupportedError


class Graph:
    """Nodes and initializers, with names unique in the graph and distinct from every Caffe blob name."""

    def __init__(self, reserved, opset: int):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.used = set(reserved)

    def fresh(self, base: str) -> str:
        """A new tensor or node name from ``base`` (``base``, ``base:1``, ``base:2``, ...)."""
        name, i = base, 0
        while name in self.used:
            i += 1
            name = "%s:%d" % (base, i)
        self.used.add(name)
        return name

    def const(self, array, base: str, dtype=np.float32) -> str:
        name = self.fresh(base)
        value = np.array(array, dtype, order="C", copy=None)  # not ascontiguousarray: a 0-d array stays 0-d
        self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs, base: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [self.fresh(base if n_out == 1 else "%s.%d" % (base, k)) for k in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.fresh("node/" + base), **attrs))
        return outs


class LayerContext:
    """One Caffe layer as its converter sees it.

    ``bottoms``: ONNX tensor names; ``bottom_shapes`` / ``top_shapes``: caffelite's shapes;
    ``params``: the parameter blobs as float32 arrays; ``dynamic``: dimension 0 of the graph
    inputs is symbolic (``--dynamic-batch``), so reshapes copy it instead of fixing it.
    """

    def __init__(self, graph: Graph, layer_param, params, bottoms, bottom_shapes, top_shapes, dynamic: bool, where):
        self.graph = graph
        self.lp = layer_param
        self.name = layer_param.name
        self.type = layer_param.type
        self.params = params
        self.bottoms = bottoms
        self.bottom_shapes = bottom_shapes
        self.top_shapes = top_shapes
        self.dynamic = dynamic
        self._where = where

    # --- building blocks ----------------------------------------------------------------------
    def op(self, op_type: str, *inputs, n_out: int = 1, tag: str | None = None, **attrs):
        """Add one node; returns its output name (a list when ``n_out`` > 1)."""
        outs = self.graph.op(op_type, inputs, "%s/%s" % (self.name, tag or op_type), n_out, **attrs)
        return outs if n_out > 1 else outs[0]

    def const(self, array, tag: str = "const", dtype=np.float32) -> str:
        return self.graph.const(array, "%s/%s" % (self.name, tag), dtype)

    def ints(self, values, tag: str = "shape") -> str:
        return self.const(np.asarray(values, np.int64).reshape(-1), tag, np.int64)

    def reshape(self, x: str, in_shape, out_shape, tag: str = "Reshape") -> str:
        """Reshape to ``out_shape``; with a symbolic batch its dimension 0 is copied (0) or inferred (-1)."""
        target = list(out_shape)
        if self.dynamic and target:
            target[0] = 0 if (in_shape and target[0] == in_shape[0]) else -1
        return self.op("Reshape", x, self.ints(target), tag=tag)

    def reduce(self, op_type: str, x: str, axes, keepdims: int, tag: str | None = None) -> str:
        """A Reduce* node over ``axes``: an input from opset 18 on (13 for ReduceSum), an attribute before."""
        if self.graph.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, x, self.ints(axes, "axes"), keepdims=keepdims, tag=tag)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims, tag=tag)

    def mul(self, x: str, value: float, tag: str = "Mul") -> str:
        return x if value == 1 else self.op("Mul", x, self.const(np.float32(value), tag + "/c"), tag=tag)

    def add(self, x: str, value: float, tag: str = "Add") -> str:
        return x if value == 0 else self.op("Add", x, self.const(np.float32(value), tag + "/c"), tag=tag)

    def no_dynamic(self, why: str) -> None:
        if self.dynamic:
            self.fail("--dynamic-batch is not supported here: %s" % why)

    def fail(self, message: str, field: str | None = None):
        """Raise the typed error that names this layer, its file:line and why it cannot be exported."""
        file, line = self._where
        raise UnsupportedError("cannot export to ONNX: " + message, file=file, line=line, layer=self.name,
                               layer_type=self.type, field=field)
