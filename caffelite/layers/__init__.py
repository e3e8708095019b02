"""Layer implementations, one module per family; importing this package registers them all."""

from caffelite.layers import (  # noqa: F401
    common,
    data,
    data_files,
    indexing,
    loss,
    loss_extra,
    lrn,
    neuron,
    normalization,
    pooling,
    python,
    recurrent,
    shape,
    vision,
)
