"""Few-shot transfer (``spaceevo adapt``): a simulated device is recovered, provenance survives a round trip,
a tiny real onnxruntime run from an FP32 predictor, and bad input is one clear line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spaceevo.cli import app
from spaceevo.latency import random_subnets, register_backend, space_block_configs
from spaceevo.latency._backend import _BACKENDS
from spaceevo.predictors import AdaptSource, LatencyPredictor, adapt_predictor, load_predictor, select_units
from spaceevo.predictors._adapt import (adaptation_info, check_source, rank_sources, source_log_predictions,
                                        unit_arrays)
from spaceevo.predictors._synthetic import synthetic_measurements

runner = CliRunner()
SPACE = "onnxw-151122-023231"


@pytest.fixture(scope="module")
def source() -> AdaptSource:
    df = synthetic_measurements(SPACE, n_subnets=25, n_models=0, seed=0, noise=0.0)
    pred = LatencyPredictor(device="src", dtype="int8", estimator_params={"n_estimators": 80}).fit(df)
    return AdaptSource("src", pred)


@pytest.fixture(scope="module")
def candidates():
    configs = space_block_configs(SPACE, [160])
    types, X = unit_arrays(configs)
    return configs, types, X


def _device(types, log_src, seed=0, noise=0.01):
    """A simulated device: per type a known offset and one slope in log space, plus 1% noise."""
    names = sorted(set(types.tolist()))
    offset = dict(zip(names, np.linspace(-0.4, 0.4, len(names))))
    truth = np.array([offset[t] for t in types]) + 1.1 * log_src
    return np.exp(truth + np.random.default_rng(seed).normal(0, noise, len(truth))), np.exp(truth)


def _rows(configs, idx, ms):
    return pd.DataFrame([{"kind": "block", "key": configs[i].to_string(), **configs[i].as_dict(),
                          "config": json.dumps(configs[i].as_dict()), "median_ms": float(ms[i]), "status": "ok"}
                         for i in idx])


def test_a_simulated_device_is_recovered(source, candidates):
    configs, types, X = candidates
    log_src = source_log_predictions([source], types, X)[:, 0]
    measured, truth = _device(types, log_src)
    idx = select_units(types, X, log_src[:, None], 80, "diverse")
    assert len(set(idx.tolist())) == 80
    big = pd.Series(np.exp(log_src)).groupby(types).sum().nlargest(3).index
    assert set(big) <= set(types[idx])  # the types that carry the latency are measured
    errors = {}
    for method in ("scale", "per-type"):
        pred = adapt_predictor([source], _rows(configs, idx, measured), device="sim", method=method)
        errors[method] = np.median(np.abs(pred.predict_blocks(configs) / truth - 1))
    assert errors["per-type"] < 0.03  # the per-type transform is recovered on all 1,065 blocks
    assert errors["scale"] > 2 * errors["per-type"]  # one scale cannot: the test can tell them apart
    auto = adapt_predictor([source], _rows(configs, idx, measured), device="sim", method="auto")
    assert adaptation_info(auto)["method"] in ("per-type", "boost")


def test_the_better_source_is_ranked_first(source, candidates):
    configs, types, X = candidates
    log_src = source_log_predictions([source], types, X)[:, 0]
    measured, _ = _device(types, log_src)
    idx = select_units(types, X, log_src[:, None], 30, "diverse")
    wrong = log_src[idx] + np.random.default_rng(3).normal(0, 0.3, len(idx))  # a source that ranks badly
    ranking = rank_sources(["good", "bad"], types[idx], np.column_stack([log_src[idx], wrong]), np.log(measured[idx]))
    assert [r["name"] for r in ranking] == ["good", "bad"]
    assert ranking[0]["loo_log_rmse"] < 0.7 * ranking[1]["loo_log_rmse"]
    assert ranking[0]["kendall_tau"] > ranking[1]["kendall_tau"]


def test_bundle_round_trip_keeps_the_provenance(source, candidates, tmp_path):
    configs, types, X = candidates
    log_src = source_log_predictions([source], types, X)[:, 0]
    measured, _ = _device(types, log_src)
    idx = select_units(types, X, log_src[:, None], 20, "random", seed=1)
    pred = adapt_predictor([source], _rows(configs, idx, measured), device="sim", method="per-type",
                           info={"budget": 20, "adapt_seconds": 1.5})
    path = pred.save(tmp_path / "sim.json.gz")
    back = load_predictor(path)
    info = adaptation_info(back)
    assert back.estimator == "transfer" and back.source == "adapted from src"
    assert [s["name"] for s in info["sources"]] == ["src"] and info["sources"][0]["device"] == "src"
    assert info["budget"] == 20 and info["n_units"] == 20 and info["adapt_seconds"] == 1.5
    assert sorted(info["units"]) == sorted(configs[i].to_string() for i in idx)
    np.testing.assert_allclose(back.predict_blocks(configs[:300]), pred.predict_blocks(configs[:300]), rtol=1e-12)
    sp, sn = random_subnets(SPACE, 1, [160], seed=0)[0]
    assert back.predict_subnets(sp, [sn])[0] == pytest.approx(back.predict_subnet(sp, sn)["latency_ms"], rel=1e-9)


def test_the_target_statistic_is_chosen_or_named(source, candidates):
    configs, types, X = candidates
    log_src = source_log_predictions([source], types, X)[:, 0]
    measured, _ = _device(types, log_src)
    idx = select_units(types, X, log_src[:, None], 20, "random", seed=1)
    rows = _rows(configs, idx, measured).assign(min_ms=lambda d: 0.8 * d["median_ms"])
    auto = adapt_predictor([source], rows, device="sim", method="scale")
    fastest = adapt_predictor([source], rows, device="sim", method="scale", target="min_ms")
    assert auto.target == "min_ms" and fastest.manifest["target"] == "min_ms"  # no ratio: auto is min_ms too
    median = adapt_predictor([source], rows, device="sim", method="scale", target="median_ms")
    assert median.target == "median_ms"
    np.testing.assert_allclose(fastest.predict_blocks(configs[:50]), 0.8 * median.predict_blocks(configs[:50]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"target='p50' is not one of"):
        adapt_predictor([source], rows, device="sim", target="p50")


def test_bad_sources_and_budgets_are_named(source, candidates):
    configs, types, X = candidates
    with pytest.raises(ValueError, match=r"dtype='int8', the target dtype='fp32'.*--cross-dtype"):
        check_source(source, "fp32", ["MobileNetV2ResBlock"])
    check_source(source, "fp32", ["MobileNetV2ResBlock"], cross_dtype=True)
    with pytest.raises(ValueError, match=r"no model of the unit types \['NoSuchBlock'\]"):
        check_source(source, "int8", ["NoSuchBlock"])
    with pytest.raises(ValueError, match="budget=2000 must be between 1 and the 1065 candidate units"):
        select_units(types, X, np.zeros((len(types), 1)), 2000)
    with pytest.raises(ValueError, match=r"strategy='best' is not one of \['diverse', 'disagree', 'random'\]"):
        select_units(types, X, np.zeros((len(types), 1)), 5, strategy="best")


@pytest.mark.parametrize("args, message", [
    (["--budget", "5000"], "budget=5000 must be between 1 and the 1065 candidate units"),
    (["--backend", "nope"], "--backend 'nope' is not one of ['adb', 'ort', 'tflite']"),
    (["--dtype", "fp32"], "has dtype='int8', the target dtype='fp32'"),
    (["--from", "PARTIAL"], "no model of the unit types ['FirstConvBlock']"),
    (["--kind", "kernel"], "--kind kernel needs --models DIR"),
    (["--target", "p50"], "--target 'p50' is not one of ['auto', 'median_ms', 'min_ms', 'mean_ms', 'norm_ms']"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    """Each is refused before anything is built or timed."""
    from spaceevo.cli import main

    base = {"--backend": "ort", "--dtype": "int8", "--budget": "10", "--from": "vnni-ort-int8"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    if base["--from"] == "PARTIAL":  # a source without a FirstConvBlock model (no other type stands in for it)
        df = synthetic_measurements(SPACE, n_subnets=3, n_models=0, seed=0)
        part = LatencyPredictor(device="part", estimator_params={"n_estimators": 5})
        base["--from"] = str(part.fit(df[df["type"] != "FirstConvBlock"]).save(tmp_path / "part.json.gz"))
    argv = ["adapt", *[x for kv in base.items() for x in kv], "--space", SPACE, "--resolution", "160",
            "--db", str(tmp_path / "a.db"), "-o", str(tmp_path / "a.json.gz")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a.json.gz").exists() and not (tmp_path / "a.db").exists()


def test_cli_bad_input_message(tmp_path, capsys):
    from spaceevo.cli import main

    with pytest.raises(SystemExit):
        main(["adapt", "--backend", "ort", "--budget", "5000", "--from", "vnni-ort-int8", "--space", SPACE,
              "--resolution", "160", "-o", str(tmp_path / "a.json.gz"), "--db", str(tmp_path / "a.db")])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "budget=5000" in err and "1065 candidate units" in err


@pytest.fixture()
def fake_backend():
    register_backend("fake", "fake_backend:FakeBackend")
    yield "fake"
    _BACKENDS.unregister("fake")


def test_cli_adapt_resumes_from_the_store(tmp_path, source, fake_backend):
    src = source.predictor.save(tmp_path / "src.json.gz")
    argv = ["adapt", "--backend", "fake", "--from", str(src), "--budget", "12", "--subnets", "3", "--space", SPACE,
            "--resolution", "160", "--db", str(tmp_path / "a.db"), "-o", str(tmp_path / "new.json.gz"),
            "--rounds", "2", "--repeats", "3", "--json"]
    first = runner.invoke(app, argv)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["units"] == 12 and out["subnets"] == 3 and out["sources"][0]["name"] == str(src)
    again = runner.invoke(app, argv)
    assert again.exit_code == 0, again.output
    info = adaptation_info(load_predictor(tmp_path / "new.json.gz"))
    assert info["units_measured_now"] == 0 and info["units_reused"] == 15  # the rerun times nothing
    assert sorted(info["units"]) == sorted(out and info["units"])


@pytest.mark.slow
def test_tiny_real_adapt_int8_from_an_fp32_predictor(tmp_path):
    """Real onnxruntime: an FP32 predictor of one subnet's blocks, then INT8 adapted from it with 4 blocks."""
    from spaceevo.datasets import LatencyStore
    from spaceevo.latency import BlockUnit, create_backend, run_profile
    from spaceevo.predictors import run_adapt, train_predictor

    sp, sn = random_subnets(SPACE, 1, [160], seed=0)[0]
    units = list(dict.fromkeys(BlockUnit(b.config) for b in sp.blocks(sn)))
    fast = {"repeats": 3, "warmup": 1, "min_sample_ms": 0.0, "max_attempts": 1}
    with LatencyStore(tmp_path / "fp32.db") as st:
        run_profile(units, create_backend("ort", **fast), ["fp32"], db=st, progress=False)
        rows = st.read_measurements()
    fp32 = train_predictor(rows, device=rows["device"].iloc[0], dtype="fp32", cv_folds=0)
    src = fp32.save(tmp_path / "fp32.json.gz")
    with pytest.raises(ValueError, match="--cross-dtype"):
        run_adapt("ort", "int8", 4, SPACE, tmp_path / "int8.json.gz", tmp_path / "int8.db", sources=[str(src)],
                  resolutions=[160])
    out = run_adapt("ort", "int8", 4, SPACE, tmp_path / "int8.json.gz", tmp_path / "int8.db", sources=[str(src)],
                    subnets=1, resolutions=[160], cross_dtype=True, backend_opts=fast, rounds=1, progress=False)
    assert out["units"] == 4 and out["subnets"] == 1 and out["failed"] == 0
    pred = load_predictor(out["output"])
    info = adaptation_info(pred)
    assert info["sources"][0]["dtype"] == "fp32" and info["budget"] == 4 and info["adapt_seconds"] > 0
    assert pred.dtype == "int8" and pred.composition["n_models"] == 1
    assert 0 < pred.predict_subnet(sp, sn)["latency_ms"] < 1000


def test_a_source_lacking_a_type_lends_its_nearest(candidates):
    """pixel4-tflite-int8 has no FusedMBConvResBlock model: its FusedMBConvSEResBlock model stands in."""
    configs, types, X = candidates
    pixel4 = AdaptSource("pixel4-tflite-int8", load_predictor("pixel4-tflite-int8"))
    check_source(pixel4, "int8", sorted(set(types.tolist())))
    m = types == "FusedMBConvResBlock"
    z = source_log_predictions([pixel4], types[m], X[m])[:, 0]
    assert np.isfinite(z).all() and np.ptp(z) > 1.0  # it follows the block sizes
    ms = np.zeros(len(configs))
    ms[m] = np.exp(z) * 0.5  # a device twice as fast as the Pixel 4 on these blocks
    rows = _rows(configs, np.nonzero(m)[0][:6], ms)
    pred = adapt_predictor([pixel4], rows, device="sim", method="scale")
    assert pred.models["FusedMBConvResBlock"].sources[0]["proxy_type"] == "FusedMBConvSEResBlock"
    np.testing.assert_allclose(pred.predict_blocks([configs[i] for i in np.nonzero(m)[0][:6]]), np.exp(z[:6]) * 0.5,
                               rtol=1e-6)
