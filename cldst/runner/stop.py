"""Stopping a run on request: a signal (SIGTERM, SIGUSR1, or SIGUSR2, submitit's) or a STOP file in
the run folder. The learner checks the request after every step; the run then finishes its current
step, writes a checkpoint of it (mid-epoch: the permutation and position are saved) and stops with
:class:`cldst.method.events.Preempted`; ``cldst run`` then exits with code 0 and ``--resume``
continues exactly where it stopped.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from cldst.runner.run_dir import METRICS, PROGRESS, STOP_FILE

STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class StopRequest:
    """Whether the run has been asked to stop: by a signal, or by a STOP file in the run folder
    (looked at every ``poll_s`` seconds, so a step costs one clock read)."""

    def __init__(self, stop_file: Path | None = None, poll_s: float = 2.0):
        self.reason: str | None = None
        self.stop_file = stop_file
        self.poll_s = poll_s
        self._next_poll = 0.0

    def __call__(self) -> bool:
        if self.reason is None and self.stop_file is not None and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_s
            if self.stop_file.exists():
                self.reason = f"{STOP_FILE} file"
        return self.reason is not None

    def _on_signal(self, signum, frame) -> None:
        self.reason = signal.Signals(signum).name

    def install(self) -> dict:
        """Catch the stop signals (main thread only). Returns the previous handlers, for :meth:`uninstall`."""
        previous: dict = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    @staticmethod
    def uninstall(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def request_stop(run_dir: str | Path, wait_s: float = 60.0, poll_s: float = 0.5) -> bool:
    """Ask the run in ``run_dir`` to checkpoint and stop (a STOP file), and wait up to ``wait_s``
    for it to say so in progress.json. Returns whether it did (or had finished already)."""
    run_dir = Path(run_dir)
    asked = time.time()
    (run_dir / STOP_FILE).touch()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            progress = json.loads((run_dir / PROGRESS).read_text())
        except (OSError, ValueError):
            progress = {}
        if (run_dir / METRICS).is_file() or (
                progress.get("status") in ("preempted", "failed") and progress.get("updated", 0) >= asked - 5):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


