r"""The Python layer: a layer class written for pycaffe, loaded by module and class name.

Caffe: include/caffe/layers/python_layer.hpp, src/caffe/layer_factory.cpp (GetPythonLayer).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from caffelite.errors import CaffeliteError, LayerError
from caffelite.layer import BlobVec, Layer, register_layer

# ``import caffe`` in a user's module must give caffelite's pycaffe: caffelite.compat installs that alias.
# compat sits at the top of the import order (it aliases caffelite.pycaffe), which a layer may not import,
# so caffelite/__init__.py hands in the function that installs it (returning whether the alias is ours).
_install_caffe_alias: Callable[[], bool] | None = None


def use_caffe_alias(install: Callable[[], bool]) -> None:
    """Called once by caffelite/__init__.py with the function that installs the ``caffe`` alias."""
    global _install_caffe_alias
    _install_caffe_alias = install


@register_layer
class PythonLayer(Layer):
    r"""``type: "Python"``: class ``python_param.layer`` of module ``python_param.module``.

    As in pycaffe, the module is imported from ``sys.path`` (put its folder on PYTHONPATH) and
    the class, a subclass of ``caffe.Layer``, is created with the LayerParameter; it gets
    ``param_str`` (``python_param.param_str``) and ``phase`` before its ``setup`` runs, and
    ``blobs`` with pycaffe's ``add_blob``.  Its hooks are pycaffe's: ``setup(bottom, top)``,
    ``reshape(bottom, top)``, ``forward(bottom, top)``, ``backward(top, propagate_down, bottom)``
    (a layer without ``backward`` is forward-only).  While the module is imported, ``import caffe``
    gives caffelite's pycaffe-compatible module (:mod:`caffelite.compat`) unless a real pycaffe is
    already imported.  Like any Python layer in Caffe it has a loss weight only when the prototxt
    gives one.  ``share_in_parallel`` is accepted and ignored (one process, one net).

    What the layer computes is the user's code: there is no formula here.

    Caffe: include/caffe/layers/python_layer.hpp.
    """

    type = "Python"

    @classmethod
    def create(cls, layer_param) -> Layer:
        p = layer_param.python_param
        where = "Python layer '%s' (module '%s', layer '%s')" % (layer_param.name, p.module, p.layer)
        if not p.module or not p.layer:
            raise LayerError("%s: python_param needs both module and layer" % where,
                             field="python_param.module" if not p.module else "python_param.layer")
        # only a Python layer installs the alias, just before the user's import
        alias_is_ours = _install_caffe_alias() if _install_caffe_alias is not None else True
        try:
            module = importlib.import_module(p.module)
        except ImportError as e:
            raise LayerError("%s: cannot import module '%s': %s (is its folder on sys.path / PYTHONPATH?)"
                             % (where, p.module, e), field="python_param.module") from e
        except Exception as e:  # the user's module failed while running
            raise LayerError("%s: importing module '%s' failed: %s: %s" % (where, p.module, type(e).__name__, e),
                             field="python_param.module") from e
        user_class = getattr(module, p.layer, None)
        if user_class is None:
            raise LayerError("%s: module '%s' (%s) has no class '%s'"
                             % (where, p.module, getattr(module, "__file__", "?"), p.layer),
                             field="python_param.layer")
        if not (isinstance(user_class, type) and issubclass(user_class, Layer)):
            hint = ("" if alias_is_ours
                    else " (a real pycaffe is imported, so `import caffe` is not caffelite)")
            raise LayerError("%s: '%s' is not a subclass of caffe.Layer (caffelite.Layer)%s" % (where, p.layer, hint),
                             field="python_param.layer")
        try:
            layer = user_class(layer_param)
        except Exception as e:  # the user's own error keeps its type (pycaffe scripts catch it)
            e.add_note("while creating %s" % where)
            raise
        layer.type = "Python"  # what pycaffe reports for any Python layer
        layer.param_str = p.param_str
        layer.phase = layer_param.phase
        if type(layer.blobs) is list:
            layer.blobs = BlobVec(layer.blobs)
        layer.run_setup = _guarded_setup(layer, where)
        return layer


def _guarded_setup(layer: Layer, where: str):
    """The layer's run_setup; an exception from user code keeps its type (as in pycaffe, where a
    RuntimeError raised in setup reaches the caller as RuntimeError) and gains a note naming the layer."""
    run_setup = layer.run_setup

    def run(bottom, top):
        try:
            run_setup(bottom, top)
        except CaffeliteError:
            raise
        except Exception as e:
            e.add_note("in setup of %s" % where)
            raise

    return run
