"""``spaceevo quickstart``: the README's main job, end to end on this CPU at a tiny size."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from typer.testing import CliRunner

from spaceevo.cli import app, main
from spaceevo.predictors import load_predictor
from spaceevo.quickstart import EXAMPLE_SPACE, EXAMPLE_SUBNET, published_subnets
from spaceevo.space import SearchSpace

runner = CliRunner()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _published_yaml(tmp_path):
    """A search_result.yaml in the authors' layout holding one mobilew subnet (no onnxw blocks to add)."""
    path = tmp_path / "search_result.yaml"
    sub = SearchSpace.parse("mobilew-122222-155400").sample(1, seed=0)[0]
    path.write_text("specific_supernet_encoding_dict:\n    spaceevo@pixel4: 'mobilew-122222-155400'\n"
                    "specific_subnet_encoding_dict:\n"
                    f"    SEQnet@pixel4-A0: ['spaceevo@pixel4', '{sub}']\n")
    return path


@pytest.mark.slow
def test_quickstart_profiles_trains_and_predicts(tmp_path, home):
    pub = _published_yaml(tmp_path)
    args = ["quickstart", "--train-subnets", "2", "--test-subnets", "2", "--repeats", "5", "--rounds", "2",
            "--model-rounds", "3", "--published", str(pub), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {h["hyperspace"] for h in data["hyperspaces"]} == {"onnxw", "mobilew"}
    prof = data["profile"]
    assert prof["failed"] == 0 and prof["ok"] == prof["units"] > 2
    pred_path = home / "predictors" / f"{data['predictor']['name']}.json.gz"
    assert pred_path.is_file()
    assert data["target"] == "min_ms"  # the fastest sample of the spread sessions, for blocks and whole subnets
    assert load_predictor(pred_path).target == "min_ms"
    held = data["heldout"]["subnets"]
    assert len(held) == 2 and all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in held)
    # within a factor of two on unseen whole models, even from two training subnets
    assert all(abs(r["rel_error"]) < 1.0 for r in held)
    with sqlite3.connect(data["workdir"] + "/latency.db") as conn:  # blocks in 2 sessions, whole subnets in 3
        assert dict(conn.execute("SELECT kind, MAX(rounds) FROM measurements GROUP BY kind").fetchall()) == {
            "block": 2, "model": 3}
    assert data["published"] == []  # the only published subnet is a Pixel 4 (mobilew) one
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["profile"]["measured"] == 0 and again["profile"]["skipped"] == prof["units"]
    res = runner.invoke(app, ["predict", held[0]["subnet"], "--space", EXAMPLE_SPACE, "--predictor",
                              data["predictor"]["name"], "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["latency_ms"] > 0


def test_published_subnets_fallback_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SPACEEVO_SHARED_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert published_subnets() == [{"name": "SEQnet@vnni-A0", "space": EXAMPLE_SPACE, "subnet": EXAMPLE_SUBNET,
                                     "source": "SPACEEVO.md"}]
    SearchSpace.parse(EXAMPLE_SPACE).parse_subnet(EXAMPLE_SUBNET)
    rows = published_subnets(_published_yaml(tmp_path))
    assert [r["name"] for r in rows] == ["SEQnet@pixel4-A0"] and rows[0]["space"] == "mobilew-122222-155400"
    with pytest.raises(FileNotFoundError, match="--published 'nope.yaml' does not exist"):
        published_subnets("nope.yaml")


@pytest.mark.parametrize("args, message", [
    (["--space", "mobilew-122222-155400"], "takes an onnxw space"),
    (["--resolution", "150"], r"resolution=150 is not in onnxw resolutions \[160, 176, 192, 208, 224\]"),
    (["--train-subnets", "1"], "train_subnets=1, test_subnets=5: each must be >= 2"),
    (["--space", "onnxw-9"], "space"),
    (["--target", "median_ms"], r"target='median_ms' is not one of \['min_ms', 'norm_ms'\]"),
])
def test_quickstart_bad_input_exits_2(args, message, home, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", *args])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)
