"""Profiling runs: resumable, failures recorded, and crash-safe under SIGKILL (a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import BlockUnit, create_backend, make_kernel, run_profile
from spaceevo.space import BlockConfig

FAST = {"repeats": 5, "warmup": 2, "min_sample_ms": 0.0, "max_attempts": 1}


@dataclass(frozen=True)
class BrokenUnit:
    """A unit whose model cannot be built."""

    kind: str = "kernel"
    type: str = "broken"
    config: dict = field(default_factory=lambda: {"hw": 4})
    key: str = "broken hw=4"

    def to_onnx(self, seed: int = 0):
        raise RuntimeError("cannot build this unit")

    def to_keras(self, seed: int = 0):
        raise RuntimeError("cannot build this unit")


def units():
    return [make_kernel("relu", hw=4, cin=8), BrokenUnit(),
            BlockUnit(BlockConfig("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1, "relu6"))]


def test_run_profile_records_failures_and_resumes(tmp_path):
    db = tmp_path / "x.db"
    be = create_backend("ort", **FAST)
    with LatencyStore(db) as st:
        s1 = run_profile(units(), be, ["int8", "fp32"], db=st, device="test-dev", progress=False)
    assert (s1["total"], s1["ok"], s1["failed"], s1["skipped"]) == (6, 4, 2, 0)
    assert s1["median_cv"] is not None and s1["device"] == "test-dev"
    with LatencyStore(db) as st:
        failed = st.read_measurements(status="failed")
        ok = st.read_measurements()
        fps = st.fingerprints()
    assert failed["error"].str.contains("RuntimeError: cannot build this unit").all() and len(failed) == 2
    assert len(ok) == 4 and set(ok["fingerprint_id"]) <= set(fps)
    with LatencyStore(db) as st:
        s2 = run_profile(units(), be, ["int8", "fp32"], db=st, device="test-dev", progress=False)
    assert (s2["measured"], s2["skipped"]) == (0, 6)
    with LatencyStore(db) as st:
        s3 = run_profile(units(), be, ["int8", "fp32"], db=st, device="test-dev", progress=False,
                         retry_failed=True)
    assert (s3["measured"], s3["failed"]) == (2, 2)
    with LatencyStore(db) as st:
        assert st.count() == 6


def test_default_device_id_is_backend_and_cpu(tmp_path):
    with LatencyStore(tmp_path / "x.db") as st:
        s = run_profile([make_kernel("relu", hw=4, cin=8)], create_backend("ort", **FAST), ["int8"], db=st,
                        progress=False)
    assert s["device"].startswith("ort-") and len(s["device"]) > 4


def test_run_profile_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="db is required"):
        run_profile(units(), "ort", ["int8"], db=None)
    with pytest.raises(ValueError, match=r"db must be a store .* got PosixPath"):
        run_profile(units(), "ort", ["int8"], db=tmp_path / "x.db")
    with LatencyStore(tmp_path / "x.db") as st:
        with pytest.raises(ValueError, match=r"dtype='int16' is not in \['int8', 'fp32'\]"):
            run_profile(units(), "ort", ["int16"], db=st)
        with pytest.raises(ValueError, match="unknown backend 'trt'"):
            run_profile(units(), "trt", ["int8"], db=st)


PROFILE_ARGS = ["profile", "--backend", "ort", "--dtype", "int8", "--dtype", "fp32", "--space", "onnxw-151122-023231",
                "--resolution", "160", "--limit", "25", "--repeats", "5", "--warmup", "2", "--min-sample-ms", "0",
                "--no-progress", "--no-fixed-blocks", "--json"]


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _snapshot(db) -> dict:
    with LatencyStore(db) as st:
        df = st.read_measurements(status=None)
        assert st.integrity_check() == "ok"
    return {(r.kind, r.key, r.dtype): (r.median_ms, r.created_at) for r in df.itertuples()}


def _kill_after(cmd: list, env: dict, db, n: int, table: str) -> None:
    from store_helpers import wait_for_rows

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        got = wait_for_rows(db, n, timeout=120, table=table)
        assert got >= n, proc.stderr.read().decode() if proc.poll() is not None else "no rows written in time"
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_and_a_rerun_completes(tmp_path):
    db = tmp_path / "crash.db"
    cmd = [sys.executable, "-m", "spaceevo", *PROFILE_ARGS, "--rounds", "1", "--db", str(db)]
    _kill_after(cmd, ENV, db, 8, "measurements")
    before = _snapshot(db)
    assert 8 <= len(before) < 50
    with LatencyStore(db) as st:
        df = st.read_measurements(status=None)
    assert df[["kind", "key", "dtype"]].duplicated().sum() == 0
    assert (df["status"] == "ok").all() and df["median_ms"].gt(0).all() and df["n"].eq(5).all()

    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped"] == len(before) and summary["measured"] == 50 - len(before)
    after = _snapshot(db)
    assert len(after) == 50
    assert {k: after[k] for k in before} == before  # rows written before the kill are untouched

    again = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert json.loads(again.stdout)["measured"] == 0


def _rounds_snapshot(db) -> dict:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT kind, key, dtype, round, stats FROM rounds").fetchall()
    finally:
        con.close()
    return {(k, key, d, r): s for k, key, d, r, s in rows}


@pytest.mark.slow
def test_sigkill_mid_rounds_keeps_finished_rounds_and_a_rerun_times_the_rest(tmp_path):
    db = tmp_path / "rounds.db"
    args = [{"25": "6", "5": "20"}.get(a, a) for a in PROFILE_ARGS]  # 6 units x 2 dtypes, 20 samples a round
    cmd = [sys.executable, "-m", "spaceevo", *args, "--rounds", "8", "--db", str(db)]
    _kill_after(cmd, ENV, db, 20, "rounds")
    kept = _rounds_snapshot(db)
    assert 20 <= len(kept) < 96
    with LatencyStore(db) as st:
        assert st.integrity_check() == "ok" and st.count() == 0  # no unit has all its rounds yet

    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] == 12
    after = _rounds_snapshot(db)
    assert len(after) == 96 and {k: after[k] for k in kept} == kept  # finished rounds reused, not re-timed
    with LatencyStore(db) as st:
        df = st.read_measurements()
    assert len(df) == 12 and df["rounds"].eq(8).all() and df["n"].eq(160).all()
    assert df[["kind", "key", "dtype"]].duplicated().sum() == 0
