"""Validation helpers: interleaved timing rounds, the store round trip, repeatability, ``validate_predictor``."""

from __future__ import annotations

import numpy as np
import pytest

from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import Backend, BlockUnit, SubnetUnit, TimingStats
from spaceevo.predictors import train_predictor
from spaceevo.predictors import _validate as V
from spaceevo.predictors._synthetic import synthetic_block_ms, synthetic_measurements
from spaceevo.space import BlockConfig, SearchSpace

SPACE = "onnxw-151122-023231"


class FakeBackend(Backend):
    """Deterministic 'timings': a unit's true latency times a per-call factor; counts conversions."""

    name = "fake"

    def __init__(self, factors=(1.0,), fail_key: str | None = None, **kw):
        super().__init__(**kw)
        self.factors = list(factors)
        self.calls = 0
        self.per_unit: dict = {}
        self.prepared: list[str] = []
        self.fail_key = fail_key

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
        if isinstance(unit, BlockUnit):
            return synthetic_block_ms(unit.block)
        sp = SearchSpace.parse(unit.space)
        return sum(synthetic_block_ms(b.config) for b in sp.blocks(sp.parse_subnet(unit.subnet)))

    def time_once(self, artifact) -> TimingStats:
        i = self.per_unit.get(artifact, 0)  # the i-th timing of this unit
        self.per_unit[artifact] = i + 1
        f = self.factors[i % len(self.factors)]
        self.calls += 1
        return TimingStats.from_times([artifact * f] * 3)


def _blocks(n):
    return [BlockUnit(BlockConfig("MobileNetV2ResBlock", 20, 32, 32 + 8 * i, 3, 4.0, 1, "relu6")) for i in range(n)]


def test_rounds_take_the_median_over_rounds(tmp_path):
    # every unit's third timing is disturbed (x1.5): the median over 3+ rounds ignores it
    be = FakeBackend(factors=(1.0, 1.0, 1.5))
    units = _blocks(4)
    with LatencyStore(tmp_path / "m.db") as st:
        got = V.measure_rounds(units, be, rounds=5, store=st, device="fake-dev", progress=False)
        rows = st.read_measurements(device="fake-dev")
    assert be.prepared == [u.key for u in units]  # converted once each
    assert be.calls == 20
    for u in units:
        s = got[u.key]
        assert s.median_ms == pytest.approx(synthetic_block_ms(u.block)) and s.attempts == 5 and s.n == 15
    assert max(got[u.key].cv for u in units) > 0  # the spread between rounds
    assert len(rows) == 4 and set(rows["attempts"]) == {5}
    # a rerun measures nothing
    be2 = FakeBackend()
    with LatencyStore(tmp_path / "m.db") as st:
        assert V.measure_rounds(units, be2, rounds=5, store=st, device="fake-dev", progress=False) == {}
    assert be2.calls == 0


def test_rounds_record_failures_and_go_on(tmp_path):
    units = _blocks(3)
    be = FakeBackend(fail_key=units[1].key)
    with LatencyStore(tmp_path / "m.db") as st:
        got = V.measure_rounds(units, be, rounds=2, store=st, device="d", chunk=2, progress=False)
        rows = st.read_measurements(device="d", status=None)
    assert set(got) == {units[0].key, units[2].key}
    assert dict(zip(rows["key"], rows["status"]))[units[1].key] == "failed"


def test_rounds_bad_argument():
    with pytest.raises(ValueError, match="rounds=0 must be an integer >= 1"):
        V.measure_rounds(_blocks(1), FakeBackend(), rounds=0)


def test_repeatability_summary():
    r = V._repeatability(np.array([10.0, 10.0, 10.0]), np.array([10.0, 10.4, 12.0]))
    assert r["n"] == 3 and r["median_abs_rel_diff"] == pytest.approx(0.04)
    assert r["max_abs_rel_diff"] == pytest.approx(0.2) and r["within_5pct"] == pytest.approx(200 / 3)


@pytest.fixture(scope="module")
def pred():
    data = synthetic_measurements(SPACE, n_subnets=40, n_models=0, seed=0, overhead_scale=1.0, overhead_ms=0.0)
    return train_predictor(data, device="synthetic", estimator="lut", cv_folds=0)


def test_validate_with_fake_backend_and_store(pred, tmp_path, monkeypatch):
    be = FakeBackend(factors=(1.0, 1.02, 0.98))
    monkeypatch.setattr(V, "make_backend", lambda *a, **k: be)
    out = V.validate_predictor(pred, SPACE, samples=6, seed=3, resolution=160, rounds=3, db=tmp_path / "v.db",
                               recheck=2, progress=False)
    assert out["samples"] == 6 and out["rounds"] == 3 and out["statistic"] == "median_ms"
    assert {"acc_10pct", "acc_5pct", "mape", "kendall_tau", "with_composition", "without_composition"} <= set(out)
    assert out["acc_10pct"] >= 80.0 and out["repeatability"]["n"] == 2
    assert len(out["rows"]) == 6 and "remeasured_ms" in out["rows"][0]
    with LatencyStore(tmp_path / "v.db") as st:
        assert len(st.read_measurements(kind="model")) == 6
    calls = be.calls
    again = V.validate_predictor(pred, SPACE, samples=6, seed=3, resolution=160, rounds=3, db=tmp_path / "v.db",
                                 progress=False)
    assert be.calls == calls  # reused the stored measurements
    assert [r["measured_ms"] for r in again["rows"]] == [r["measured_ms"] for r in out["rows"]]


def test_validate_bad_arguments(pred):
    with pytest.raises(ValueError, match="samples=1 must be >= 2"):
        V.validate_predictor(pred, SPACE, samples=1)
    with pytest.raises(ValueError, match="recheck=5 must be between 0 and samples=3"):
        V.validate_predictor(pred, SPACE, samples=3, recheck=5)
    with pytest.raises(ValueError, match="measured has 2 values for samples=3"):
        V.validate_predictor(pred, SPACE, samples=3, measured=[1.0, 2.0])
    with pytest.raises(ValueError, match="resolution=170 is not in onnxw resolutions"):
        V.sample_subnets(SPACE, 2, resolution=170)


def test_subnet_units_measured_by_rounds(tmp_path):
    sp = SearchSpace.parse(SPACE)
    subs = V.sample_subnets(sp, 3, seed=1, resolution=160)
    be = FakeBackend()
    got = V.measure_rounds([SubnetUnit(SPACE, str(s)) for s in subs], be, rounds=2, progress=False)
    assert len(got) == 3 and all(s.median_ms > 0 for s in got.values())
