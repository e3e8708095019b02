"""``import caffe`` for code written for pycaffe: an alias to caffelite's drop-in, caffelite.pycaffe.

A Python layer's module does ``import caffe`` and subclasses ``caffe.Layer``.  Under caffelite
that must work without installing a top-level ``caffe`` package (which would shadow a real
pycaffe), so :func:`install` puts aliases in ``sys.modules``:

- ``caffe`` → ``caffelite.pycaffe``;
- ``caffe.proto`` → ``caffelite.proto`` and ``caffe.proto.caffe_pb2`` → ``caffelite.proto.caffe_pb2``;
- any other ``caffe.<name>`` → ``caffelite.pycaffe.<name>``, through a meta-path finder, so the
  submodule is the same module object under both names (never loaded twice).

A real pycaffe already imported (a ``caffe`` module that is not caffelite's) is left alone.
``import caffelite.compat`` installs the alias; the Python layer installs it before importing a
user's module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

ALIAS = "caffe"
TARGET = "caffelite.pycaffe"

__all__ = ["install", "uninstall", "is_installed"]


def _target_name(fullname: str) -> str:
    """The caffelite module an aliased name stands for (``caffe.proto...`` → ``caffelite.proto...``)."""
    rest = fullname[len(ALIAS):]
    if rest == ".proto" or rest.startswith(".proto."):
        return "caffelite" + rest
    return TARGET + rest


def _is_ours(module) -> bool:
    return getattr(module, "__name__", "").split(".")[0] == "caffelite"


def is_installed() -> bool:
    """Whether ``import caffe`` currently gives caffelite's pycaffe-compatible module."""
    return getattr(sys.modules.get(ALIAS), "__name__", None) == TARGET


class _AliasLoader(importlib.abc.Loader):
    """Hands the import system the already-imported caffelite module for an aliased name."""

    def __init__(self, target: str):
        self.target = target
        self._spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec  # the import system set the alias spec: restore the real one


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``caffe.<name>`` as ``caffelite.pycaffe.<name>`` while the alias is installed."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(ALIAS + ".") or not is_installed():
            return None
        name = _target_name(fullname)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(name),
                                               is_package=spec.submodule_search_locations is not None)


def install() -> bool:
    """Alias ``caffe`` to caffelite's pycaffe-compatible module; return whether the alias is in place.

    Does nothing (and returns False) when a real pycaffe is already imported.
    """
    current = sys.modules.get(ALIAS)
    if current is not None and not is_installed():
        return False
    sys.modules[ALIAS] = importlib.import_module(TARGET)
    for name in (ALIAS + ".proto", ALIAS + ".proto.caffe_pb2"):
        sys.modules[name] = importlib.import_module(_target_name(name))
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
    return True


def uninstall() -> None:
    """Remove the aliases (only ours: a real pycaffe's modules stay)."""
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        if _is_ours(sys.modules[name]):
            del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AliasFinder)]


install()
