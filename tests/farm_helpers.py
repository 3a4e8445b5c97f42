"""Fake devices for the farm tests: the shared fake backend, slowed down, killed once, or always failing.

Ray workers import this module (the tests put this folder on their PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from fake_backend import FakeBackend


class FarmFakeBackend(FakeBackend):
    """:class:`FakeBackend` (same name, same fingerprint) that can sleep, SIGKILL its process once, or fail.

    ``sleep_s`` per timing; ``kill_at``: the worker kills itself (SIGKILL) at that timing when ``marker`` does not
    exist yet (it creates it first, so a restarted worker goes on); ``broken``: every timing raises.
    """

    def __init__(self, sleep_s: float = 0.0, kill_at: int | None = None, marker: str | None = None,
                 broken: bool = False, **kw):
        super().__init__(**kw)
        self.sleep_s, self.kill_at, self.marker, self.broken = sleep_s, kill_at, marker, broken

    def time_once(self, artifact):
        if self.broken:
            raise RuntimeError("device unplugged")
        if self.kill_at is not None and self.calls >= self.kill_at and self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return super().time_once(artifact)
