r"""``caffelite explain``: run a net and print, step by step, what Caffe computes in its loss layers.

The net runs on the values given (``values``: blob name -> array) or on random inputs; blobs a
layer needs but nothing produces (``fc1`` and ``label`` of a lone SoftmaxWithLoss block) become
inputs.  For each loss and Accuracy layer a tracer recomputes the layer in plain NumPy (float64)
and prints each step next to what the layer itself produced.  For SoftmaxWithLoss, at each
position:

.. math:: x - \max_k x_k, \quad e^{x - \max}, \quad p = e / \textstyle\sum e, \quad
          -\log p_{label}, \quad E = \sum (-\log p_{label}) / \text{normalizer}, \quad
          \frac{\partial E}{\partial x} = w\,(p - \text{onehot}) / \text{normalizer}

with the seed article's example: scores [1.2, 0.8] → [0, −0.4] → p = [0.5987, 0.4013];
label 1 → loss 0.9130.  ``lang="zh"`` prints the trace in Chinese.

SigmoidCrossEntropyLoss, EuclideanLoss (both bottoms' gradients), HingeLoss (L1/L2),
ContrastiveLoss, MultinomialLogisticLoss and InfogainLoss have tracers of their own; any other loss
(a Python layer with a ``loss_weight``, say) is shown as its forward value and gradients.  Each
recomputed loss and gradient is compared with the layer's own, and a difference is marked.  The
net is built for a NetState (``phase``, ``stages``, ``level``); layers are shown by the names in
the prototxt (never explain's feed layer or Caffe's split blobs), and repeated names by position.

Modules: :mod:`~caffelite.explain.driver` (the net, its inputs, the run),
:mod:`~caffelite.explain.tracers` (one per loss layer type) and :mod:`~caffelite.explain.messages`
(the words, per language).
"""

from caffelite.explain.driver import LABELED, explain_file, explain_param, parse_values  # noqa: F401
from caffelite.explain.messages import MESSAGES
from caffelite.explain.tracers import (  # noqa: F401
    MAX_POSITIONS,
    TRACERS,
    trace_accuracy,
    trace_contrastive,
    trace_euclidean,
    trace_generic,
    trace_hinge,
    trace_infogain,
    trace_multinomial_logistic,
    trace_sigmoid_ce,
    trace_softmax_loss,
)

__all__ = ["explain_file", "explain_param", "parse_values", "MESSAGES"]
