"""A deterministic timing backend for collector and validation tests (no runtime, no clock)."""

from __future__ import annotations

from spaceevo.latency import Backend, BlockUnit, TimingStats
from spaceevo.space import SearchSpace


class FakeBackend(Backend):
    """'Timings' are a unit's synthetic latency times a per-timing factor; counts conversions and timings.

    ``factors[i % len]`` scales the i-th timing of a unit; ``fail_key`` fails that unit's conversion;
    ``stop_after`` raises KeyboardInterrupt at that timing (a stand-in for a kill mid-run). With
    ``reference=True`` the factor is the machine's speed: it scales the reference times (``REF_MS``) too.
    """

    name = "fake"
    supports_reference = True
    REF_MS = 0.5

    def __init__(self, factors=(1.0,), fail_key: str | None = None, stop_after: int | None = None, **kw):
        super().__init__(**kw)
        self.factors = list(factors)
        self.fail_key = fail_key
        self.stop_after = stop_after
        self.calls = 0
        self.per_unit: dict = {}
        self.prepared: list[str] = []

    def available(self) -> bool:
        return True

    def runtime_versions(self) -> dict:
        return {"fake": "1"}

    def device_facts(self) -> dict:
        return {"cpu": "fake"}

    def prepare(self, unit, dtype):
        if unit.key == self.fail_key:
            raise RuntimeError("cannot convert")
        self.prepared.append(unit.key)
        from spaceevo.predictors._synthetic import synthetic_block_ms  # here: timing workers never import sklearn

        if isinstance(unit, BlockUnit):
            return synthetic_block_ms(unit.block)
        sp = SearchSpace.parse(unit.space)
        return sum(synthetic_block_ms(b.config) for b in sp.blocks(sp.parse_subnet(unit.subnet)))

    def time_once(self, artifact) -> TimingStats:
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        i = self.per_unit.get(artifact, 0)
        self.per_unit[artifact] = i + 1
        self.calls += 1
        factor = self.factors[i % len(self.factors)]
        ms = artifact * factor
        ref = [self.REF_MS * factor] * 4 if self.reference else None
        return TimingStats.from_times([ms, ms * 1.01, ms * 0.99], ref_times_ms=ref)
