"""Layer implementations, one module per family; importing this package registers them all."""

from caffelite.layers import common, data, loss, neuron  # noqa: F401
