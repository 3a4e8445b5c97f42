"""``spaceevo profile | devices | dataset info|export | report int8-speedup`` as a user runs them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main

runner = CliRunner()
QUICK = ["--repeats", "5", "--warmup", "2", "--min-sample-ms", "0", "--rounds", "2", "--no-progress",
         "--no-fixed-blocks"]
SPACE = "onnxw-151122-023231"


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "x.db"
    args = ["profile", "--backend", "ort", "--dtype", "int8", "--dtype", "fp32", "--space", SPACE, "--resolution",
            "160", "--limit", "6", "--db", str(db), "--json", *QUICK]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return db, args, json.loads(res.stdout)


def test_profile_summary(profiled):
    _db, _args, s = profiled
    assert (s["units"], s["total"], s["ok"], s["failed"], s["skipped"]) == (6, 12, 12, 0, 0)
    assert 0 <= s["median_cv"] < 1 and s["seconds"] > 0 and s["device"].startswith("ort-")


def test_profile_rerun_does_nothing(profiled):
    db, args, _ = profiled
    res = runner.invoke(app, args)
    s = json.loads(res.stdout)
    assert (s["measured"], s["skipped"]) == (0, 12)


def test_profile_prints_the_count_first_and_a_table(tmp_path):
    res = runner.invoke(app, ["profile", "--space", SPACE, "--resolution", "160", "--limit", "1", "--db",
                              str(tmp_path / "y.db"), *QUICK])
    assert res.exit_code == 0, res.output
    assert "distinct block configurations in onnxw-151122-023231 at [160]" in res.output
    assert "median CV" in res.output and "failed" in res.output


def test_profile_without_the_reference(tmp_path):
    db = tmp_path / "n.db"
    res = runner.invoke(app, ["profile", "--space", SPACE, "--resolution", "160", "--limit", "1", "--db", str(db),
                              "--no-reference", "--json", *QUICK])
    assert res.exit_code == 0, res.output
    from spaceevo.datasets.store import LatencyStore

    with LatencyStore(db) as st:
        df = st.read_measurements()
    assert len(df) == 1 and df["ratio"].isna().all() and (df["min_ms"] > 0).all()


def test_profile_dry_run(profiled):
    db, args, _ = profiled
    res = runner.invoke(app, [*args, "--dry-run"])
    assert json.loads(res.stdout)["to_measure"] == 0


def test_profile_kernels_with_the_prior_sampler(tmp_path):
    res = runner.invoke(app, ["profile", "--sampler", "prior", "--kind", "kernel", "--kernel", "dwconv-bn-act",
                              "--limit", "2", "--db", str(tmp_path / "k.db"), "--device", "my-box", "--json", *QUICK])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["device"] == "my-box" and s["ok"] == 2


def test_dataset_info_and_export(profiled, tmp_path):
    db, _, _ = profiled
    info = json.loads(runner.invoke(app, ["dataset", "info", str(db), "--json"]).stdout)
    assert (info["rows"], info["ok"], info["failed"]) == (12, 12, 0) and info["median_cv"] >= 0
    out = tmp_path / "x.parquet"
    res = runner.invoke(app, ["dataset", "export", str(db), "-o", str(out)])
    assert res.exit_code == 0 and "wrote 12 rows" in res.stdout
    df = pd.read_parquet(out)
    assert len(df) == 12 and {"median_ms", "cv", "fingerprint_id"} <= set(df.columns)
    # the reference block was timed beside every sample (on by default for ort)
    assert (df["ratio"] > 0).all() and (df["ref_min_ms"] > 0).all()
    csv = tmp_path / "x.csv"
    runner.invoke(app, ["dataset", "export", str(db), "-o", str(csv)])
    assert len(pd.read_csv(csv)) == 12


def test_report_int8_speedup_writes_a_png(profiled, tmp_path):
    db, _, _ = profiled
    png = tmp_path / "speedup.png"
    res = runner.invoke(app, ["report", "int8-speedup", "--db", str(db), "-o", str(png), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["units"] == 6 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(t["median_speedup"] > 0 for t in data["types"])


def test_devices_lists_backends_with_fingerprints():
    res = runner.invoke(app, ["devices", "--json"])
    assert res.exit_code == 0, res.output
    items = {d["backend"]: d for d in json.loads(res.stdout)}
    assert set(items) == {"adb", "ort", "tflite"}
    assert items["ort"]["available"] and items["ort"]["fingerprint"]["backend"] == "ort"
    assert "isa" in items["ort"]["fingerprint"]
    assert not items["adb"]["available"] and items["adb"]["reason"]


@pytest.mark.parametrize("args, message", [
    (["profile", "--backend", "trt", "--db", "DB"], "unknown backend 'trt'; valid backends: adb, ort, tflite"),
    (["profile", "--space", "nasw", "--db", "DB"], "unknown hyperspace 'nasw'; valid hyperspaces: mobilew, onnxw"),
    (["profile", "--sampler", "grid", "--db", "DB"], "unknown sampler 'grid'; valid samplers:"),
    (["profile", "--dtype", "int4", "--db", "DB"], "dtype='int4' is not in ['int8', 'fp32']"),
    (["profile", "--resolution", "170", "--db", "DB"], "resolution=170 is not in onnxw resolutions"),
    (["profile", "--sampler", "prior", "--kind", "kernel", "--kernel", "gelu", "--db", "DB"],
     "has no prior; kernels with a prior"),
    (["profile", "--sampler", "adaptive", "--db", "DB"], "--sampler adaptive needs --predictor"),
    (["profile", "--backend", "adb", "--db", "DB"], "Android"),
    (["profile", "--backend", "adb", "--dry-run", "--limit", "2", "--db", "DB"], "Android"),
    (["dataset", "info", "missing.db"], "does not exist"),
    (["report", "int8-speedup", "--db", "DB_INT8_ONLY"], "needs units measured in both int8 and fp32"),
])
def test_user_errors_exit_2(tmp_path, capsys, args, message):
    if "DB_INT8_ONLY" in args:
        db = tmp_path / "i.db"
        runner.invoke(app, ["profile", "--space", SPACE, "--resolution", "160", "--limit", "1", "--db", str(db),
                            *QUICK])
        args = [str(db) if a == "DB_INT8_ONLY" else a for a in args]
    args = [str(tmp_path / "e.db") if a == "DB" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e.db").exists()  # nothing built or written before the error
