"""``caffelite run-pycaffe script.py args...``: run an old ``import caffe`` script unmodified.

Installs the ``caffe`` alias (:mod:`caffelite.compat`), then runs the script as ``__main__`` the
way ``python script.py args...`` would: ``sys.argv`` is ``[script.py, args...]`` and the
script's folder is first on ``sys.path`` (so its Python-layer modules import).  The arguments
after the script are passed through untouched.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import traceback

from caffelite.errors import CaffeFileNotFoundError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run-pycaffe", help="run a pycaffe (`import caffe`) script on caffelite",
        description="Run a Python script written for pycaffe, with `import caffe` resolving to caffelite "
                    "(unless a real pycaffe is importable first). Arguments after the script go to it.")
    p.add_argument("script", help="the Python script to run")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the script")
    return p


def run_script(script: str, script_args: list[str]) -> int:
    """Run ``script`` as ``__main__`` with the alias installed; return its exit status."""
    import caffelite.compat as compat

    if not os.path.isfile(script):
        raise CaffeFileNotFoundError("script not found: %s" % os.path.abspath(script), file=script)
    if not compat.install():
        print("caffelite run-pycaffe: a real pycaffe is already imported; running on it", file=sys.stderr)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [script] + list(script_args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SyntaxError as e:
        if e.filename and os.path.abspath(e.filename) == os.path.abspath(script) or _python2(e):
            print("".join(traceback.format_exception_only(type(e), e)).rstrip(), file=sys.stderr)  # no runpy frames
        else:
            traceback.print_exc()
        if _python2(e):
            print("caffelite run-pycaffe: %s looks like a Python 2 script (%s); caffelite runs on Python 3. Convert "
                  "it with `2to3 -w %s` (shipped with Python up to 3.12) and run it again."
                  % (e.filename or script, e.msg, e.filename or script), file=sys.stderr)
        return 1
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0)
        print(e.code, file=sys.stderr)
        return 1
    except Exception:  # the script's own failure: show its traceback, as python would
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


_PY2 = re.compile(r"^\s*(print\s+[^\s(=]|exec\s+[\"']|except\s+[\w.]+\s*,\s*\w+\s*:|raise\s+\w+\s*,)"
                  r"|\b0\d+\b|`|\bur[\"']|<>")


def _python2(e: SyntaxError) -> bool:
    """Whether a SyntaxError comes from Python 2 syntax (print statement, ``except E, e``, backticks, ...)."""
    if "Missing parentheses in call to" in (e.msg or ""):
        return True
    return bool(e.text and _PY2.search(e.text))


def run(args) -> int:
    return run_script(args.script, args.script_args)
