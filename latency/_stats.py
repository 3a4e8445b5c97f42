"""Timing statistics of one measured unit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    """Summary of ``n`` timed samples in milliseconds per inference.

    ``cv`` is std / mean; each sample is the mean of ``loops`` back-to-back inferences (1 = one run
    per sample); ``attempts`` counts re-measurements + 1.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p90_ms: float
    cv: float
    n: int
    attempts: int = 1
    loops: int = 1

    @classmethod
    def from_times(cls, times_ms: Sequence[float], attempts: int = 1, loops: int = 1) -> "TimingStats":
        """Summarise a list of per-inference sample times (ms)."""
        t = np.asarray(times_ms, dtype=np.float64)
        if t.size == 0:
            raise ValueError("times_ms is empty: at least one timed run is needed")
        mean = float(t.mean())
        std = float(t.std())
        return cls(median_ms=float(np.median(t)), mean_ms=mean, std_ms=std, min_ms=float(t.min()),
                   p90_ms=float(np.percentile(t, 90)), cv=std / mean if mean > 0 else 0.0, n=int(t.size),
                   attempts=attempts, loops=loops)

    def as_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)

    def __getitem__(self, name: str):
        """Dict-style access (``stats["median_ms"]``) for code that expects a dict."""
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)
