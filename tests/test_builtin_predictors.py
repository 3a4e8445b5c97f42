"""Built-in vnni-ort-int8 / pixel4-tflite-int8 predictors: published subnets, block sources, sanity, rebuild."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from spaceevo.predictors import builtin_dir, load_predictor
from spaceevo.predictors.spaceevo_builtin import SpaceEvoLutRegressor, predict_subnet_blocks, sanity_report
from spaceevo.space import BlockConfig

DEVICES = {"onnxw": "vnni-ort-int8", "mobilew": "pixel4-tflite-int8"}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "spaceevo"
FIXED_STAGES = ("first_conv", "final_expand", "feature_mix", "logits")


def _published() -> list[tuple[str, str, str]]:
    path = DATA / "search_result.yaml"
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text())
    spaces = data["specific_supernet_encoding_dict"]
    return [(name, spaces[sp], sub) for name, (sp, sub) in data["specific_subnet_encoding_dict"].items()]


_PUBLISHED = _published() or [pytest.param("-", "-", "-", marks=pytest.mark.skip(
    reason=f"search_result.yaml not found under {DATA}"))]


@pytest.mark.parametrize("device", sorted(DEVICES.values()))
def test_builtin_files_are_small_with_manifest(device):
    path = builtin_dir() / f"{device}.json.gz"
    assert path.is_file() and path.stat().st_size < 5_000_000
    man = load_predictor(device).manifest
    assert man["device"] == device and "SpaceEvo" in man["source"] and "MIT" in man["licence"]
    assert man["estimator"] == "spaceevo-lut" and man["lut_recovery"]["rows_within_0.5pct"] == 1.0
    assert set(man["sources"]) == {"table", "model", "extrapolated"}


@pytest.mark.parametrize("name,space,subnet", _PUBLISHED)
def test_published_subnets(name, space, subnet):
    hyper = space.split("-")[0]
    pred = load_predictor(DEVICES[hyper])
    out = predict_subnet_blocks(pred, space, subnet)
    assert math.isfinite(out["latency_ms"]) and 1.0 < out["latency_ms"] < 500.0
    blocks = out["blocks"]
    assert all(b["latency_ms"] > 0 for b in blocks)
    assert {b["source"] for b in blocks} <= {"table", "model"}
    by_stage = {}
    for b in blocks:
        by_stage.setdefault(b["stage"], []).append(b)
    # stage0 is in no table: extrapolated in both hyperspaces
    assert all(b["extrapolated"] and b["source"] == "model" for b in by_stage["stage0"])
    fixed = [b for s in FIXED_STAGES for b in by_stage[s]]
    if hyper == "mobilew":  # Pixel 4's fixed blocks: no table, MACs x ms/MAC
        assert all(b["extrapolated"] for b in fixed)
    else:  # VNNI's fixed blocks are measured (vnni_fixed_blocks.csv: final_expand for cin 320..432)
        assert all(b["source"] == "table" for b in fixed if b["stage"] != "final_expand")
        assert all(b["source"] == "table" for b in by_stage["final_expand"] if 320 <= b["cin"] <= 432)
    searchable = [b for s, bs in by_stage.items() if s.startswith("stage") and s != "stage0" for b in bs]
    assert all(not b["extrapolated"] for b in searchable)
    if subnet.endswith(("_r160", "_r192", "_r224")):  # the tables' resolutions: most blocks are recovered
        assert np.mean([b["source"] == "table" for b in searchable]) >= 0.5
    assert out["n_extrapolated"] == sum(b["extrapolated"] for b in blocks)


@pytest.mark.parametrize("name,space,subnet", [p for p in _PUBLISHED if not isinstance(p, tuple) or
                                               p[0] in ("SEQnet@vnni-A0", "SEQnet@pixel4-A0")])
def test_cli_predict_marks_sources(name, space, subnet):
    from spaceevo.cli import app

    device = DEVICES[space.split("-")[0]]
    res = CliRunner().invoke(app, ["predict", subnet, "--space", space, "--predictor", device, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert all({"source", "extrapolated"} <= set(b) for b in data["blocks"])
    assert any(b["extrapolated"] for b in data["blocks"]) and any(b["source"] == "table" for b in data["blocks"])
    res = CliRunner().invoke(app, ["predict", subnet, "--space", space, "--predictor", device])
    assert res.exit_code == 0 and "extrapolated" in res.output


def _steps_up(pred, base: BlockConfig, field: str, values: list) -> float:
    lat = pred.predict_blocks([BlockConfig(**{**base.as_dict(), field: v}) for v in values])
    return float(np.mean(np.diff(lat) >= -1e-9))


@pytest.mark.parametrize("device", sorted(DEVICES.values()))
def test_monotone_on_average(device):
    pred = load_predictor(device)
    base = BlockConfig("MobileNetV2ResBlock", 28, 64, 64, 3, 6.0, 1, "relu6")
    for field, values in {"hw": [14, 20, 26, 28, 32], "cin": [32, 48, 56, 64, 80, 96],
                          "cout": [32, 48, 56, 64, 80, 96], "k": [3, 5, 7], "e": [3.0, 4.0, 6.0, 8.0]}.items():
        assert _steps_up(pred, base, field, values) >= 0.75, field


@pytest.mark.parametrize("hyper", sorted(DEVICES))
def test_unseen_configs_sensible(hyper):
    rep = sanity_report(load_predictor(DEVICES[hyper]), hyper, n=60)
    assert np.mean(list(rep["monotone_fraction"].values())) >= 0.9, rep
    assert min(rep["monotone_fraction"].values()) >= 0.75, rep
    assert rep["interp_within_15pct"] >= 0.9, rep


def test_lut_estimator_table_model_and_domain():
    rng = np.random.default_rng(0)
    X = np.zeros((40, 28))
    X[:, 0] = rng.choice([7, 14, 28], 40)  # hw
    X[:, 1] = X[:, 2] = rng.choice([32, 64], 40)  # cin, cout
    X[:, 3], X[:, 4], X[:, 5] = 3, 4.0, 1
    X[:, 7] = X[:, 0] ** 2 * X[:, 1] * X[:, 2]  # macs
    y = 1e-4 * X[:, 7] + 0.01
    est = SpaceEvoLutRegressor(n_estimators=20).fit(X, y)
    np.testing.assert_allclose(est.predict(X), y, rtol=1e-6)
    assert est.predict_source(X).all() and not est.predict_extrapolated(X).any()
    far = X[:1].copy()
    far[0, 0] = 56
    assert not est.predict_source(far)[0] and est.predict_extrapolated(far)[0]
    est2 = type(est).from_state(est.to_state())
    np.testing.assert_allclose(est2.predict(np.vstack([X, far])), est.predict(np.vstack([X, far])))
    est2.synthetic_ = True
    assert est2.predict_extrapolated(X).all() and not est2.predict_source(X).any()
    with pytest.raises(ValueError, match="'num_leaves' parameter of SpaceEvoLutRegressor must be an int >= 1"):
        SpaceEvoLutRegressor(num_leaves=0).fit(X, y)


@pytest.mark.slow
def test_rebuild_matches_shipped(lut_dir, shared_data, tmp_path):
    from spaceevo.datasets.store import LatencyStore
    from spaceevo.predictors.spaceevo_builtin import build_spaceevo

    db = tmp_path / "lut.db"
    reports = build_spaceevo(lut_dir, shared_data / "vnni_fixed_blocks.csv", tmp_path, hyperspaces=("onnxw",), db=db)
    rep = reports["vnni-ort-int8"]
    assert rep["rows_within_0.5pct"] == 1.0 and rep["max_rel_residual"] <= 0.005
    assert rep["size_bytes"] < 5_000_000
    with LatencyStore(db) as store:
        assert store.count() == rep["db_rows"] > 30_000
    new, old = load_predictor(tmp_path / "vnni-ort-int8.json.gz"), load_predictor("vnni-ort-int8")
    for _name, space, subnet in _published():
        if space.startswith("onnxw"):
            a, b = new.predict_subnet(space, subnet)["latency_ms"], old.predict_subnet(space, subnet)["latency_ms"]
            assert abs(a - b) / b < 0.02, (subnet, a, b)
