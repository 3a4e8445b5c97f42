"""``spaceevo qt-score | search-space | search-subnet`` end to end, JSON fields and error paths."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main
from spaceevo.search._synthetic import write_synthetic_luts

SPACE = "onnxw-151122-023231"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_luts(tmp_path_factory.mktemp("lut"), "onnxw", rows_per_resolution=6, seed=1)


def _run(args):
    res = runner.invoke(app, args)
    return res, (json.loads(res.stdout) if res.exit_code == 0 and "--json" in args else None)


def test_qt_score_json_fields(lut_dir):
    res, d = _run(["qt-score", SPACE, "--lut-dir", str(lut_dir), "--constraint", "10", "--constraint", "15",
                   "--samples", "20000", "--seed", "3", "--repeats", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert d["space"] == SPACE and d["score"] == pytest.approx(sum(c["score"] for c in d["constraints"]))
    assert set(d["fixed_latency_ms"]) == {"160", "192", "224"}
    assert [c["constraint_ms"] for c in d["constraints"]] == [10.0, 15.0]
    for c in d["constraints"]:
        assert {"score", "latency_penalty", "top_loss", "p_feasible"} <= set(c)
    assert d["constraints"][1]["p_feasible"] > d["constraints"][0]["p_feasible"]
    assert d["latency_source"] == "table" and d["fixed_source"] == "vnni-ort-int8"
    assert 0 < d["score_std"] < 0.05 * d["score"]


def test_qt_score_table_output(lut_dir):
    res, _ = _run(["qt-score", SPACE, "--lut-dir", str(lut_dir), "--constraint", "10", "--samples", "5000"])
    assert res.exit_code == 0, res.output
    assert "Q-T score of onnxw-151122-023231" in res.stdout and "latency penalty" in res.stdout


def test_qt_score_below_fastest_warns(lut_dir):
    res, d = _run(["qt-score", SPACE, "--lut-dir", str(lut_dir), "--constraint", "1", "--samples", "2000", "--json"])
    assert res.exit_code == 0, res.output
    assert f"below the fastest subnet of {SPACE} ({d['min_latency_ms']:.3f} ms)" in res.stderr
    assert d["constraints"][0]["top_loss"] == 1e5 and d["score"] > 0


def test_qt_score_with_predictor(synth):
    res, d = _run(["qt-score", SPACE, "--lut-dir", str(synth), "--constraint", "10", "--predictor", "vnni-ort-int8",
                   "--samples", "2000", "--json"])
    assert res.exit_code == 0, res.output
    assert d["latency_source"] == "predictor:vnni-ort-int8"
    res2, d2 = _run(["qt-score", SPACE, "--lut-dir", str(synth), "--constraint", "10", "--samples", "2000", "--json"])
    assert d2["latency_source"] == "table" and d2["min_latency_ms"] != d["min_latency_ms"]
    res3, d3 = _run(["qt-score", SPACE, "--lut-dir", str(synth), "--constraint", "10", "--predictor", "pixel4-tflite-int8",
                     "--latency", "table", "--samples", "2000", "--json"])
    assert res3.exit_code == 0, res3.output
    assert d3["latency_source"] == "table" and d3["fixed_source"] == "pixel4-tflite-int8"
    assert d3["fixed_latency_ms"] != d2["fixed_latency_ms"]


@pytest.mark.parametrize("args, match", [
    (["qt-score", "onnxq-151122-023231", "--constraint", "10"], "unknown hyperspace 'onnxq'"),
    (["qt-score", "onnxw-15112-023231", "--constraint", "10"], "block digits"),
    (["qt-score", SPACE], "--constraint is required"),
    (["qt-score", SPACE, "--constraint", "10", "--latency", "predictor"], "needs --predictor"),
    (["qt-score", SPACE, "--constraint", "10", "--predictor", "no-such-predictor"], "no-such-predictor"),
    (["search-space", "--hyperspace", "onnxq", "--constraint", "10"], "unknown hyperspace 'onnxq'"),
])
def test_errors_exit_2(synth, capsys, args, match):
    with pytest.raises(SystemExit) as exc:
        main([*args, "--lut-dir", str(synth)])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_missing_stage_file_exit_2(tmp_path, capsys):
    root = write_synthetic_luts(tmp_path / "lut", "onnxw", rows_per_resolution=2, skip=["stage5_2_3.csv"])
    with pytest.raises(SystemExit) as exc:
        main(["qt-score", "onnxw-151122-023231", "--lut-dir", str(root), "--constraint", "10"])
    assert exc.value.code == 2 and "stage5_2_3.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search-space", "--hyperspace", "onnxw", "--lut-dir", str(root), "--constraint", "10",
              "--evaluations", "5", "--no-progress"])
    assert "stage5_2_3.csv" in capsys.readouterr().err


def test_search_space_json_plot_and_resume(synth, tmp_path):
    base = ["search-space", "--hyperspace", "onnxw", "--lut-dir", str(synth), "--constraint", "8",
            "--population", "12", "--tournament", "4", "--samples", "1000", "--seed", "2", "--top", "5", "--json"]
    ck, png = tmp_path / "ck.json", tmp_path / "best.png"
    res, full = _run([*base, "--evaluations", "40", "--checkpoint", str(ck), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG" and ck.is_file()
    top = full["top"]
    assert len(top) == 5 and [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert {"space", "score", "latency_penalty", "top_loss", "min_latency_ms", "max_latency_ms"} <= set(top[0])
    res, short = _run([*base, "--evaluations", "25", "--checkpoint", str(tmp_path / "ck2.json")])
    res, resumed = _run([*base, "--evaluations", "40", "--resume", str(tmp_path / "ck2.json")])
    assert res.exit_code == 0, res.output
    assert short["evaluations"] == 25 and resumed["evaluations"] == 40
    assert resumed["top"] == full["top"] and resumed["best_curve"] == full["best_curve"]


def test_search_space_with_predictor_table_output(synth):
    res, _ = _run(["search-space", "--hyperspace", "onnxw", "--lut-dir", str(synth), "--constraint", "10",
                   "--predictor", "vnni-ort-int8", "--population", "8", "--tournament", "2", "--samples", "500",
                   "--evaluations", "12", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "top spaces of onnxw" in res.stdout and "predictor:vnni-ort-int8" in res.stdout


def test_search_subnet(lut_dir, tmp_path):
    png = tmp_path / "front.png"
    res, d = _run(["search-subnet", "--space", SPACE, "--lut-dir", str(lut_dir), "--predictor", "vnni-ort-int8",
                   "--constraint", "15", "--constraint", "2", "--population", "48", "--iterations", "5",
                   "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    ok, none = d["chosen"]
    assert ok["latency_ms"] <= 15 and ok["subnet"].endswith(f"_r{ok['resolution']}")
    assert none["subnet"] is None and "no subnet" in res.stderr
    lats = [c["latency_ms"] for c in d["pareto_front"]]
    losses = [c["loss"] for c in d["pareto_front"]]
    assert lats == sorted(lats) and losses == sorted(losses, reverse=True)
    assert png.read_bytes()[:4] == b"\x89PNG"
