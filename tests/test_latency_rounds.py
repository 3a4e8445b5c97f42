"""The collector's interleaved rounds: pooling, resume after a kill mid-round, failures, the stored rounds."""

from __future__ import annotations

import json

import pytest

from fake_backend import FakeBackend

from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import BlockUnit, TimingStats, run_profile
from spaceevo.predictors._synthetic import synthetic_block_ms
from spaceevo.space import BlockConfig


def _units(n: int) -> list[BlockUnit]:
    return [BlockUnit(BlockConfig("MobileNetV2ResBlock", 20, 32, 32 + 8 * i, 3, 4.0, 1, "relu6")) for i in range(n)]


def test_rounds_pool_sessions_and_report_both_spreads(tmp_path):
    be = FakeBackend(factors=(1.0, 1.0, 1.5))  # every third session of a unit is disturbed (x1.5)
    units = _units(4)
    with LatencyStore(tmp_path / "m.db") as st:
        out = run_profile(units, be, db=st, device="d", rounds=5, progress=False)
        rows = st.read_measurements(device="d").set_index("key")
        stored_rounds: dict = {}
        for kind, key, rnd, stats in st.conn.execute("SELECT kind, key, round, stats FROM rounds"):
            stored_rounds.setdefault((kind, key), {})[rnd] = json.loads(stats)
        assert st.rounds_done("d", "int8", 1) == {}  # every unit is complete: nothing to resume
    assert be.prepared == [u.key for u in units] and be.calls == 20  # converted once, timed in 5 sessions each
    assert out["ok"] == 4 and out["rounds"] == 5 and out["median_round_cv"] > 0.1
    for u in units:
        r = rows.loc[u.key]
        ms = synthetic_block_ms(u.block)
        assert r["median_ms"] == pytest.approx(ms)  # 12 of 15 samples undisturbed
        assert r["min_ms"] == pytest.approx(ms * 0.99)
        assert r["n"] == 15 and r["rounds"] == 5 and r["attempts"] == 5
        assert r["cv"] == pytest.approx(TimingStats.from_times([1, 1.01, 0.99]).cv, rel=0.1)  # within a session
        assert r["round_cv"] == pytest.approx(0.2, abs=0.02)  # medians 1, 1, 1.5, 1, 1 -> std/mean 0.19
        assert sorted(stored_rounds[(u.kind, u.key)]) == [0, 1, 2, 3, 4]
        assert len(stored_rounds[(u.kind, u.key)][2]["samples"]) == 3
    with LatencyStore(tmp_path / "m.db") as st:
        again = run_profile(units, FakeBackend(), db=st, device="d", rounds=5, progress=False)
    assert again["skipped"] == 4 and again["measured"] == 0


def test_a_kill_mid_round_keeps_finished_rounds_and_a_rerun_times_only_the_rest(tmp_path):
    units = _units(3)
    with LatencyStore(tmp_path / "m.db") as st:
        with pytest.raises(KeyboardInterrupt):
            run_profile(units, FakeBackend(stop_after=7), db=st, device="d", rounds=4, progress=False)
        assert st.count() == 0  # no unit finished all its rounds
        kept = sum(len(v) for v in st.rounds_done("d", "int8", 1).values())
    assert kept == 7
    be = FakeBackend()
    with LatencyStore(tmp_path / "m.db") as st:
        out = run_profile(units, be, db=st, device="d", rounds=4, progress=False)
        rows = st.read_measurements(device="d")
    assert be.calls == 12 - 7 and out["ok"] == 3
    assert len(rows) == 3 and set(rows["rounds"]) == {4} and set(rows["n"]) == {12}
    assert rows["key"].is_unique


def test_rounds_record_failures_and_go_on(tmp_path):
    units = _units(3)
    be = FakeBackend(fail_key=units[1].key)
    with LatencyStore(tmp_path / "m.db") as st:
        out = run_profile(units, be, db=st, device="d", rounds=2, chunk=2, progress=False)
        rows = st.read_measurements(device="d", status=None)
    assert out["ok"] == 2 and out["failed"] == 1
    status = dict(zip(rows["key"], rows["status"]))
    assert status[units[1].key] == "failed" and status[units[0].key] == status[units[2].key] == "ok"


def test_whole_networks_get_their_own_number_of_rounds(tmp_path):
    from spaceevo.latency import SubnetUnit
    from spaceevo.space import SearchSpace

    sp = SearchSpace.parse("onnxw-151122-023231")
    nets = [SubnetUnit(str(sp), str(s)) for s in sp.sample(2, seed=3)]
    units = _units(2) + nets
    be = FakeBackend()
    with LatencyStore(tmp_path / "m.db") as st:
        out = run_profile(units, be, db=st, device="d", rounds=2, model_rounds=5, progress=False)
        rows = st.read_measurements(device="d").set_index("key")
        fp = json.loads(st.conn.execute("SELECT json FROM fingerprints").fetchone()[0])
    assert be.calls == 2 * 2 + 2 * 5 and out["rounds"] == 2 and out["model_rounds"] == 5
    assert [rows.loc[u.key, "rounds"] for u in units] == [2, 2, 5, 5]
    assert fp["protocol"]["rounds"] == 2 and fp["protocol"]["model_rounds"] == 5
    with LatencyStore(tmp_path / "m.db") as st:  # blocks in one session, whole networks still in rounds
        out = run_profile(units, FakeBackend(), db=st, device="e", rounds=1, model_rounds=3, progress=False)
        rows = st.read_measurements(device="e").set_index("key")
    assert [rows.loc[u.key, "rounds"] for u in units] == [1, 1, 3, 3]


@pytest.mark.parametrize("kw, msg", [({"rounds": 0}, "rounds=0 must be an integer >= 1"),
                                     ({"rounds": 2, "chunk": 0}, "chunk=0 must be an integer >= 1"),
                                     ({"rounds": 2, "model_rounds": 0}, "model_rounds=0 must be an integer >= 1")])
def test_rounds_bad_arguments(tmp_path, kw, msg):
    with LatencyStore(tmp_path / "m.db") as st, pytest.raises(ValueError, match=msg):
        run_profile(_units(1), FakeBackend(), db=st, progress=False, **kw)


def test_rounds_need_a_store_that_keeps_rounds():
    class Minimal:
        def add(self, *a, **k): ...
        def add_fingerprint(self, *a, **k): ...
        def done(self, *a, **k): return set()

    with pytest.raises(ValueError, match="add_round/rounds_done"):
        run_profile(_units(1), FakeBackend(), db=Minimal(), rounds=2, progress=False)


def test_pooling_from_summaries_when_raw_samples_are_absent():
    a = TimingStats(median_ms=2.0, mean_ms=2.0, std_ms=0.1, min_ms=1.9, p90_ms=2.1, cv=0.05, n=10)
    b = TimingStats(median_ms=3.0, mean_ms=3.0, std_ms=0.1, min_ms=2.8, p90_ms=3.2, cv=0.033, n=10)
    c = TimingStats.from_rounds([a, b, a])
    assert c.median_ms == 2.0 and c.min_ms == 1.9 and c.n == 30 and c.rounds == 3
    assert c.std_ms == pytest.approx(0.1) and c.round_cv == pytest.approx(0.2020, abs=1e-3)
    assert TimingStats.from_dict(c.as_dict(samples=True)) == c
