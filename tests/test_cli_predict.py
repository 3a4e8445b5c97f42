"""``spaceevo train | predict | eval | predictors`` on a synthetic measurement table."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main
from spaceevo.space import SearchSpace
from spaceevo.predictors._synthetic import synthetic_measurements

SPACE = "onnxw-151122-023231"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    db = root / "m.csv"
    synthetic_measurements(SPACE, n_subnets=25, n_models=12, seed=1, device="cpu-x").to_csv(db, index=False)
    out = root / "p.json.gz"
    res = runner.invoke(app, ["train", "--db", str(db), "--device", "cpu-x", "-o", str(out), "--folds", "3",
                              "--estimator", "lut", "--json"])
    assert res.exit_code == 0, res.output
    return db, out, json.loads(res.output)


def test_train_json(trained):
    _db, out, data = trained
    assert out.is_file()
    assert data["device"] == "cpu-x" and data["estimator"] == "lut"
    assert {"unit_train", "unit_cv", "unit_holdout", "model_sum", "model_composed", "model_composed_loo"} <= \
        set(data["metrics"])
    assert data["composition"]["n_models"] == 12 and data["composition"]["terms"]


def test_train_models_db_and_target(trained, tmp_path):
    db, _out, _ = trained
    import pandas as pd

    df = pd.read_csv(db)
    blocks, models = tmp_path / "blocks.csv", tmp_path / "models.csv"
    df[df["kind"] == "block"].assign(min_ms=lambda d: d["median_ms"] * 0.9).to_csv(blocks, index=False)
    df[df["kind"] == "model"].assign(min_ms=lambda d: d["median_ms"] * 0.9).to_csv(models, index=False)
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["train", "--db", str(blocks), "--models-db", str(models), "--device", "cpu-x",
                              "-o", str(out), "--folds", "0", "--target", "min_ms"])
    assert res.exit_code == 0, res.output
    assert "composition: latency = " in res.output and "(12 whole subnets)" in res.output
    man = json.loads(out.read_text())["manifest"]
    assert man["target"] == "min_ms" and man["dataset"]["n_model_rows"] == 12


def test_predict_subnet_json(trained):
    _db, pred, _ = trained
    sn = str(SearchSpace.parse(SPACE).sample(1, seed=2)[0])
    res = runner.invoke(app, ["predict", sn, "--space", SPACE, "--predictor", str(pred), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["latency_ms"] > 0 and all(b["latency_ms"] > 0 for b in data["blocks"])
    assert {b["source"] for b in data["blocks"]} <= {"lookup", "model"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_predict_file(trained, tmp_path, fmt):
    _db, pred, _ = trained
    subs = [str(s) for s in SearchSpace.parse(SPACE).sample(4, seed=3)]
    f = tmp_path / "subs.txt"
    f.write_text("\n".join(subs) + "\n")
    res = runner.invoke(app, ["predict", "--file", str(f), "--space", SPACE, "-p", str(pred), "--format", fmt])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    if fmt == "csv":
        assert lines[0] == "subnet,latency_ms" and [ln.split(",")[0] for ln in lines[1:]] == subs
    else:
        rows = [json.loads(ln) for ln in lines]
        assert [r["subnet"] for r in rows] == subs and all(r["latency_ms"] > 0 for r in rows)


def test_predict_block(trained):
    _db, pred, _ = trained
    res = runner.invoke(app, ["predict", "--block", "MobileNetV2ResBlock hw=40 cin=48 cout=64 k=3 e=4 s=2 act=relu6",
                              "-p", str(pred), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["latency_ms"] > 0 and data["source"] in ("lookup", "model") and data["cin"] == 48


def test_eval_writes_plot(trained, tmp_path):
    db, pred, _ = trained
    png = tmp_path / "scatter.png"
    res = runner.invoke(app, ["eval", "-p", str(pred), "--db", str(db), "--folds", "3", "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert data["metrics"]["unit"]["acc_10pct"] == 100.0  # a look-up predictor on its own rows
    assert data["metrics"]["model_composed"]["mape"] < data["metrics"]["model_sum"]["mape"]


def test_predictors_list_and_show(trained, tmp_path, monkeypatch):
    _db, pred, _ = trained
    home = tmp_path / "home" / "predictors"
    home.mkdir(parents=True)
    (home / "mine.json.gz").write_bytes(pred.read_bytes())
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    res = runner.invoke(app, ["predictors", "list", "--json"])
    assert res.exit_code == 0, res.output
    mine = [r for r in json.loads(res.output) if r["origin"] == "user"]
    assert [(r["name"], r["device"]) for r in mine] == [("mine", "cpu-x")]
    res = runner.invoke(app, ["predictors", "show", "mine", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["device"] == "cpu-x"


@pytest.mark.parametrize("args, message", [
    (["predict", "--predictor", "PRED"], "give exactly one of SUBNET, --file or --block"),
    (["predict", "d1", "--predictor", "PRED"], "--space is required"),
    (["predict", "--block", "Foo hw=8 cin=8 cout=8 k=3 e=1 s=1 act=relu", "--predictor", "PRED"],
     "unknown block type 'Foo'"),
    (["predict", "--block", "ResNetBlock hw=8", "--predictor", "PRED"], "block 'ResNetBlock hw=8'"),
    (["predict", "--block", "ResNetBlock hw=8 cin=8 cout=8 k=3 e=1 s=1 act=relu", "--predictor", "nope"],
     "predictor 'nope' is neither a file nor a registered name"),
    (["train", "--db", "missing.db", "--device", "x", "-o", "o.json"], "--db 'missing.db' does not exist"),
    (["validate", "-p", "PRED", "--space", SPACE, "--samples", "1"], "samples=1 must be >= 2"),
    (["validate", "-p", "PRED", "--space", SPACE, "--samples", "3", "--recheck", "4"],
     "recheck=4 must be between 0 and samples=3"),
    (["train", "--db", "DB", "--device", "cpu-x", "-o", "o.json", "--target", "p50"],
     "target='p50' is not one of ['median_ms', 'min_ms', 'mean_ms', 'norm_ms']"),
])
def test_user_errors_exit_2(trained, capsys, args, message):
    _db, pred, _ = trained
    args = [str(pred) if a == "PRED" else str(_db) if a == "DB" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_corrupt_predictor_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--block", "ResNetBlock hw=8 cin=8 cout=8 k=3 e=1 s=1 act=relu", "-p", str(bad)])
    assert exc.value.code == 2
    assert "is corrupt or not a spaceevo predictor" in capsys.readouterr().err
