"""Pin the timing process to fixed cores (as nn-Meter does with ``taskset``)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

log = logging.getLogger(__name__)


def choose_cores(threads: int, cores: list[int] | None = None) -> list[int]:
    """The cores to pin to: ``cores`` if given (checked), else the last ``threads`` allowed cores."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    allowed = sorted(os.sched_getaffinity(0))
    if cores:
        bad = [c for c in cores if c not in allowed]
        if bad:
            raise ValueError(f"cores={cores}: {bad} not allowed for this process; allowed cores: {allowed}")
        return sorted(cores)
    return allowed[-max(1, min(threads, len(allowed))):]


@contextlib.contextmanager
def pinned(cores: list[int]) -> Iterator[list[int]]:
    """Run the block with this process's affinity set to ``cores``; restore it afterwards."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        yield []
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield list(cores)
    finally:
        os.sched_setaffinity(0, before)
