"""LUT importer: bounded least-squares recovery of per-block latencies, dataset format, stage tables."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from spaceevo.datasets.block_lut import LutKey
from spaceevo.datasets.lut_import import (fixed_blocks_frame, recover_block_latencies, solve_blocks, stage_tables,
                                          write_store)
from spaceevo.datasets.store import LatencyStore


@pytest.fixture(scope="module")
def small_lut(lut_dir, tmp_path_factory):
    """Two onnxw tables sharing a stage (copied to a temporary folder, never into the repo)."""
    root = tmp_path_factory.mktemp("lut") / "onnxw"
    root.mkdir()
    for name in ("stage1_1_0.csv", "stage1_1_1.csv"):
        shutil.copy(lut_dir / "onnxw" / name, root / name)
    return root.parent


@pytest.fixture(scope="module")
def small_rec(small_lut):
    return recover_block_latencies(small_lut, "onnxw")


def test_solve_blocks_exact_nonnegative_and_identifiability():
    # blocks 0..2 identified by three rows; blocks 3, 4 only ever appear together (one split of many)
    A = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 1, 1],
                                [0, 0, 0, 1, 1]], float))
    truth = np.array([1.0, 2.0, 3.0, 0.5, 4.0])
    x, unident, diag = solve_blocks(A, A @ truth)
    np.testing.assert_allclose(A @ x, A @ truth, rtol=1e-9)
    np.testing.assert_allclose(x[:3], truth[:3], rtol=1e-9)
    assert (x >= 0).all()
    assert unident.tolist() == [False, False, False, True, True]
    assert diag["rank_deficiency"] == 1


def test_solve_blocks_keeps_latencies_nonnegative():
    # the unconstrained minimum-norm solution of these rows has a negative block; the bounded one does not
    A = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], float))
    y = np.array([0.1, 10.0])
    x, unident, _ = solve_blocks(A, y)
    assert (x >= 0).all() and unident.all()
    np.testing.assert_allclose(A @ x, y, rtol=1e-6)


def test_recovery_reproduces_every_row(small_rec):
    rep = small_rec.report
    assert rep["rows"] == 2000 and rep["files"] == 2
    assert rep["distinct_blocks"] == len(small_rec.blocks) > 10
    rel = np.abs(small_rec.rows["recovered_ms"] - small_rec.rows["latency_ms"]) / small_rec.rows["latency_ms"]
    assert rel.max() <= 0.005 and rep["rows_within_0.5pct"] == 1.0 and rep["rows_over_0.5pct"] == 0
    assert rep["worst_row"]["rel_error"] == pytest.approx(rel.max())
    assert (small_rec.latency_ms >= 0).all()
    assert small_rec.n_rows.sum() >= 2000 * 2


def test_frame_has_dataset_columns(small_rec):
    df = small_rec.to_frame()
    for col in ("kind", "type", "hw", "cin", "cout", "k", "e", "stride", "act", "config", "key", "device",
                "dtype", "median_ms", "status", "fingerprint_id", "identifiable", "n"):
        assert col in df.columns
    assert set(df["device"]) == {"vnni-ort-int8"} and set(df["type"]) == {"MobileNetV2ResBlock"}
    assert set(df["stride"]) == {1, 2}
    trusted = small_rec.to_frame(trusted_only=True)
    assert len(trusted) == int((~small_rec.unidentifiable & (small_rec.latency_ms > 0)).sum())


def test_write_store_roundtrip(small_rec, shared_data, tmp_path):
    db = tmp_path / "lut.db"
    n = write_store(small_rec.to_frame(), db)
    n += write_store(fixed_blocks_frame(shared_data / "vnni_fixed_blocks.csv"), db)
    assert n == write_store(small_rec.to_frame(), db) + len(fixed_blocks_frame(shared_data / "vnni_fixed_blocks.csv"))
    with LatencyStore(db) as store:
        df = store.read_measurements(device="vnni-ort-int8")
        fps = store.fingerprints()
        assert store.count() == n  # rerun replaced, never duplicated
    assert len(df) == n and set(df["kind"]) == {"block"} and (df["median_ms"] > 0).all()
    assert set(df["fingerprint_id"]) == {"vnni-ort-int8:spaceevo-lut"}
    assert "SpaceEvo" in fps["vnni-ort-int8:spaceevo-lut"]["source"]
    assert {"FirstConvBlock", "MobileNetV2ResBlock"} <= set(df["type"])
    # only identified blocks by default; all of them with trusted_only=False
    assert write_store(small_rec.to_frame(), tmp_path / "all.db", trusted_only=False) == len(small_rec.blocks)


def test_fixed_blocks(shared_data):
    df = fixed_blocks_frame(shared_data / "vnni_fixed_blocks.csv")
    assert {"FirstConvBlock", "LogitsBlock"} <= set(df["type"])
    assert (df["median_ms"] > 0).all()


def test_stage_tables(small_lut):
    tabs = stage_tables(small_lut, "onnxw")
    t = tabs[LutKey("onnxw", 1, 1, 0)]
    assert len(t) == 1000 and set(t["resolution"]) <= {160, 192, 224}
    assert {"loss", "latency_ms", "n_blocks"} <= set(t.columns)


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        recover_block_latencies(tmp_path / "nope", "onnxw")


def test_empty_dir(tmp_path):
    (tmp_path / "onnxw").mkdir()
    with pytest.raises(FileNotFoundError, match="no stage"):
        recover_block_latencies(tmp_path, "onnxw")
