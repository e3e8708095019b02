"""What train, test and time share: glog-style tool logging, the progress bar, Caffe's common flags.

Caffe: tools/caffe.cpp (its gflags ``-gpu``, ``-stage``, ``-level``) and glog's line format, so Caffe's log
parsers (``tools/extra/parse_log.py``, ``caffelite plot-log``) read our logs unchanged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from caffelite.errors import SolverError

log = logging.getLogger("caffelite.tools")


# --- shared by train / test / time -------------------------------------------------------------
class GlogFormatter(logging.Formatter):
    """``I1126 11:55:00.123456  4242 solver.py:123] message``: glog's prefix, as Caffe's logs have."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.localtime(record.created)
        prefix = "%s%02d%02d %02d:%02d:%02d.%06d %5d %s:%d] " % (
            record.levelname[:1], t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
            int((record.created % 1) * 1e6), record.process or 0, record.filename, record.lineno)
        return prefix + record.getMessage()


class ProgressBar:
    """A one-line progress bar on a terminal, cleared before every log line."""

    def __init__(self, stream, total: int, width: int = 30):
        self.stream, self.total, self.width = stream, max(1, total), width
        self.shown = False
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.shown and now - self._last < 0.1:  # at most ten redraws a second
            return
        self._last = now
        filled = int(self.width * min(done, self.total) / self.total)
        self.stream.write("\r[%s%s] %d/%d" % ("#" * filled, "." * (self.width - filled), done, self.total))
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.shown = False


class _BarAwareHandler(logging.StreamHandler):
    bar: ProgressBar | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.bar is not None:
            self.bar.clear()
        super().emit(record)


class ToolLogging:
    """Context manager: caffelite's INFO log to stderr (and ``log_file``) while a tool runs."""

    def __init__(self, log_file: str | None = None):
        self.log_file = log_file
        self.handlers: list[logging.Handler] = []
        self.stderr_handler: _BarAwareHandler | None = None

    def __enter__(self) -> ToolLogging:
        logger = logging.getLogger("caffelite")
        self._old_level = logger.level
        logger.setLevel(logging.INFO)
        self.stderr_handler = _BarAwareHandler(sys.stderr)
        self.handlers.append(self.stderr_handler)
        if self.log_file:
            try:
                self.handlers.append(logging.FileHandler(self.log_file, mode="w"))
            except OSError as e:
                raise SolverError("cannot write the log file %s: %s" % (os.path.abspath(self.log_file),
                                                                         e.strerror), field="log") from None
        for h in self.handlers:
            h.setFormatter(GlogFormatter())
            logger.addHandler(h)
        return self

    def __exit__(self, *exc) -> None:
        logger = logging.getLogger("caffelite")
        for h in self.handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(self._old_level)


def stages_from(text: str | None) -> list[str]:
    """Caffe's get_stages_from_flags: a comma-separated ``-stage`` list."""
    return [s for s in (text or "").split(",") if s]


def gpu_flag(args) -> None:
    """Caffe's ``-gpu IDS``: this engine runs on the CPU, so say so once and go on (as ``solver_mode: GPU``
    and ``set_mode_gpu()`` do), so that existing shell scripts run.  The one place that reads ``--gpu``."""
    if getattr(args, "gpu", None):
        print("caffelite %s: warning: -gpu %s ignored: this engine runs on the CPU"
              % (getattr(args, "command", None) or "", args.gpu), file=sys.stderr)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu", metavar="IDS", help="accepted for Caffe's scripts and ignored (with a warning): "
                                                "this engine runs on the CPU")
    p.add_argument("--log", metavar="FILE", help="also write the log to FILE")




def solve(solver, param, args, logs: ToolLogging, signals, log: logging.Logger, show_bar: bool = True) -> None:
    """Caffe's ``train`` after the solver is built: progress bar on a terminal, the signal actions,
    resume from ``--snapshot``, and the "Starting Optimization" / "Optimization Done." lines."""
    if show_bar and sys.stderr.isatty() and param.max_iter - solver.iter >= 100:
        bar = ProgressBar(sys.stderr, param.max_iter)
        logs.stderr_handler.bar = bar
        solver.add_callback(on_start=lambda: bar.update(solver.iter))
    log.info("Starting Optimization")
    solver.set_action_function(signals.action)
    if args.snapshot:
        log.info("Resuming from %s", args.snapshot)
    solver.solve(args.snapshot or None)
    if logs.stderr_handler.bar is not None:
        logs.stderr_handler.bar.clear()
    log.info("Optimization Done.")
