"""A small real loop on this CPU: profile blocks and whole subnets (onnxruntime INT8) -> train -> validate."""

from __future__ import annotations

import pytest

from spaceevo.predictors import LatencyPredictor, train_predictor
from spaceevo.predictors._validate import profile_sample, sample_subnets, validate_predictor

pytest.importorskip("onnxruntime", reason="onnxruntime is needed to measure INT8 models")

SPACE = "onnxw-151122-023231"


@pytest.mark.slow
def test_profile_train_validate_loop(tmp_path):
    subs = sample_subnets(SPACE, 2, seed=0, resolution=160)
    models = sample_subnets(SPACE, 3, seed=7, resolution=160)
    # the collector's protocol: short rounds, the reference block timed beside every sample
    df = profile_sample(SPACE, subs, model_subnets=models, repeats=10, progress=False, rounds=2, reference=True)
    assert set(df["kind"]) == {"block", "model"} and (df["median_ms"] > 0).all() and (df["ratio"] > 0).all()
    assert (df["kind"] == "model").sum() == 3 and df["device"].iloc[0].startswith("ort-")
    pred = train_predictor(df, device=df["device"].iloc[0], estimator="lut", cv_folds=0, target="norm_ms")
    assert pred.composition["n_models"] == 3
    pred = LatencyPredictor.load(pred.save(tmp_path / "p.json.gz"))
    out = validate_predictor(pred, SPACE, samples=2, seed=0, resolution=160, repeats=10, progress=False, rounds=2)
    assert out["samples"] == 2 and len(out["rows"]) == 2 and out["statistic"] == "norm_ms"
    assert {"acc_10pct", "acc_5pct", "mape", "kendall_tau", "without_composition"} <= set(out)
    for row in out["rows"]:
        # every block of the validated subnets was measured: only the composition term is predicted
        assert row["measured_ms"] > 0 and abs(row["rel_error"]) < 0.5
