"""The reference block timed beside every sample: the ratio that a machine's changing speed cancels out of."""

from __future__ import annotations

import numpy as np
import pytest

from fake_backend import FakeBackend

from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import Backend, BlockUnit, TimingStats, create_backend, run_profile
from spaceevo.latency._backend import REFERENCE_BLOCK
from spaceevo.predictors import auto_target, train_predictor, uses_reference, with_target
from spaceevo.predictors._synthetic import synthetic_block_ms
from spaceevo.space import BlockConfig


class ClockBackend(Backend):
    """A simulated machine: every inference advances a fake clock; every other 40 ms it runs 1.6x slower."""

    name = "clock"
    supports_reference = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.now = 0.0
        self.opened: list[float] = []

    def available(self) -> bool:
        return True

    def runtime_versions(self) -> dict:
        return {"clock": "1"}

    def device_facts(self) -> dict:
        return {"cpu": "simulated"}

    def clock_fn(self):
        return lambda: self.now

    def prepare(self, unit, dtype):
        return 0.5 if unit.key == REFERENCE_BLOCK else 2.0  # ms at full speed

    def open_runner(self, artifact):
        self.opened.append(artifact)

        def run():
            slow = int(self.now / 0.040) % 2
            self.now += artifact * (1.6 if slow else 1.0) / 1e3
        return run


UNIT = BlockUnit(BlockConfig("MobileNetV2ResBlock", 20, 32, 48, 3, 4.0, 1, "relu6"))


def test_the_ratio_cancels_a_machine_that_changes_speed():
    be = ClockBackend(repeats=40, warmup=2, min_sample_ms=0.0, reference=True, max_attempts=1)
    s = be.measure(UNIT)
    assert max(s.samples) / min(s.samples) == pytest.approx(1.6)  # the raw times see both speeds
    assert s.cv > 0.1
    assert s.ratio == pytest.approx(4.0)  # 2.0 ms / 0.5 ms, whatever the speed
    assert len(s.ref_samples) == 41 and s.ref_min_ms == pytest.approx(0.5) and s.n == 40
    be.measure(UNIT)
    assert be.opened.count(0.5) == 1  # the reference session is opened once and kept warm
    fp = be.fingerprint("int8")["protocol"]
    assert fp["reference"] == REFERENCE_BLOCK and fp["ref_sample_ms"] == 1.0


def test_without_reference_no_ratio_and_the_fingerprint_is_unchanged():
    be = ClockBackend(repeats=5, warmup=1, min_sample_ms=0.0)
    s = be.measure(UNIT)
    assert s.ratio is None and s.ref_samples == () and "reference" not in be.fingerprint("int8")["protocol"]


def test_reference_arguments_are_checked():
    with pytest.raises(ValueError, match="reference=True: backend 'fake2' cannot time a reference"):
        type("F2", (FakeBackend,), {"name": "fake2", "supports_reference": False})(reference=True)
    with pytest.raises(ValueError, match="ref_sample_ms=0 must be a number > 0"):
        FakeBackend(reference=True, ref_sample_ms=0)
    with pytest.raises(ValueError, match="reference=True: backend 'adb' cannot"):
        create_backend("adb", reference=True)


def test_timing_stats_ratio_pooling_and_round_trip():
    a = TimingStats.from_times([2.0, 2.2], ref_times_ms=[0.5, 0.5, 0.6])  # ratios 4.0 and 4.0
    b = TimingStats.from_times([3.0, 3.0], ref_times_ms=[0.75, 0.75, 0.75])  # the slow round: 4.0 again
    assert a.ratio == pytest.approx(4.0) and a.ref_ms == 0.5 and a.ref_min_ms == 0.5
    pooled = TimingStats.from_rounds([a, b])
    assert pooled.ratio == pytest.approx(4.0) and pooled.ref_min_ms == 0.5 and len(pooled.ref_samples) == 6
    assert pooled.median_ms == pytest.approx(2.6)
    back = TimingStats.from_dict(pooled.as_dict(samples=True))
    assert back.ref_samples == pooled.ref_samples and back.ratio == pooled.ratio
    assert "ref_samples" not in pooled.as_dict()
    summaries = [TimingStats.from_dict(x.as_dict()) for x in (a, b)]  # no raw samples (a phone's summaries)
    assert TimingStats.from_rounds(summaries).ratio == pytest.approx(4.0)
    with pytest.raises(ValueError, match="ref_times_ms has 2 times for 2 samples; it needs one before each sample "
                                         r"and one after the last \(3\)"):
        TimingStats.from_times([1.0, 1.0], ref_times_ms=[1.0, 1.0])


