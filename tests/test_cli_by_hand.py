"""The README's by-hand path (profile --subnets -> train -> validate) in miniature, and what it reports.

The timings come from the shared fake backend (registered as the ``fake`` backend for these tests), so the
path runs in seconds; the real onnxruntime path is measured in the README and the closing notes.
"""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main
from spaceevo.datasets import LatencyStore
from spaceevo.latency import (fixed_block_configs, random_subnets, register_backend, subnet_profile_units,
                              subnet_units)
from spaceevo.latency._backend import _BACKENDS
from spaceevo.predictors import LatencyPredictor
from spaceevo.predictors._synthetic import synthetic_measurements
from spaceevo.space import SearchSpace, get_hyperspace

runner = CliRunner()
SPACE = "onnxw-151122-023231"
QUICK = ["--rounds", "2", "--repeats", "5", "--warmup", "2", "--min-sample-ms", "0", "--no-progress"]


@pytest.fixture()
def fake_backend():
    register_backend("fake", "fake_backend:FakeBackend")
    yield "fake"
    _BACKENDS.unregister("fake")


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_by_hand_path_in_miniature(tmp_path, fake_backend):
    db, pred = tmp_path / "local.db", tmp_path / "local.pred"
    prof = _json(runner.invoke(app, ["profile", "--backend", "fake", "--space", SPACE, "--resolution", "160",
                                     "--subnets", "4", "--db", str(db), "--seed", "1", "--json", *QUICK]))
    assert prof["failed"] == 0 and prof["ok"] == prof["units"]
    with LatencyStore(db) as st:
        rows = st.read_measurements()
    assert (rows["kind"] == "model").sum() == 4
    assert {"FirstConvBlock", "FinalExpandBlock", "FeatureMixBlock", "LogitsBlock"} <= set(rows["type"])

    res = runner.invoke(app, ["train", "--db", str(db), "--dtype", "int8", "-o", str(pred), "--folds", "0",
                              "--json"])
    trained = _json(res)
    assert trained["device"] == rows["device"].iloc[0] and f"training on device {trained['device']!r}" in res.stderr
    assert trained["composition"]["n_models"] == 4 and trained["warnings"] == []
    assert trained["bytes"] == pred.stat().st_size and pred.read_bytes()[:2] == b"\x1f\x8b"  # gzip by default

    val = _json(runner.invoke(app, ["validate", "--predictor", str(pred), "--space", SPACE, "--samples", "6",
                                    "--backend", "fake", "--dtype", "int8", "--resolution", "160", "--rounds", "2",
                                    "--json"]))
    assert val["samples"] == 6 and val["acc_10pct"] == 100.0 and val["predictor_warnings"] == []
    text = runner.invoke(app, ["validate", "--predictor", str(pred), "--space", SPACE, "--samples", "4",
                               "--backend", "fake", "--dtype", "int8", "--resolution", "160", "--rounds", "2",
                               "--recheck", "2", "--no-progress"])
    assert text.exit_code == 0 and "repeatability (2 subnets measured twice)" in text.stdout
    assert "the second timing as a prediction of the first: +-10% " in text.stdout


def test_train_without_whole_subnets_says_it_sums(tmp_path, capsys):
    csv = tmp_path / "blocks.csv"
    synthetic_measurements(SPACE, n_subnets=8, n_models=0, seed=0, device="box").to_csv(csv, index=False)
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["train", "--db", str(csv), "-o", str(out), "--folds", "0", "--estimator", "lut",
                              "--json"])
    data = _json(res)
    assert len(data["warnings"]) == 1 and "plain sum of isolated blocks" in data["warnings"][0]
    assert "warning: no whole-subnet rows" in res.stderr
    assert json.loads(out.read_text())["manifest"]["warnings"] == data["warnings"]  # .json: plain text
    sub = str(SearchSpace.parse(SPACE).sample(1, seed=2)[0])
    pred = _json(runner.invoke(app, ["predict", sub, "--space", SPACE, "-p", str(out), "--json"]))
    assert pred["warnings"] == data["warnings"]


