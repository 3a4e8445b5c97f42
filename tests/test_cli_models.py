"""Any ONNX model through the command line, in miniature: zoo -> profile --models -> train --kind kernel ->
predict MODEL.onnx -> validate --models, on a deterministic backend; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from spaceevo.cli import main
from spaceevo.latency import DEFAULT_RULES, default_rules, register_backend, register_fusion_rules
from spaceevo.latency._backend import _BACKENDS


@pytest.fixture()
def fakek(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    register_backend("fakek", "kernel_fake_backend:KernelFakeBackend")
    register_fusion_rules("fakek", "int8", default_rules("ort", "int8"))
    yield "fakek"
    _BACKENDS.unregister("fakek")
    DEFAULT_RULES.unregister("fakek-int8")


def _run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_zoo_profile_train_predict_validate(tmp_path, capsys, fakek):
    train, val, db, pred = tmp_path / "train", tmp_path / "val", tmp_path / "k.db", tmp_path / "k.pred"
    for folder, seed, fams in ((train, "0", ["mobilenetv2", "resnet", "shufflenetv2", "squeezenet"]),
                               (val, "1", ["mobilenetv2", "resnet"])):
        args = ["zoo", "-o", str(folder), "--per-family", "2", "--seed", seed, "--resolution", "32", "--tiny"]
        for f in fams:
            args += ["--families", f]
        assert _run(capsys, *args)[0] == 0
    code, out, err = _run(capsys, "profile", "--backend", "fakek", "--models", str(train), "--db", str(db),
                          "--rounds", "2", "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] == summary["units"] > 8 and "distinct kernels of 8 models, 8 models whole" in err
    code, out, err = _run(capsys, "train", "--db", str(db), "--kind", "kernel", "-o", str(pred), "--folds", "0",
                          "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["kind"] == "kernel" and trained["composition"]["n_models"] == 8
    model = str(next(val.glob("resnet*.onnx")))
    code, out, err = _run(capsys, "predict", model, "--predictor", str(pred), "--json")
    assert code == 0, err
    p = json.loads(out)
    assert p["latency_ms"] > 0 and p["unsupported"] == [] and len(p["kernels"]) > 5
    assert {"type", "config", "ops", "latency_ms", "source"} <= set(p["kernels"][0])
    code, out, err = _run(capsys, "validate", "--predictor", str(pred), "--models", str(val), "--backend", "fakek",
                          "--rounds", "1", "--json")
    assert code == 0, err
    v = json.loads(out)
    assert {"samples", "acc_10pct", "acc_5pct", "mape", "kendall_tau", "rows", "per_family"} <= set(v)
    assert v["samples"] == 4 and set(v["per_family"]) == {"mobilenetv2", "resnet"} and v["mape"] < 10
    code, out, err = _run(capsys, "validate", "--predictor", str(pred), "--models", str(val), "--backend", "fakek",
                          "--rounds", "1", "--no-progress")
    assert code == 0 and "mobilenetv2" in out, err
    code, _, err = _run(capsys, "validate", "--predictor", str(pred), "--models", str(train), "--backend", "fakek")
    assert code == 2 and "trained on 8" in err
    code, out, err = _run(capsys, "measure", model, "--backend", "fakek", "--rounds", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["median_ms"] > 0


def test_bad_models_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_text("hello")
    code, _, err = _run(capsys, "measure", str(bad))
    assert code == 2 and "bad.onnx is not an ONNX model" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "measure", str(tmp_path / "nope.onnx"))
    assert code == 2 and "does not exist" in err
    code, _, err = _run(capsys, "predict", str(bad), "--predictor", "vnni-ort-int8")
    assert code == 2 and "kernel predictor" in err
    code, _, err = _run(capsys, "validate", "--predictor", "vnni-ort-int8")
    assert code == 2 and "exactly one of --space" in err
    code, _, err = _run(capsys, "train", "--db", str(bad), "--kind", "layer", "-o", str(tmp_path / "x"))
    assert code == 2 and "--kind 'layer'" in err


def test_fusion_rules_from_times_applies_nnmeters_test():
    from spaceevo.latency import fusion_pair_units, fusion_rules_from_times

    pairs = (("conv_acts", "conv", "relu"), ("conv_acts", "conv", "hswish"))
    units = {u.key: u for u in fusion_pair_units(pairs, hw=8, channels=8)}
    conv = next(k for k, u in units.items() if u.type == "conv" and u.config["act"] == "none")
    times = {conv: 1.0}
    for k, u in units.items():
        if u.type == "act":
            times[k] = 0.4
        elif u.type == "conv" and u.config["act"] == "relu":
            times[k] = 1.05  # 1.0 + 0.4 - 1.05 = 0.35 > 0.5 x 0.4: fused
        elif u.type == "conv" and u.config["act"] == "hswish":
            times[k] = 1.3  # 0.1 < 0.2: not fused
    rules = fusion_rules_from_times(times, "ort", "fp32", pairs, hw=8, channels=8)
    assert "relu" in rules["conv_acts"] and "hswish" not in rules["conv_acts"]
    assert [m["fused"] for m in rules["measured"]] == [True, False]


def test_fusion_rules_command_stores_rules_that_profile_uses(tmp_path, capsys, fakek):
    db = tmp_path / "dev.db"
    code, out, err = _run(capsys, "fusion-rules", "--backend", "fakek", "--db", str(db), "--device", "fakedev",
                          "--rounds", "2", "--json")
    assert code == 0, err
    rules = json.loads(out)
    assert len(rules["measured"]) == 7 and rules["device"] == "fakedev"
    from spaceevo.datasets import LatencyStore, load_fusion_rules

    with LatencyStore(db) as st:
        assert load_fusion_rules(st, "fakedev", "fakek", "int8")["measured"] == rules["measured"]
        assert len(st.read_measurements(kind="kernel")) >= 14  # the pairs' units are the device's rows
    _run(capsys, "zoo", "-o", str(tmp_path / "z"), "--families", "mobilenetv3", "--per-family", "1", "--resolution",
         "32", "--tiny")
    code, _, err = _run(capsys, "profile", "--backend", "fakek", "--models", str(tmp_path / "z"), "--db", str(db),
                        "--device", "fakedev", "--rounds", "1", "--dry-run")
    assert code == 0 and "(measured fusion rules)" in err
