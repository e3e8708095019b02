"""The converters by Caffe type name: each converter module registers its functions here."""

from __future__ import annotations

CONVERTERS = {}


def converter(*types: str):
    """Register ``fn`` as the converter of the Caffe layer types ``types``."""
    def register(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return register