def test_profile_rows_carry_the_ratio_and_train_on_norm_ms(tmp_path):
    units = [BlockUnit(BlockConfig("MobileNetV2ResBlock", 20, 32, 32 + 8 * i, 3, 4.0, 1, "relu6")) for i in range(8)]
    be = FakeBackend(factors=(1.0, 1.3, 0.9, 1.6), reference=True)  # the machine's speed changes round by round
    with LatencyStore(tmp_path / "r.db") as st:
        run_profile(units, be, db=st, device="d", rounds=4, progress=False)
        df = st.read_measurements(device="d").set_index("key")
    for u in units:
        ms = synthetic_block_ms(u.block)
        row = df.loc[u.key]
        assert row["ratio"] == pytest.approx(ms / FakeBackend.REF_MS)
        assert row["ref_min_ms"] == pytest.approx(0.45) and row["median_ms"] != pytest.approx(ms)
    df = df.reset_index()
    assert auto_target(df) == "norm_ms"
    assert uses_reference("auto") and uses_reference("norm_ms")  # what decides whether it is timed at all
    assert not any(uses_reference(t) for t in ("min_ms", "median_ms", "mean_ms"))
    norm = with_target(df, "norm_ms")["norm_ms"].to_numpy()
    assert norm == pytest.approx(df["ratio"].to_numpy() * 0.45)
    p = train_predictor(df, device="d", estimator="lut", cv_folds=0, target="norm_ms")
    cfg = units[3].block
    assert p.predict_block(cfg) == pytest.approx(synthetic_block_ms(cfg) / FakeBackend.REF_MS * 0.45)


def test_real_onnxruntime_timing_with_the_reference():
    be = create_backend("ort", repeats=4, warmup=1, max_attempts=1, reference=True)
    s = be.measure(BlockUnit(BlockConfig("MobileNetV2ResBlock", 10, 16, 16, 3, 2.0, 1, "relu6")))
    assert s.ratio > 0 and len(s.ref_samples) == 5 and s.ref_min_ms > 0
    ratios = np.array(s.samples) / ((np.array(s.ref_samples[:-1]) + np.array(s.ref_samples[1:])) / 2)
    assert s.ratio == pytest.approx(float(np.median(ratios)))


def test_onnxruntime_reference_runs_in_one_thread_beside_a_multithreaded_unit():
    """An idle multi-threaded session spins on the cores: the reference must not take the unit's."""
    two = create_backend("ort", threads=2, repeats=3, warmup=1, max_attempts=1, reference=True)
    assert two.reference_threads() == 1
    assert two.fingerprint("int8")["protocol"]["reference_threads"] == 1
    one = create_backend("ort", threads=1, reference=True)
    assert "reference_threads" not in one.fingerprint("int8")["protocol"]  # 1-thread stores keep their id
    model = two.prepare(BlockUnit(BlockConfig.parse(REFERENCE_BLOCK)), "int8")
    assert two.session(model, threads=1).get_session_options().intra_op_num_threads == 1
    assert two.session(model).get_session_options().intra_op_num_threads == 2
    s = two.measure(BlockUnit(BlockConfig("MobileNetV2ResBlock", 10, 16, 16, 3, 2.0, 1, "relu6")))
    assert s.ratio > 0 and len(s.ref_samples) == 4
