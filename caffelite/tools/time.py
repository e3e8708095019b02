"""``caffelite time``: time a model's layers, forward and backward (Caffe's ``caffe time``).

Caffe: tools/caffe.cpp (``time``).  One warm-up forward and backward pass, then ``--iterations``
timed passes; reports each layer's average forward and backward time, the averages of whole
passes and the total, in Caffe's words.  As Caffe's, the timed backward pass runs every layer's
Backward, needed or not (a deploy net's weight gradients included), so the numbers compare.
"""

from __future__ import annotations

import argparse
import logging
import time

from caffelite.errors import NetError
from caffelite.tools.common import ToolLogging, gpu_flag
from caffelite.tools.test import add_net_arguments, load_net

log = logging.getLogger("caffelite.tools")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "time", help="benchmark a model's layers (caffe time)",
        description="Time each layer's forward and backward pass over --iterations runs, as `caffe time` does.")
    add_net_arguments(p, "TRAIN", "optional weights to load first", "number of timed runs (default 50)")
    return p


def run(args) -> int:
    gpu_flag(args)
    if not args.model:
        raise NetError("Need a model definition to time. (give --model FILE)", field="model")
    if args.iterations < 1:
        raise NetError("--iterations must be at least 1 (got %d)" % args.iterations, field="iterations")
    with ToolLogging(args.log):
        net = load_net(args, "TRAIN")
        log.info("Use CPU.")
        log.info("Performing Forward")
        log.info("Initial loss: %g", net.forward_from_to())
        log.info("Performing Backward")
        net.backward_from_to()
        layers, names = net.layers, list(net.layer_dict)
        bottom_vecs, top_vecs, bottom_need_backward = net.bottom_vecs, net.top_vecs, net.bottom_need_backward
        n = len(layers)
        fwd, bwd = [0.0] * n, [0.0] * n
        fwd_total = bwd_total = 0.0
        log.info("*** Benchmark begins ***")
        log.info("Testing for %d iterations.", args.iterations)
        start = time.perf_counter()
        for j in range(args.iterations):
            t_iter = time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                net.forward_from_to(i, i)
                fwd[i] += time.perf_counter() - t
            t_fwd = time.perf_counter()
            fwd_total += t_fwd - t_iter
            for i in range(n - 1, -1, -1):
                t = time.perf_counter()
                layers[i].run_backward(top_vecs[i], bottom_need_backward[i], bottom_vecs[i])
                bwd[i] += time.perf_counter() - t
            bwd_total += time.perf_counter() - t_fwd
            log.info("Iteration: %d forward-backward time: %.6g ms.", j + 1, (time.perf_counter() - t_iter) * 1e3)
        total = time.perf_counter() - start
        k = 1e3 / args.iterations
        log.info("Average time per layer: ")
        for i in range(n):
            log.info("%10s\tforward: %.6g ms.", names[i], fwd[i] * k)
            log.info("%10s\tbackward: %.6g ms.", names[i], bwd[i] * k)
        log.info("Average Forward pass: %.6g ms.", fwd_total * k)
        log.info("Average Backward pass: %.6g ms.", bwd_total * k)
        log.info("Average Forward-Backward: %.6g ms.", total * k)
        log.info("Total Time: %.6g ms.", total * 1e3)
        log.info("*** Benchmark ends ***")
    return 0
