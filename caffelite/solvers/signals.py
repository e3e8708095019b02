"""SIGINT / SIGHUP as solver actions (Caffe's SignalHandler and ``-sigint_effect`` / ``-sighup_effect``).

Caffe: src/caffe/util/signal_handler.cpp.
"""

from __future__ import annotations

import signal
import threading

from caffelite.errors import SolverError

__all__ = ["ACTIONS", "SignalHandler"]

ACTIONS = ("none", "stop", "snapshot")


class SignalHandler:
    """Turn SIGINT / SIGHUP into solver actions while active (a context manager).

    ``sigint_effect`` and ``sighup_effect`` are ``"stop"``, ``"snapshot"`` or ``"none"`` (Caffe's
    defaults: stop on Ctrl-C, snapshot on hang-up).  A stop still ends with the final snapshot
    that ``snapshot_after_train`` asks for, so Ctrl-C leaves a resumable state.  Pass the
    instance's ``action`` to ``Solver.set_action_function``.
    """

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
        for name, value in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if value not in ACTIONS:
                raise SolverError("Invalid %s: %r (stop, snapshot or none)" % (name, value), field=name)
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self._pending: list[int] = []
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self._pending.append(signum)

    def __enter__(self) -> SignalHandler:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for signum in self.effects:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def action(self) -> str:
        """The action for the oldest signal received since the last call ("none" if none)."""
        while self._pending:
            signum = self._pending.pop(0)
            effect = self.effects.get(signum, "none")
            if effect != "none":
                return effect
        return "none"
