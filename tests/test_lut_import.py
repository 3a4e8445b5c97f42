"""LUT importer: least-squares recovery of per-block latencies, dataset format, stage tables."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spaceevo.datasets.block_lut import LutKey
from spaceevo.datasets.lut_import import fixed_blocks_frame, recover_block_latencies, stage_tables


@pytest.fixture(scope="module")
def small_lut(lut_dir, tmp_path_factory):
    """Two onnxw tables sharing a stage (copied to a temporary folder, never into the repo)."""
    root = tmp_path_factory.mktemp("lut") / "onnxw"
    root.mkdir()
    for name in ("stage1_1_0.csv", "stage1_1_1.csv"):
        shutil.copy(lut_dir / "onnxw" / name, root / name)
    return root.parent


def test_recovery_reproduces_rows(small_lut):
    rec = recover_block_latencies(small_lut, "onnxw")
    rep = rec.report
    assert rep["rows"] == 2000 and rep["files"] == 2
    assert rep["distinct_blocks"] == len(rec.blocks) > 10
    rel = np.abs(rec.rows["recovered_ms"] - rec.rows["latency_ms"]) / rec.rows["latency_ms"]
    assert (rel <= 0.005).mean() >= 0.99
    assert (rec.latency_ms >= 0).all()


def test_frame_has_dataset_columns(small_lut):
    df = recover_block_latencies(small_lut, "onnxw").to_frame()
    for col in ("kind", "type", "hw", "cin", "cout", "k", "e", "stride", "act", "config", "key", "device",
                "dtype", "median_ms", "status", "fingerprint_id"):
        assert col in df.columns
    assert set(df["device"]) == {"vnni-ort-int8"} and set(df["type"]) == {"MobileNetV2ResBlock"}
    assert set(df["stride"]) == {1, 2}


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
