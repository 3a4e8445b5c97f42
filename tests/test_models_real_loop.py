"""The real loop in miniature with onnxruntime INT8: profile the kernels of a few tiny zoo models and the models
whole, train a kernel predictor, validate it on other zoo models measured whole (numbers only sanity-checked)."""

from __future__ import annotations

import pytest

from spaceevo.datasets import LatencyStore
from spaceevo.latency import create_backend, model_profile_units, run_profile
from spaceevo.predictors import train_kernel_predictor, validate_models
from spaceevo.space import generate_zoo


@pytest.mark.slow
def test_profile_train_validate_on_tiny_zoo(tmp_path):
    generate_zoo(tmp_path / "train", ["mobilenetv2", "squeezenet", "resnet"], 1, seed=0, resolution=32, tiny=True)
    generate_zoo(tmp_path / "val", ["mobilenetv2", "resnet"], 1, seed=1, resolution=32, tiny=True)
    plan = model_profile_units(tmp_path / "train")
    be = create_backend("ort", repeats=3, warmup=2, max_attempts=1, min_sample_ms=0.5)
    with LatencyStore(tmp_path / "k.db") as st:
        summary = run_profile(plan["kernels"] + plan["models"], be, ["int8"], db=st, progress=False)
        df = st.read_measurements()
    assert summary["failed"] == 0 and summary["ok"] == len(plan["kernels"]) + 3
    pred = train_kernel_predictor(df, summary["device"], cv_folds=0, estimator_params={"n_estimators": 50})
    assert pred.composition["n_models"] == 3
    out = validate_models(pred, tmp_path / "val", rounds=1, repeats=3, progress=False)
    assert out["samples"] == 2 and all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in out["rows"])
    # the same order of magnitude (a factor of 5 either way, whatever else runs on the machine); accuracy is
    # measured by benchmarks/bench_models.py
    assert all(0.2 < r["predicted_ms"] / r["measured_ms"] < 5.0 for r in out["rows"])
