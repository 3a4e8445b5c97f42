"""Validation helpers: subnets measured in rounds, the store round trip, repeatability, ``validate_predictor``."""

from __future__ import annotations

import numpy as np
import pytest

from fake_backend import FakeBackend

from spaceevo.datasets.store import LatencyStore
from spaceevo.latency import SubnetUnit
from spaceevo.predictors import train_predictor
from spaceevo.predictors import _validate as V
from spaceevo.predictors._synthetic import synthetic_measurements
from spaceevo.space import SearchSpace

SPACE = "onnxw-151122-023231"


def test_repeatability_summary():
    r = V._repeatability(np.array([10.0, 10.0, 10.0]), np.array([10.0, 10.4, 12.0]))
    assert r["n"] == 3 and r["median_abs_rel_diff"] == pytest.approx(0.04)
    assert r["max_abs_rel_diff"] == pytest.approx(0.2) and r["within_5pct"] == pytest.approx(200 / 3)
    assert r["median_rel_diff"] == pytest.approx(0.04) and "error_within_noise" not in r
    assert r["within_10pct"] == pytest.approx(200 / 3)
    ranked = V._repeatability(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.05, 2.5, 2.4, 4.0]))
    assert ranked["within_10pct"] == pytest.approx(50.0)  # 1.05 and 4.0 within 10%; 2.5 (+25%), 2.4 (-20%) not
    assert ranked["kendall_tau"] == pytest.approx(4 / 6)  # one discordant pair (2, 3) of six
    assert V._repeatability(np.array([1.0]), np.array([1.0]))["kendall_tau"] is None
    small = V._repeatability(np.array([10.0, 10.0, 10.0]), np.array([10.0, 10.4, 12.0]), np.array([0.01, -0.03, 0.2]))
    assert small["median_abs_error"] == pytest.approx(0.03) and small["error_within_noise"] is True
    big = V._repeatability(np.array([10.0, 10.0]), np.array([10.1, 9.9]), np.array([0.05, -0.06]))
    assert big["error_within_noise"] is False


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
    df = V._measure_units([SubnetUnit(SPACE, str(s)) for s in subs], be, "int8", None, "d", False, rounds=2)
    assert len(df) == 3 and (df["median_ms"] > 0).all() and set(df["rounds"]) == {2}
    assert be.calls == 6
