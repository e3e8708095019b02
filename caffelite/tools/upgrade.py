"""``caffelite upgrade OLD.prototxt -o NEW.prototxt``: V0/V1 nets and old solvers to the current format.

Caffe's upgrade_net_proto_text, upgrade_net_proto_binary and upgrade_solver_proto_text in one
command; the work is done by :mod:`caffelite.upgrade`.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upgrade", help="upgrade a V0/V1 net, a .caffemodel or an old solver to the current format",
        description="Read an old net prototxt (V0 `layers { layer {...} }`, V1 `layers { type: ENUM }`, "
                    "net-level input/input_dim), a binary .caffemodel or a solver (solver_type), and write it "
                    "in the current format.")
    p.add_argument("input", help="old net, .caffemodel or solver")
    p.add_argument("-o", "--output", required=True, help="where to write the upgraded file")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--net", dest="kind", action="store_const", const="net", help="the input is a net")
    kind.add_argument("--solver", dest="kind", action="store_const", const="solver", help="the input is a solver")
    return p


def run(args) -> int:
    from caffelite import upgrade

    if os.path.abspath(args.input) == os.path.abspath(args.output):
        print("caffelite upgrade: error: the output must differ from the input (keep the original)",
              file=sys.stderr)
        return 2
    if args.kind == "net":
        kind, changed = "net", upgrade.upgrade_net_file(args.input, args.output)
    elif args.kind == "solver":
        kind, changed = "solver", upgrade.upgrade_solver_file(args.input, args.output)
    else:
        kind, changed = upgrade.upgrade_file(args.input, args.output)
    print("%s: %s %s -> %s" % ("upgraded" if changed else "already current", kind, args.input, args.output))
    return 0
