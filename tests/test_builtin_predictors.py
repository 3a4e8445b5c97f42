"""Built-in vnni-ort-int8 / pixel4-tflite-int8 predictors: published subnets, sanity in unseen configs, rebuild."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from spaceevo.predictors import builtin_dir, load_predictor
from spaceevo.space import BlockConfig

DEVICES = {"onnxw": "vnni-ort-int8", "mobilew": "pixel4-tflite-int8"}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "spaceevo"


def _published() -> list[tuple[str, str, str]]:
    path = DATA / "search_result.yaml"
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text())
    spaces = data["specific_supernet_encoding_dict"]
    return [(name, spaces[sp], sub) for name, (sp, sub) in data["specific_subnet_encoding_dict"].items()]


@pytest.mark.parametrize("device", sorted(DEVICES.values()))
def test_builtin_files_are_small_with_manifest(device):
    path = builtin_dir() / f"{device}.json.gz"
    assert path.is_file() and path.stat().st_size < 5_000_000
    man = load_predictor(device).manifest
    assert man["device"] == device and "SpaceEvo" in man["source"] and "MIT" in man["licence"]


@pytest.mark.parametrize("name,space,subnet", _published() or [pytest.param("-", "-", "-", marks=pytest.mark.skip(
    reason=f"search_result.yaml not found under {DATA}"))])
def test_published_subnets(name, space, subnet):
    pred = load_predictor(DEVICES[space.split("-")[0]])
    out = pred.predict_subnet(space, subnet)
    assert math.isfinite(out["latency_ms"]) and 1.0 < out["latency_ms"] < 500.0
    assert all(b["latency_ms"] > 0 for b in out["blocks"])


def _mean_ratio(pred, base: BlockConfig, field: str, values: list) -> float:
    lat = pred.predict_blocks([BlockConfig(**{**base.as_dict(), field: v}) for v in values])
    return float(np.mean(np.diff(lat) >= -1e-9))


@pytest.mark.parametrize("device", sorted(DEVICES.values()))
def test_monotone_on_average(device):
    pred = load_predictor(device)
    base = BlockConfig("MobileNetV2ResBlock", 28, 64, 64, 3, 6.0, 1, "relu6")
    for field, values in {"hw": [14, 20, 26, 28, 32], "cin": [32, 48, 64, 80, 96], "cout": [32, 48, 64, 80, 96],
                          "k": [3, 5, 7], "e": [3.0, 4.0, 6.0, 8.0]}.items():
        assert _mean_ratio(pred, base, field, values) >= 0.5, field


@pytest.mark.slow
def test_rebuild_matches_shipped(lut_dir, shared_data, tmp_path):
    from spaceevo.predictors.spaceevo_builtin import build_spaceevo

    reports = build_spaceevo(lut_dir, shared_data / "vnni_fixed_blocks.csv", tmp_path, hyperspaces=("onnxw",))
    rep = reports["vnni-ort-int8"]
    assert rep["rows_within_0.5pct"] >= 0.99
    new, old = load_predictor(tmp_path / "vnni-ort-int8.json.gz"), load_predictor("vnni-ort-int8")
    space, subnet = "onnxw-151122-023231", _published()[5][2] if _published() else None
    if subnet:
        a, b = new.predict_subnet(space, subnet)["latency_ms"], old.predict_subnet(space, subnet)["latency_ms"]
        assert abs(a - b) / b < 0.02