def test_missing_block_types_are_named_at_training(tmp_path):
    df = synthetic_measurements(SPACE, n_subnets=8, n_models=0, seed=0, device="box")
    df = df[~df["type"].isin(["FinalExpandBlock", "LogitsBlock"])]
    pred = LatencyPredictor(device="box", estimator="lut").fit(df)
    lack = pred.manifest["block_types_missing"]["onnxw"]
    assert {"FinalExpandBlock", "LogitsBlock"} <= set(lack) and set(lack) <= set(get_hyperspace("onnxw").block_types)
    assert any("no model for FinalExpandBlock, LogitsBlock, which every onnxw subnet contains" in w
               for w in pred.warnings)
    sub = SearchSpace.parse(SPACE).sample(1, seed=0)[0]
    with pytest.raises(ValueError, match="block_types_missing"):
        pred.predict_subnets(SPACE, [sub])


def test_train_needs_device_only_when_the_store_has_several(tmp_path, capsys):
    csv = tmp_path / "two.csv"
    a = synthetic_measurements(SPACE, n_subnets=3, n_models=0, seed=0, device="box-a")
    b = synthetic_measurements(SPACE, n_subnets=3, n_models=0, seed=1, device="box-b")
    pd.concat([a, b]).to_csv(csv, index=False)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--db", str(csv), "-o", str(tmp_path / "p.pred")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device is needed: " in err and "holds devices ['box-a', 'box-b'] with int8 rows; pass --device ID" in err
    res = runner.invoke(app, ["train", "--db", str(csv), "--device", "box-b", "-o", str(tmp_path / "b.pred"),
                              "--folds", "0", "--estimator", "lut", "--json"])
    assert _json(res)["device"] == "box-b"
    assert json.loads(gzip.decompress((tmp_path / "b.pred").read_bytes()))["manifest"]["device"] == "box-b"


def test_a_limited_space_profile_keeps_the_fixed_blocks(tmp_path):
    fixed = {c.to_string() for c in fixed_block_configs(SPACE, [160])}
    assert {c.split()[0] for c in fixed} == {"FirstConvBlock", "ResNetBlock", "FinalExpandBlock", "FeatureMixBlock",
                                             "LogitsBlock"}
    db = tmp_path / "x.db"
    base = ["profile", "--space", SPACE, "--resolution", "160", "--limit", "3", "--db", str(db), "--dry-run",
            "--json"]
    assert _json(runner.invoke(app, base))["units"] == 3 + len(fixed)
    assert _json(runner.invoke(app, [*base, "--no-fixed-blocks"]))["units"] == 3


def test_subnet_plan_units(tmp_path):
    pairs = random_subnets(SPACE, 3, [160, 176], seed=0)
    assert [s.resolution for _sp, s in pairs] == [160, 176, 160]
    units = subnet_units(pairs, pairs[:1])
    blocks = [u for u in units if u.kind == "block"]
    models = [u for u in units if u.kind == "model"]
    assert len(models) == 3 and units[-3:] == models and len({u.key for u in blocks}) == len(blocks)
    need = {b.config for sp, s in pairs for b in sp.blocks(s)}
    assert {u.block for u in blocks} == need
    plan = subnet_profile_units(SPACE, 3, [160, 176], seed=0)
    assert [u for u in plan if u.kind == "model"] == models
    assert {u.block for u in plan if u.kind == "block"} == need | set(fixed_block_configs(SPACE, [160, 176]))
    spaces = {str(sp) for sp, _s in random_subnets("onnxw", 6, [160], seed=0)}
    assert len(spaces) > 1 and all(s.startswith("onnxw-") for s in spaces)
    with pytest.raises(ValueError, match=r"resolution=170 is not in onnxw resolutions"):
        random_subnets(SPACE, 2, [170])
    with pytest.raises(ValueError, match="subnets=-1 must be an integer >= 0"):
        random_subnets(SPACE, -1)


def test_subnets_need_the_space_sampler(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--sampler", "prior", "--kind", "kernel", "--subnets", "2", "--db", str(tmp_path / "k.db")])
    assert exc.value.code == 2
    assert "--subnets/--published time blocks and whole subnets of --space" in capsys.readouterr().err


def test_dry_run_counts_the_published_subnets(tmp_path):
    db = tmp_path / "x.db"
    data = _json(runner.invoke(app, ["profile", "--space", SPACE, "--resolution", "160", "--subnets", "2",
                                     "--published", "--db", str(db), "--dry-run", "--json"]))
    with_pub = data["units"]
    alone = _json(runner.invoke(app, ["profile", "--space", SPACE, "--resolution", "160", "--subnets", "2",
                                      "--db", str(db), "--dry-run", "--json"]))["units"]
    assert with_pub > alone > 2
