"""The profiling protocol's defaults (standard library only, so the command line can show them cheaply).

Chosen with data on a shared 2-core VM (README, "Timing protocol"): ROUNDS short sessions per unit spread
over the run, each ROUND_WARMUP untimed + ROUND_REPEATS timed samples.
"""

ROUNDS = 10
#: rounds of a whole network (kind ``model``): its rounds scatter by a ratio CV of ~4% on this VM, round to
#: round and independently of other units (README, "Numbers that repeat"), so a repeatable whole-model
#: figure needs the median of many short sessions; each costs a session and ROUND_WARMUP + ROUND_REPEATS runs
MODEL_ROUNDS = 30
ROUND_REPEATS = 10
ROUND_WARMUP = 5
#: the data types a unit is measured (and a predictor trained) in
DTYPES: tuple[str, ...] = ("int8", "fp32")

__all__ = ["DTYPES", "MODEL_ROUNDS", "ROUNDS", "ROUND_REPEATS", "ROUND_WARMUP"]
