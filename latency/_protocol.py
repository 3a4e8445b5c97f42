"""The profiling protocol's defaults (standard library only, so the command line can show them cheaply).

Chosen with data on a shared 2-core VM (README, "Timing protocol"): ROUNDS short sessions per unit spread
over the run, each ROUND_WARMUP untimed + ROUND_REPEATS timed samples.
"""

ROUNDS = 10
ROUND_REPEATS = 10
ROUND_WARMUP = 5

__all__ = ["ROUNDS", "ROUND_REPEATS", "ROUND_WARMUP"]
