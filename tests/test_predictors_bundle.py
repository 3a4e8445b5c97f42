"""The predictor bundle: fit, sources, composition, save/load, corrupt files, fast path, registry."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from spaceevo.space import BlockConfig, SearchSpace
from spaceevo.predictors import (
    auto_target,
    reference_ms,
    with_target,
    LatencyPredictor,
    PredictorFileError,
    describe_predictors,
    install_predictor,
    list_predictors,
    load_predictor,
    train_predictor,
)
from spaceevo.predictors._composition import compose, fit_composition, identity_composition, terms_of
from spaceevo.predictors._synthetic import synthetic_block_ms, synthetic_measurements

SPACE = "onnxw-151122-023231"


@pytest.fixture(scope="module")
def data():
    return synthetic_measurements(SPACE, n_subnets=40, n_models=20, seed=0)


@pytest.fixture(scope="module")
def pred(data):
    return train_predictor(data, device="synthetic", dtype="int8", estimator="lgbm", cv_folds=3)


@pytest.fixture(scope="module")
def lut_pred(data):
    return train_predictor(data, device="synthetic", dtype="int8", estimator="lut", cv_folds=0)


def test_unit_accuracy_and_manifest(pred):
    man = pred.manifest
    assert man["format_version"] == 1 and man["device"] == "synthetic" and man["dtype"] == "int8"
    assert man["dataset"]["digest"].startswith("sha256:") and man["dataset"]["n_model_rows"] == 20
    assert man["runtime"]["lightgbm"] and man["feature_schema"]["names"][0] == "hw"
    assert man["metrics"]["unit_cv"]["acc_10pct"] >= 90.0
    assert man["metrics"]["unit_train"]["mape"] < 2.0


def test_composition_corrects_the_block_sum(pred):
    # synthetic whole subnets take 0.85 * sum + 0.05 ms: the composed prediction follows, whichever terms won
    sp = SearchSpace.parse(SPACE)
    for sn in sp.sample(5, seed=11):
        out = pred.predict_subnet(sp, sn)
        assert out["latency_ms"] == pytest.approx(0.85 * out["blocks_sum_ms"] + 0.05, rel=0.06)
    c = pred.composition
    assert c["n_models"] == 20 and c["selected_by"] == "leave-one-out MAPE" and c["candidates_loo_mape"]
    m = pred.manifest["metrics"]
    assert m["model_composed_loo"]["mape"] < m["model_sum"]["mape"]
    assert m["model_sum"]["acc_10pct"] < 50.0 <= m["model_composed_loo"]["acc_10pct"]


def test_predict_blocks_sources(pred, lut_pred, data):
    seen = BlockConfig.parse(data[data["kind"] == "block"]["key"].iloc[0])
    unseen = BlockConfig("MobileNetV3ResBlock", 20, 112, 128, 5, 6.0, 1, "hswish")
    lat, src = lut_pred.predict_blocks([seen, unseen], return_source=True)
    assert list(src) == ["lookup", "model"]
    measured = float(data.loc[data["key"] == seen.to_string(), "median_ms"].iloc[0])
    assert lat[0] == pytest.approx(measured, rel=1e-12)
    _, src = pred.predict_blocks([seen, unseen], return_source=True)
    assert list(src) == ["model", "model"]
    assert pred.predict_block(unseen.to_string()) == pytest.approx(synthetic_block_ms(unseen), rel=0.25)


def test_unknown_block_type_is_a_clear_error(pred):
    cfg = BlockConfig("ResNetSEBlock", 14, 128, 128, 3, 1.0, 1, "relu")
    with pytest.raises(ValueError, match="block type 'ResNetSEBlock' has no model in this predictor"):
        pred.predict_blocks([cfg])


def test_predict_subnet_lists_blocks(pred):
    sp = SearchSpace.parse(SPACE)
    sn = sp.sample(1, seed=5)[0]
    out = pred.predict_subnet(SPACE, str(sn))
    assert len(out["blocks"]) == len(sp.blocks(sn))
    assert sum(b["latency_ms"] for b in out["blocks"]) == pytest.approx(out["blocks_sum_ms"])
    lat = np.array([b["latency_ms"] for b in out["blocks"]])
    assert out["latency_ms"] == pytest.approx(compose(pred.composition, [b.config for b in sp.blocks(sn)], lat))
    assert out["params_m"] == pytest.approx(sum(b.config.params for b in sp.blocks(sn)) / 1e6)
    assert {"stage", "type", "hw", "cin", "cout", "k", "e", "stride", "act", "latency_ms", "source"} <= set(out["blocks"][0])


@pytest.mark.parametrize("space", [SPACE, "onnxw-530421-101010"])
def test_fast_path_equals_slow_path(pred, space):
    sp = SearchSpace.parse(space)
    subs = sp.sample(40, seed=3)
    try:
        slow = np.array([pred.predict_subnet(sp, s)["latency_ms"] for s in subs])
    except ValueError as exc:  # this synthetic predictor lacks some block types of the second space
        assert "has no model" in str(exc)
        with pytest.raises(ValueError, match="has no model"):
            pred.predict_subnets(sp, subs)
        return
    np.testing.assert_allclose(pred.predict_subnets(sp, subs), slow, rtol=1e-12)
    np.testing.assert_allclose([pred.predict_subnet_fast(sp, s) for s in subs], slow, rtol=1e-12)
    np.testing.assert_allclose(pred.predict_subnets(sp, [str(s) for s in subs]), slow, rtol=1e-12)


def test_fast_path_rejects_invalid_subnet(pred):
    sp = SearchSpace.parse(SPACE)
    sn = sp.sample(1, seed=0)[0]
    bad = str(sn).replace(f"_r{sn.resolution}", "_r170")
    with pytest.raises(ValueError, match="r=170 is not in onnxw resolutions"):
        pred.predict_subnets(sp, [bad])


@pytest.mark.parametrize("name", ["p.json", "p.json.gz"])
@pytest.mark.parametrize("fixture", ["pred", "lut_pred"])
def test_save_load_identical(request, tmp_path, name, fixture, data):
    p = request.getfixturevalue(fixture)
    path = p.save(tmp_path / name)
    q = LatencyPredictor.load(path)
    blocks = [BlockConfig.parse(k) for k in data[data["kind"] == "block"]["key"]]
    np.testing.assert_array_equal(q.predict_blocks(blocks), p.predict_blocks(blocks))
    sp = SearchSpace.parse(SPACE)
    subs = sp.sample(20, seed=9)
    np.testing.assert_array_equal(q.predict_subnets(sp, subs), p.predict_subnets(sp, subs))
    assert q.manifest == json.loads(json.dumps(p.manifest))


def test_rf_bundle_round_trip(tmp_path, data):
    p = train_predictor(data, device="synthetic", estimator="rf", cv_folds=0,
                        estimator_params={"n_estimators": 20})
    q = LatencyPredictor.load(p.save(tmp_path / "rf.json.gz"))
    blocks = [BlockConfig.parse(k) for k in data[data["kind"] == "block"]["key"][:50]]
    np.testing.assert_array_equal(q.predict_blocks(blocks), p.predict_blocks(blocks))


def test_corrupt_and_incompatible_files(tmp_path, pred):
    good = pred.save(tmp_path / "good.json")
    text = good.read_text()
    (tmp_path / "trunc.json").write_text(text[: len(text) // 2])
    with pytest.raises(PredictorFileError, match="is corrupt or not a spaceevo predictor"):
        LatencyPredictor.load(tmp_path / "trunc.json")
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(text.encode())[:100])
    with pytest.raises(PredictorFileError, match="is corrupt or not a spaceevo predictor"):
        LatencyPredictor.load(tmp_path / "bad.json.gz")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(PredictorFileError, match="is not a spaceevo latency predictor"):
        LatencyPredictor.load(tmp_path / "other.json")
    data = json.loads(text)
    data["format_version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(data))
    with pytest.raises(PredictorFileError, match="format_version=99; this spaceevo reads format_version 1"):
        LatencyPredictor.load(tmp_path / "v99.json")
    data = json.loads(text)
    data["manifest"]["feature_schema"]["version"] = 0
    (tmp_path / "schema.json").write_text(json.dumps(data))
    with pytest.raises(PredictorFileError, match="feature schema version 0"):
        LatencyPredictor.load(tmp_path / "schema.json")
    data = json.loads(text)
    first = next(iter(data["models"]))
    data["models"][first]["model"] = "garbage"
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(PredictorFileError, match="is a corrupt spaceevo predictor"):
        LatencyPredictor.load(tmp_path / "model.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatencyPredictor.load(tmp_path / "missing.json")


def test_unfitted_and_bad_arguments():
    with pytest.raises(ValueError, match="not fitted"):
        LatencyPredictor().predict_blocks([])
    with pytest.raises(ValueError, match=r"dtype='int4' is not one of \['int8', 'fp32'\]"):
        LatencyPredictor(dtype="int4")
    with pytest.raises(ValueError, match="no block measurements"):
        import pandas as pd

        LatencyPredictor().fit(pd.DataFrame({"kind": ["model"], "median_ms": [1.0]}))


def test_registry_user_dir(tmp_path, monkeypatch, pred):
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    path = install_predictor(pred, "my-cpu")
    assert path.parent == tmp_path / "home" / "predictors"
    rows = [r for r in describe_predictors() if r["origin"] == "user"]
    assert "my-cpu" in list_predictors() and list_predictors("my-*") == ["my-cpu"]
    assert rows == [{"name": "my-cpu", "origin": "user", "path": str(path), "device": "synthetic", "dtype": "int8",
                     "estimator": "lgbm", "unit_kind": "block", "created_at": pred.manifest["created_at"]}]
    assert load_predictor("my-cpu").manifest == load_predictor(path).manifest
    with pytest.raises(FileNotFoundError, match="predictor 'nope' is neither a file nor a registered name"):
        load_predictor("nope")
    with pytest.raises(ValueError, match="must be a plain file name"):
        install_predictor(pred, "a/b")


def _nets(n, seed=0):
    sp = SearchSpace.parse(SPACE)
    return [[b.config for b in sp.blocks(s)] for s in sp.sample(n, seed=seed)]


def test_fit_composition_recovers_per_type_scales_and_overhead():
    nets = _nets(30)
    lat = [np.array([synthetic_block_ms(c) for c in net]) for net in nets]
    scale = {"MobileNetV2ResBlock": 0.7, "MobileNetV3ResBlock": 1.0, "FusedMBConvResBlock": 0.9}
    y = [sum(scale.get(c.type, 0.8) * v for c, v in zip(net, lv)) - 0.01 * len(net) + 0.2
         for net, lv in zip(nets, lat)]
    c, metrics = fit_composition(nets, lat, y)
    assert set(terms_of(c)) >= {f"lat:{t}" for t in scale} and "blocks" in terms_of(c)
    assert "fp32_melem" not in terms_of(c)  # blocks have no FP32 kernels: the feature is never a candidate
    assert terms_of(c)["lat:MobileNetV2ResBlock"] == pytest.approx(0.7, rel=0.05)
    assert metrics["model_composed_loo"]["mape"] < 0.5 < metrics["model_sum"]["mape"]
    assert all(compose(c, net, lv) == pytest.approx(t, rel=0.01) for net, lv, t in zip(nets, lat, y))


class _Item:
    """A kernel as the composition term reads it."""

    def __init__(self, ktype, in_e, out_e, fp32):
        self.type, self.input_shape, self.output_shape, self.params, self.fp32 = ktype, (in_e,), (out_e,), 0, fp32


def test_fit_composition_learns_the_cost_around_fp32_kernels():
    rng = np.random.default_rng(0)
    nets, lat, y = [], [], []
    for _ in range(40):
        n = int(rng.integers(8, 30))
        items = [_Item(str(rng.choice(["conv", "act"])), int(rng.integers(1e4, 4e5)), int(rng.integers(1e4, 4e5)),
                       bool(rng.random() < 0.3)) for _ in range(n)]
        lv = rng.uniform(0.05, 1.0, n)
        io = sum(i.input_shape[0] + i.output_shape[0] for i in items) / 1e6
        f32 = sum(i.input_shape[0] + i.output_shape[0] for i in items if i.fp32) / 1e6
        nets.append(items), lat.append(lv), y.append(lv.sum() - 0.2 * io + 0.45 * f32 + 0.1)
    c, metrics = fit_composition(nets, lat, y)
    assert terms_of(c)["fp32_melem"] == pytest.approx(0.45, rel=0.02)
    assert terms_of(c)["io_melem"] == pytest.approx(-0.2, rel=0.02)
    assert metrics["model_composed_loo"]["mape"] < 0.1 and "lat+io_melem+blocks+fp32_melem" in c["candidates_loo_mape"]


def test_fit_composition_small_and_bad_input():
    nets = _nets(4)
    lat = [np.ones(len(n)) for n in nets]
    c, _ = fit_composition(nets, lat, [0.5 * len(n) for n in nets])
    assert c["terms"] == {"lat": pytest.approx(0.5)} and c["selected_by"] == "too few networks"
    assert fit_composition([], [], [])[0] == identity_composition()
    with pytest.raises(ValueError, match="one entry per network"):
        fit_composition(nets, lat[:2], [1.0] * 4)
    with pytest.raises(ValueError, match="measured_ms must be finite and > 0"):
        fit_composition(nets, lat, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="composition feature 'flops' is not one of"):
        compose({"terms": {"flops": 1.0}}, nets[0], lat[0])


def test_legacy_composition_terms():
    assert terms_of({"scale": 0.9, "params_coef": 0.1, "offset_ms": 0.0}) == {"lat": 0.9, "params_m": 0.1}


def test_target_statistic(data):
    df = data.assign(min_ms=data["median_ms"] * 0.9)
    p = train_predictor(df, device="synthetic", estimator="lut", cv_folds=0, target="min_ms")
    assert p.target == "min_ms" and p.manifest["target"] == "min_ms"
    key = df[df["kind"] == "block"]["key"].iloc[0]
    assert p.predict_block(key) == pytest.approx(float(df.loc[df["key"] == key, "min_ms"].iloc[0]))
    with pytest.raises(ValueError, match=r"target='p50' is not one of \['median_ms', 'min_ms', 'mean_ms', 'norm_ms'\]"):
        LatencyPredictor(target="p50")
    with pytest.raises(ValueError, match="lacks the 'min_ms' column"):
        LatencyPredictor(target="min_ms").fit(data)


def test_norm_ms_target_learns_the_ratio_in_the_reference_scale(data, tmp_path):
    # every row timed against the reference: ratio = latency / reference time, machine speed cancelled
    ref_min = np.resize([0.4, 0.5, 0.6], len(data))
    df = data.assign(ratio=data["median_ms"] / 0.5, ref_min_ms=ref_min, min_ms=data["median_ms"])
    assert auto_target(df) == "norm_ms" and auto_target(data.assign(min_ms=1.0)) == "min_ms"
    assert auto_target(data) == "median_ms"
    p = train_predictor(df, device="synthetic", estimator="lut", cv_folds=0, target="norm_ms")
    assert p.reference_ms == pytest.approx(0.5) and p.manifest["reference_ms"] == pytest.approx(0.5)
    key = df[df["kind"] == "block"]["key"].iloc[0]
    assert p.predict_block(key) == pytest.approx(float(df.loc[df["key"] == key, "median_ms"].iloc[0]))
    back = LatencyPredictor.load(p.save(tmp_path / "p.json.gz"))
    assert back.target == "norm_ms" and back.reference_ms == pytest.approx(0.5)
    assert back.predict_block(key) == pytest.approx(p.predict_block(key))
    # a table measured without the reference cannot give norm_ms: the error says how to get it
    with pytest.raises(ValueError, match=r"profile with the reference on \(spaceevo profile --reference\)"):
        train_predictor(data, device="synthetic", estimator="lut", cv_folds=0, target="norm_ms")
    half = df.assign(ratio=np.where(np.arange(len(df)) % 2, np.nan, df["ratio"]))
    with pytest.raises(ValueError, match=rf"needs the 'ratio' of every row \({len(df) // 2} of {len(df)} rows lack"):
        with_target(half, "norm_ms")
    with pytest.raises(ValueError, match="no 'ref_min_ms' column"):
        reference_ms(data)
