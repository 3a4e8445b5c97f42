"""Other work on the machine: /proc/stat snapshots, the busy warning, and the load recorded per timed unit."""

from __future__ import annotations

import os

import pytest

from spaceevo.latency import CpuSnapshot, busy_warning, cpu_snapshot, machine_load, other_load


def test_other_load_subtracts_this_process():
    a = CpuSnapshot(wall=10.0, busy=100.0, steal=5.0, own=1.0)
    b = CpuSnapshot(wall=12.0, busy=103.0, steal=5.5, own=2.5)  # 3 s busy in 2 s, 1.5 of them ours
    assert other_load(a, b) == (0.75, 0.25)
    assert other_load(a, None) == (None, None) and other_load(b, a) == (None, None)


def test_snapshot_parses_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    ticks = os.sysconf("SC_CLK_TCK")
    stat.write_text(f"cpu  {2 * ticks} {ticks} {ticks} 500 7 {ticks} 0 {3 * ticks} 0 0\ncpu0 1 2 3 4\n")
    s = cpu_snapshot(stat)
    assert s.busy == pytest.approx(5.0) and s.steal == pytest.approx(3.0)
    stat.write_text("intr 1 2 3\n")
    assert cpu_snapshot(stat) is None
    assert cpu_snapshot(tmp_path / "missing") is None


@pytest.mark.parametrize("others, threads, warns", [(0.05, 1, False), (0.0, 2, False), (0.6, 1, True),
                                                   (0.1, 2, True), (1.0, 2, True)])
def test_busy_warning(others, threads, warns):
    load = {"cores": 2, "other_cores": others, "steal_cores": 0.0, "load_avg_1m": 1.0}
    msg = busy_warning(threads, load)
    assert (msg is not None) == warns
    if warns:
        assert msg.startswith("machine busy:") and "of 2 cores" in msg
    assert busy_warning(1, None) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc only")
def test_machine_load_and_recorded_per_unit(tmp_path):
    load = machine_load(0.05)
    assert load["cores"] >= 1 and load["other_cores"] >= 0 and load["steal_cores"] >= 0
    from fake_backend import FakeBackend

    from spaceevo.datasets import LatencyStore
    from spaceevo.latency import BlockUnit, run_profile
    from spaceevo.space import BlockConfig

    be = FakeBackend()
    units = [BlockUnit(BlockConfig("ResNetBlock", 8, 16, 16 + 8 * i, 3, 0.5, 1, "relu")) for i in range(2)]
    with LatencyStore(tmp_path / "x.db") as st:
        s = run_profile(units, be, ["int8"], db=st, progress=False, rounds=2)
        df = st.read_measurements()
    assert s["load_start"]["cores"] >= 1 and s["median_other_cpu"] is not None and isinstance(s["warnings"], list)
    assert df["other_cpu"].notna().all() and (df["other_cpu"] >= 0).all() and df["steal"].notna().all()
