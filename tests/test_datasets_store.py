"""The SQLite latency store: schema contract, upserts, resume bookkeeping, info and export."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from spaceevo.datasets.store import COLUMNS, LatencyStore
from spaceevo.latency import BlockUnit, SubnetUnit, TimingStats, make_kernel
from spaceevo.space import BlockConfig, SearchSpace

BLOCK = BlockUnit(BlockConfig("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1, "relu6"))
KERNEL = make_kernel("conv-bn-act", hw=8, cin=8, cout=16, k=3)
SPACE = SearchSpace.parse("onnxw-151122-023231")
MODEL = SubnetUnit(str(SPACE), str(SPACE.min_subnet()))


def stats(ms: float, cv: float = 0.01) -> TimingStats:
    return TimingStats(ms, ms, ms * cv, ms * 0.9, ms * 1.1, cv, 50)


def test_contract_columns():
    required = {"kind", "type", "hw", "cin", "cout", "k", "e", "stride", "act", "config", "key", "device", "backend",
                "dtype", "threads", "median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "cv", "n", "status",
                "error", "fingerprint_id", "created_at"}
    assert required <= set(COLUMNS)


def test_rows_for_blocks_kernels_and_models(tmp_path):
    with LatencyStore(tmp_path / "x.db") as st:
        st.add_fingerprint("fp1", {"backend": "ort", "cpu": "x"})
        for u, ms in ((BLOCK, 0.1), (KERNEL, 0.2), (MODEL, 3.0)):
            st.add(u, "ort-test", "ort", "int8", 1, stats=stats(ms), fingerprint_id="fp1", seed=0)
        df = st.read_measurements()
    assert list(df.columns) == list(COLUMNS) and len(df) == 3
    b = df[df["kind"] == "block"].iloc[0]
    assert (b["type"], b["hw"], b["cin"], b["cout"], b["k"], b["e"], b["stride"], b["act"]) == \
        ("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1, "relu6")
    assert json.loads(b["config"]) == BLOCK.config and b["key"] == BLOCK.key and b["macs"] == BLOCK.macs
    k = df[df["kind"] == "kernel"].iloc[0]
    assert (k["type"], k["cout"], k["k"], k["stride"], k["act"]) == ("conv-bn-act", 16, 3, 1, "relu")
    assert pd.isna(k["e"])
    m = df[df["kind"] == "model"].iloc[0]
    assert json.loads(m["config"]) == {"space": str(SPACE), "subnet": str(SPACE.min_subnet())}
    assert m["hw"] == SPACE.min_subnet().resolution and m["median_ms"] == 3.0
    assert df["created_at"].str.match(r"\d{4}-\d\d-\d\dT").all()


def test_filters_and_failed_rows(tmp_path):
    st = LatencyStore(tmp_path / "x.db")
    st.add(BLOCK, "dev-a", "ort", "int8", 1, stats=stats(0.1))
    st.add(BLOCK, "dev-a", "ort", "fp32", 1, stats=stats(0.3))
    st.add(KERNEL, "dev-b", "ort", "int8", 1, error="RuntimeError: boom")
    assert len(st.read_measurements()) == 2
    assert len(st.read_measurements(device="dev-a", dtype="fp32")) == 1
    failed = st.read_measurements(status="failed")
    assert failed["error"].tolist() == ["RuntimeError: boom"] and failed["median_ms"].isna().all()
    assert len(st.read_measurements(status=None, kind="kernel")) == 1
    with pytest.raises(ValueError, match=r"status='bad' is not in \['ok', 'failed'\]"):
        st.read_measurements(status="bad")
    with pytest.raises(ValueError, match=r"kind='layer' is not in"):
        st.read_measurements(kind="layer")
    with pytest.raises(ValueError, match="needs stats for an ok row"):
        st.add(BLOCK, "dev-a", "ort", "int8", 1)


def test_one_row_per_unit_device_dtype_threads(tmp_path):
    st = LatencyStore(tmp_path / "x.db")
    st.add(BLOCK, "dev", "ort", "int8", 1, error="first try failed")
    assert st.done("dev", "int8", 1) == {("block", BLOCK.key)}
    assert st.done("dev", "int8", 1, include_failed=False) == set()
    st.add(BLOCK, "dev", "ort", "int8", 1, stats=stats(0.1))  # a retry replaces the failed row
    st.add(BLOCK, "dev", "ort", "int8", 2, stats=stats(0.07))  # other threads: another row
    df = st.read_measurements(status=None)
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    assert st.done("dev", "int8", 1, include_failed=False) == {("block", BLOCK.key)}
    assert st.count() == 2 and st.integrity_check() == "ok"


def test_wal_journal(tmp_path):
    LatencyStore(tmp_path / "x.db").count()
    con = sqlite3.connect(tmp_path / "x.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_info_counts_and_cv(tmp_path):
    st = LatencyStore(tmp_path / "x.db")
    st.add_fingerprint("fp", {"backend": "ort"})
    for i, cv in enumerate((0.01, 0.02, 0.09)):
        u = BlockUnit(BlockConfig("ResNetBlock", 8, 16, 16 + 8 * i, 3, 0.5, 1, "relu"))
        st.add(u, "dev", "ort", "int8", 1, stats=stats(0.1, cv), fingerprint_id="fp")
    st.add(KERNEL, "dev", "ort", "int8", 1, error="x")
    info = st.info()
    assert (info["rows"], info["ok"], info["failed"]) == (4, 3, 1)
    assert info["median_cv"] == pytest.approx(0.02) and info["cv_over_5pct"] == 1
    assert info["fingerprints"] == 1 and info["devices"] == ["dev"]
    assert {"device": "dev", "dtype": "int8", "kind": "block", "type": "ResNetBlock", "status": "ok",
            "rows": 3} in info["groups"]
    json.dumps(info)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export(tmp_path, suffix):
    st = LatencyStore(tmp_path / "x.db")
    st.add(BLOCK, "dev", "ort", "int8", 1, stats=stats(0.1))
    st.add(KERNEL, "dev", "ort", "int8", 1, error="x")
    out = tmp_path / f"x{suffix}"
    assert st.export(out) == 2
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(df.columns) == list(COLUMNS) and set(df["status"]) == {"ok", "failed"}
    assert st.export(tmp_path / f"ok{suffix}", status="ok") == 1


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="-o .*allowed: .parquet, .csv"):
        LatencyStore(tmp_path / "x.db").export(tmp_path / "x.xlsx")
    with pytest.raises(ValueError, match="looks like an export"):
        LatencyStore(tmp_path / "x.csv")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="is not a spaceevo latency store"):
        LatencyStore(tmp_path / "junk.db").count()


V1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fingerprints (id TEXT PRIMARY KEY, backend TEXT NOT NULL, json TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, type TEXT NOT NULL,
    hw INTEGER, cin INTEGER, cout INTEGER, k INTEGER, e REAL, stride INTEGER, act TEXT, macs INTEGER,
    config TEXT NOT NULL, key TEXT NOT NULL,
    device TEXT NOT NULL, backend TEXT NOT NULL, dtype TEXT NOT NULL, threads INTEGER NOT NULL,
    median_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, p90_ms REAL, cv REAL,
    n INTEGER, attempts INTEGER, loops INTEGER, status TEXT NOT NULL, error TEXT, fingerprint_id TEXT,
    seed INTEGER, created_at TEXT NOT NULL, UNIQUE (kind, key, device, dtype, threads));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO measurements (kind, type, config, key, device, backend, dtype, threads, median_ms, cv, n, status,
    created_at) VALUES ('block', 'MobileNetV2ResBlock', '{}', 'old', 'dev', 'ort', 'int8', 1, 1.5, 0.02, 50, 'ok', 'now');
"""


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(V1_DDL)
    con.close()
    with LatencyStore(path) as st:
        df = st.read_measurements()
        assert df["key"].tolist() == ["old"] and df["median_ms"].tolist() == [1.5]
        assert df["rounds"].isna().all() and df["round_cv"].isna().all() and df["ratio"].isna().all()
        st.add(BLOCK, "dev", "ort", "int8", 1, stats=stats(2.0))
        st.add_round(BLOCK, "dev", "int8", 1, 0, stats(2.0))
        st.add_round(KERNEL, "dev", "int8", 1, 0, stats(1.0))
        # only units without a final row have rounds to resume
        assert st.count() == 2 and list(st.rounds_done("dev", "int8", 1)) == [("kernel", KERNEL.key)]
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "4"
    con.close()


