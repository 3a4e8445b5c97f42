"""Compiled query caches (issue 17): same answers as the uncached paths, keys, corruption, concurrency, imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main
from spaceevo.cli._fast import parse
from spaceevo.predictors import load_predictor, train_predictor
from spaceevo.predictors._cache import CacheWarning, cache_dir, load_arrays, save_arrays
from spaceevo.predictors._query import KIND, compiled_subnet_table
from spaceevo.predictors._synthetic import synthetic_measurements
from spaceevo.predictors.spaceevo_builtin import predict_subnet_blocks
from spaceevo.search import QTTables, cache_dir_default, qt_score
from spaceevo.search._synthetic import write_synthetic_luts
from spaceevo.space import SearchSpace

SPACE = "onnxw-151122-023231"
SEQNET = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_"
          "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160")
HEAVY = ("pandas", "sklearn", "lightgbm", "scipy", "matplotlib", "onnx", "onnxruntime")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPACEEVO_NO_CACHE", raising=False)


@pytest.fixture(scope="module")
def pred_file(tmp_path_factory) -> Path:
    df = synthetic_measurements(SPACE, n_subnets=12, n_models=6, seed=0, device="synthetic")
    path = tmp_path_factory.mktemp("pred") / "synthetic.json"
    train_predictor(df, device="synthetic", cv_folds=0).save(path)
    return path


@pytest.fixture(scope="module")
def synth_luts(tmp_path_factory) -> Path:
    return write_synthetic_luts(tmp_path_factory.mktemp("lut"), "onnxw", rows_per_resolution=6, seed=1)


def _subnets(n: int = 12) -> list[str]:
    return [SEQNET] + [str(s) for s in SearchSpace.parse(SPACE).sample(n - 1, seed=4)]


def _cache_files() -> list[Path]:
    return sorted(cache_dir(KIND).glob("*"))


def _cli_json(args: list[str], capsys) -> dict:
    main(args)
    return json.loads(capsys.readouterr().out)


# -- same answers, to the last digit -----------------------------------------------------------
def test_predict_subnet_cached_equals_uncached(pred_file, capsys):
    pred = load_predictor(pred_file)
    cold = compiled_subnet_table(pred_file, SPACE)  # builds and writes the cache
    assert len(_cache_files()) == 1
    warm = compiled_subnet_table(pred_file, SPACE)  # reads it
    for sn in _subnets():
        ref = json.dumps(predict_subnet_blocks(pred, SPACE, sn))
        assert json.dumps(cold.predict_subnet(sn)) == ref
        assert json.dumps(warm.predict_subnet(sn)) == ref
    # the command line, fast path and typer path, gives the same JSON as the uncached function
    fast = _cli_json(["predict", SEQNET, "--space", SPACE, "--predictor", str(pred_file), "--json"], capsys)
    res = runner.invoke(app, ["predict", SEQNET, "--space", SPACE, "-p", str(pred_file), "--json"])
    assert res.exit_code == 0, res.output
    ref = {**predict_subnet_blocks(pred, SPACE, SEQNET), "warnings": list(pred.manifest.get("warnings") or [])}
    assert fast == json.loads(res.stdout) == json.loads(json.dumps(ref))


def test_predict_file_cached_equals_uncached(pred_file, tmp_path):
    subs = _subnets(40)
    ref = load_predictor(pred_file).predict_subnets(SPACE, subs)
    compiled_subnet_table(pred_file, SPACE)
    assert np.array_equal(compiled_subnet_table(pred_file, SPACE).predict_subnets(subs), ref)
    f = tmp_path / "subs.txt"
    f.write_text("\n".join(subs) + "\n")
    res = runner.invoke(app, ["predict", "--file", str(f), "--space", SPACE, "-p", str(pred_file), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert [json.loads(ln)["latency_ms"] for ln in res.stdout.splitlines()] == ref.tolist()


def test_builtin_predictor_cached_equals_uncached(capsys):
    pred = load_predictor("vnni-ort-int8")
    subs = _subnets(6)
    first = compiled_subnet_table("vnni-ort-int8", SPACE)
    for sn in subs:
        assert json.dumps(first.predict_subnet(sn)) == json.dumps(predict_subnet_blocks(pred, SPACE, sn))
    assert _cli_json(["predict", SEQNET, "--space", SPACE, "--predictor", "vnni-ort-int8", "--json"], capsys) == \
        json.loads(json.dumps({**predict_subnet_blocks(pred, SPACE, SEQNET), "warnings": []}))
    assert np.array_equal(compiled_subnet_table("vnni-ort-int8", SPACE).predict_subnets(subs),
                          pred.predict_subnets(SPACE, subs))


BLOCK_HIT = "MobileNetV2ResBlock hw=40 cin=32 cout=48 k=3 e=4 s=2 act=relu6"  # a recovered table row
BLOCK_MISS = "MobileNetV2ResBlock hw=41 cin=33 cout=48 k=3 e=4 s=2 act=relu6"  # the model's


@pytest.mark.parametrize("predictor", ["vnni-ort-int8", "synthetic"])
def test_predict_block_cached_equals_uncached(predictor, pred_file, capsys):
    name = str(pred_file) if predictor == "synthetic" else predictor
    pred = load_predictor(name)
    from spaceevo.space import BlockConfig

    for block, source in ((BLOCK_HIT, "lookup"), (BLOCK_MISS, "model")):
        cfg = BlockConfig.parse(block)
        lat, src = pred.predict_blocks([cfg], return_source=True)
        ref = {**cfg.as_dict(), "block": cfg.to_string(), "latency_ms": float(lat[0]), "source": str(src[0])}
        for _ in range(2):  # cold, then warm
            assert _cli_json(["predict", "--block", block, "--predictor", name, "--json"], capsys) == ref
        res = runner.invoke(app, ["predict", "--block", block, "-p", name, "--json"])
        assert res.exit_code == 0 and json.loads(res.stdout) == ref
        assert ref["source"] == (source if predictor != "synthetic" else "model")


def test_no_cache_env_writes_nothing(pred_file, monkeypatch):
    monkeypatch.setenv("SPACEEVO_NO_CACHE", "1")
    pred = load_predictor(pred_file)
    assert json.dumps(compiled_subnet_table(pred_file, SPACE).predict_subnet(SEQNET)) == \
        json.dumps(predict_subnet_blocks(pred, SPACE, SEQNET))
    assert _cache_files() == []


def test_qt_tables_cached_equal_uncached(synth_luts):
    fresh = QTTables.load(synth_luts, "onnxw", latency="table")
    cold = QTTables.load(synth_luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    files = sorted(cache_dir_default().glob("tables-*.npz"))
    assert len(files) == 1
    warm = QTTables.load(synth_luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    for tabs in (cold, warm):
        for sp in (SPACE, "onnxw-000000-000000"):
            assert qt_score(sp, tabs, [8.0, 15.0], 5000, 2).to_dict() == qt_score(sp, fresh, [8.0, 15.0], 5000, 2).to_dict()
        assert tabs.final_expand_ms == fresh.final_expand_ms and np.array_equal(tabs.fixed_ms, fresh.fixed_ms)
        assert (tabs.latency_source, tabs.fixed_source) == (fresh.latency_source, fresh.fixed_source)
        for key, t in fresh.tables.items():
            c = tabs.tables[key]
            assert list(c.configs) == list(t.configs) and c.configs[0] == t.configs[0] and len(c.configs) == len(t.configs)
            for col in ("cin", "hw", "resolution", "last_width", "n_blocks", "loss", "latency_ms", "tail_ms", "starts",
                        "counts", "total_ms", "res_min", "res_max"):
                assert np.array_equal(getattr(c, col), getattr(t, col)), (key, col)


def test_qt_score_cli_cached_equals_uncached(synth_luts, capsys, monkeypatch):
    args = ["qt-score", SPACE, "--lut-dir", str(synth_luts), "--constraint", "8", "--constraint=15", "--samples", "5000",
            "--json"]
    monkeypatch.setenv("SPACEEVO_NO_CACHE", "1")
    uncached = _cli_json(args, capsys)
    assert not cache_dir_default().exists()
    monkeypatch.delenv("SPACEEVO_NO_CACHE")
    cold = _cli_json(args, capsys)
    warm = _cli_json(args, capsys)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert uncached == cold == warm == json.loads(res.stdout)


def test_qt_score_real_tables_cached_equal_uncached(lut_dir, capsys, monkeypatch):
    args = ["qt-score", SPACE, "--lut-dir", str(lut_dir), "--constraint", "15", "--samples", "20000", "--json"]
    monkeypatch.setenv("SPACEEVO_NO_CACHE", "1")
    uncached = _cli_json(args, capsys)
    monkeypatch.delenv("SPACEEVO_NO_CACHE")
    _cli_json(args, capsys)
    assert _cli_json(args, capsys) == uncached


# -- keys, corruption, concurrency -------------------------------------------------------------
def test_cache_key_changes_with_predictor(pred_file, tmp_path):
    path = tmp_path / "p.json"
    shutil.copy(pred_file, path)
    a = compiled_subnet_table(path, SPACE).predict_subnet(SEQNET)
    pred = load_predictor(path)
    pred.composition = {**pred.composition, "offset_ms": pred.composition.get("offset_ms", 0.0) + 1.0}
    pred._manifest["composition"] = pred.composition
    pred.save(path)
    b = compiled_subnet_table(path, SPACE).predict_subnet(SEQNET)
    assert len(_cache_files()) == 2  # one file per predictor digest
    assert b["latency_ms"] == pytest.approx(a["latency_ms"] + 1.0)
    assert json.dumps(b) == json.dumps(predict_subnet_blocks(load_predictor(path), SPACE, SEQNET))


def test_cache_key_changes_with_tables(tmp_path):
    luts = write_synthetic_luts(tmp_path / "lut", "onnxw", rows_per_resolution=4, seed=2)
    cold = QTTables.load(luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    csv = sorted((luts / "onnxw").glob("stage1_*.csv"))[0]
    lines = csv.read_text().splitlines()
    first = lines[0].split(",")
    first[-1] = str(float(first[-1]) + 100.0)  # the row's latency
    csv.write_text("\n".join([",".join(first)] + lines[1:]) + "\n")
    changed = QTTables.load(luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    assert len(list(cache_dir_default().glob("tables-*.npz"))) == 2
    key = next(k for k, t in cold.tables.items() if t.path.name == csv.name)
    assert changed.tables[key].latency_ms.max() == pytest.approx(cold.tables[key].latency_ms.max() + 100.0) or \
        changed.tables[key].latency_ms.sum() == pytest.approx(cold.tables[key].latency_ms.sum() + 100.0)
    fresh = QTTables.load(luts, "onnxw", latency="table")
    assert np.array_equal(changed.tables[key].latency_ms, fresh.tables[key].latency_ms)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong key", "wrong shape"])
def test_corrupt_subnet_cache_is_rebuilt_with_a_warning(pred_file, damage):
    ref = compiled_subnet_table(pred_file, SPACE).predict_subnet(SEQNET)
    (path,) = _cache_files()
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        data = dict(np.load(path, allow_pickle=False))
        key = str(data.pop("__cache_key__"))
        if damage == "wrong key":
            key = "0" * 64
        else:
            data["latency"] = data["latency"][:-1]
        save_arrays(path, key, data)
    with pytest.warns(CacheWarning, match="corrupt or stale"):
        again = compiled_subnet_table(pred_file, SPACE).predict_subnet(SEQNET)
    assert json.dumps(again) == json.dumps(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next read is clean
        assert json.dumps(compiled_subnet_table(pred_file, SPACE).predict_subnet(SEQNET)) == json.dumps(ref)


def test_corrupt_qt_cache_is_rebuilt_with_a_warning(synth_luts):
    ref = qt_score(SPACE, QTTables.load(synth_luts, "onnxw", latency="table"), [10.0], 3000, 0).to_dict()
    QTTables.load(synth_luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    (path,) = cache_dir_default().glob("tables-*.npz")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(CacheWarning):
        tabs = QTTables.load(synth_luts, "onnxw", latency="table", cache_dir=cache_dir_default())
    assert qt_score(SPACE, tabs, [10.0], 3000, 0).to_dict() == ref


def test_load_arrays_never_unpickles(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, __cache_key__=np.array("k"), a=np.array([{"x": 1}], dtype=object))
    with pytest.warns(CacheWarning):
        assert load_arrays(path, "k") is None
    save_arrays(path, "k", {"a": np.arange(3)})
    assert load_arrays(path, "k", required=["a"])["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary file left


def test_concurrent_builders_leave_one_valid_cache(pred_file, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "SPACEEVO_HOME": str(home)}
    code = ("import sys; from spaceevo.predictors._query import compiled_subnet_table; "
            f"print(compiled_subnet_table(sys.argv[1], {SPACE!r}).predict_subnet({SEQNET!r})['latency_ms'])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(pred_file)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    files = sorted(p.name for p in (home / "cache" / KIND).iterdir())
    assert len(files) == 1 and files[0].endswith(".npz"), files  # one file, no temporary left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compiled_subnet_table(pred_file, SPACE).predict_subnet(SEQNET)["latency_ms"]
    assert repr(got) == outs[0][0].strip()


# -- what a table-only query imports -----------------------------------------------------------
def _modules_after(args: list[str], env: dict) -> tuple[set[str], str]:
    code = ("import json, sys\nfrom spaceevo.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)
    mods = json.loads(res.stderr.rsplit("MODULES ", 1)[1])
    return set(mods), res.stdout


def test_table_only_prediction_imports_no_heavy_module(pred_file, synth_luts, tmp_path):
    env = {**os.environ, "SPACEEVO_HOME": str(tmp_path / "home")}
    predict = ["predict", SEQNET, "--space", SPACE, "--predictor", str(pred_file)]
    score = ["qt-score", SPACE, "--lut-dir", str(synth_luts), "--constraint", "10", "--samples", "2000"]
    for args in (predict, score):
        cold, _ = _modules_after(args, env)
        assert "pandas" in cold  # the first call compiles the cache with the model
        for extra in ([], ["--json"]):
            mods, out = _modules_after(args + extra, env)
            assert out
            assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
            assert "typer" not in mods and "pydantic" not in mods
    block = ["predict", "--block", BLOCK_HIT, "--predictor", "vnni-ort-int8", "--json"]
    _modules_after(block, env)
    mods, out = _modules_after(block, env)
    assert json.loads(out)["source"] == "lookup" and not mods & set(HEAVY), sorted(mods & set(HEAVY))
    mods, out = _modules_after(["--help"], env)
    assert "predict" in out and "qt-score" in out
    assert not mods & {"numpy", *HEAVY}, sorted(mods & {"numpy", *HEAVY})
    assert "typer.rich_utils" not in mods  # the command list in click's plain layout
    mods, out = _modules_after(["profile", "--help"], env)
    assert "--subnets" in out and "typer.rich_utils" in mods  # a command's options keep the rich tables
    mods, _ = _modules_after(["predict", SEQNET, "--space", SPACE, "--bogus"], env)  # an argument error
    assert not mods & {"numpy", *HEAVY}, sorted(mods & {"numpy", *HEAVY})


# -- the fast path's parser defers to typer on anything it does not fully understand -------------
@pytest.mark.parametrize("argv", [
    ["predict", "--help"], ["predict", SEQNET, "--space", SPACE], ["predict", "--space", SPACE, "-p", "x"],
    ["predict", SEQNET, "--space", SPACE, "-p", "x", "--file", "f"], ["predict", SEQNET, "--space", SPACE, "-p=x"],
    ["qt-score", SPACE, "--lut-dir", "d", "--constraint", "abc"], ["qt-score", SPACE], ["qt-score", SPACE,
    "--lut-dir", "d", "--samples"], ["qt-score", SPACE, "--lut-dir", "d", "--json=1"], ["space", "show", SPACE], []])
def test_fast_parser_defers(argv):
    assert parse(argv) is None


def test_fast_parser_reads_options():
    spec, v = parse(["qt-score", SPACE, "--lut-dir=d", "--constraint", "10", "--constraint", "15.5", "--seed", "-3",
                     "--json"])
    assert v == {"space": SPACE, "lut_dir": Path("d"), "constraint": [10.0, 15.5], "predictor": None, "latency": None,
                 "samples": 100_000, "seed": -3, "repeats": 1, "as_json": True}
    spec, v = parse(["predict", "--space", SPACE, SEQNET, "-p", "vnni-ort-int8"])
    assert v == {"subnet": SEQNET, "space": SPACE, "predictor": "vnni-ort-int8", "as_json": False}


def test_fast_path_errors_are_one_line(pred_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "d1_k3_w16_e0_r160", "--space", SPACE, "--predictor", str(pred_file)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["predict", SEQNET, "--space", SPACE, "--predictor", "no-such-predictor"])
    assert exc.value.code == 2 and "no-such-predictor" in capsys.readouterr().err


# -- the vectorised encoder --------------------------------------------------------------------
def test_vectorised_encode_matches_one_by_one(pred_file):
    table = load_predictor(pred_file).table(SPACE)
    sp = SearchSpace.parse(SPACE)
    subs = sp.sample(300, seed=9)
    sums = table.sum_encoded(*table.encode(subs))
    assert sums.tolist() == [table.sum_one(s) for s in subs]
    r_idx, depths, codes = table.encode(subs[:5])
    for i, s in enumerate(subs[:5]):
        one = table.encode([s])
        assert r_idx[i] == one[0][0] and np.array_equal(depths[i], one[1][0]) and np.array_equal(codes[i], one[2][0])
        assert [table.configs[j] for j in table.block_indices(s)] == [b.config for b in sp.blocks(s)]
    bad = sp.parse_subnet(SEQNET)
    from dataclasses import replace

    with pytest.raises(ValueError, match="k\\[0\\]=9"):
        table.encode([bad, replace(bad, kernel_sizes=(9,) + bad.kernel_sizes[1:])])
    with pytest.raises(ValueError, match="r=161"):
        table.encode([replace(bad, resolution=161)])
    assert [a.shape for a in table.encode([])] == [(0,), (0, table.n_stages), (0, table.n_stages, table.max_depth)]


def test_predictor_warnings_are_reported_from_the_cache(pred_file, tmp_path, capsys):
    path = tmp_path / "warned.json"
    pred = load_predictor(pred_file)
    pred._manifest["warnings"] = ["no FusedMBConvResBlock model: profile those blocks"]
    pred.save(path)
    args = ["predict", SEQNET, "--space", SPACE, "--predictor", str(path)]
    for _ in range(2):  # cold, then warm
        assert _cli_json(args + ["--json"], capsys)["warnings"] == pred._manifest["warnings"]
    main(args)
    assert "warning: no FusedMBConvResBlock model" in capsys.readouterr().err