def test_farm_device_status_is_kept_per_device(tmp_path):
    with LatencyStore(tmp_path / "x.db") as st:
        assert st.device_status() == {}
        st.set_device_status("pixel-a", "adb", "ok", device="adb-pixel-7", fingerprint_id="abc")
        st.set_device_status("pixel-a", "adb", "quarantined", "3 failures in a row; last: AdbError: gone",
                             device="adb-pixel-7", fingerprint_id="abc")
        got = st.device_status()["pixel-a"]
        assert (got["status"], got["reason"], got["device"]) == ("quarantined", "3 failures in a row; last: "
                                                                "AdbError: gone", "adb-pixel-7")
        with pytest.raises(ValueError, match=r"status='lost' is not in \['ok', 'quarantined'\]"):
            st.set_device_status("pixel-a", "adb", "lost")


def test_read_rounds_gives_each_round_with_its_time(tmp_path):
    with LatencyStore(tmp_path / "r.db") as st:
        for r in range(3):
            st.add_round(BLOCK, "dev", "int8", 1, r, stats(1.0 + r))
        st.add_round(MODEL, "dev", "fp32", 1, 0, stats(5.0))
        st.add_round(MODEL, "other", "int8", 2, 0, stats(5.0))
        df = st.read_rounds(device="dev", dtype="int8", threads=1)
        assert list(df.columns) == ["kind", "key", "device", "dtype", "threads", "round", "created_at"]
        assert df["round"].tolist() == [0, 1, 2] and set(df["key"]) == {BLOCK.key}
        times = pd.to_datetime(df["created_at"])
        assert times.is_monotonic_increasing
        full = st.read_rounds(stats=True)
        assert len(full) == 5 and full["stats"].iloc[2]["median_ms"] == 3.0
        assert len(st.read_rounds(threads=2)) == 1
