"""Aging evolution over search spaces: beats random search, resumes exactly, checkpoints, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaceevo.search import (
    QTTables,
    SpaceEvolution,
    homogeneous_spaces,
    mutate_block,
    mutate_window,
    qt_score,
    random_search,
    space_seed,
)
from spaceevo.search._synthetic import write_synthetic_luts
from spaceevo.space import SearchSpace

GOOD = [3, 0, 5, 1, 4, 2]


class ConstPredictor:
    device = "const"

    def predict_blocks(self, configs):
        return np.full(len(configs), 0.05)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = write_synthetic_luts(tmp_path_factory.mktemp("lut"), "onnxw", rows_per_resolution=10, seed=5,
                                good_blocks=GOOD)
    return QTTables.load(root, "onnxw", fixed_predictor=ConstPredictor())


CONS = [8.0]
KW = dict(population_size=20, tournament_size=5, n_samples=2000, seed=1)


def test_initial_population_is_homogeneous_then_random(tables):
    homo = homogeneous_spaces(tables)
    assert len(homo) == 6 * 4
    assert all(len(set(s.block_types)) == 1 for s in homo)
    assert str(homo[1]) == "onnxw-000000-111111" and str(homo[3]) == "onnxw-000000-133333"
    res = SpaceEvolution(tables, CONS, evaluations=30, **{**KW, "population_size": 30}).run()
    assert [sp for sp, _ in res.history[:24]] == [str(s) for s in homo]


def test_mutations_change_one_stage():
    rng = np.random.default_rng(0)
    sp = SearchSpace.parse("onnxw-151122-023231")
    for _ in range(50):
        b, w = mutate_block(sp, rng), mutate_window(sp, rng)
        assert sum(x != y for x, y in zip(b.block_types, sp.block_types)) == 1 and b.windows == sp.windows
        assert sum(x != y for x, y in zip(w.windows, sp.windows)) == 1 and w.block_types == sp.block_types


def test_evolution_beats_random_search(tables):
    budget = 300
    evo_best, rnd_best = [], []
    for seed in (1, 2):
        res = SpaceEvolution(tables, CONS, evaluations=budget, **{**KW, "seed": seed}).run()
        evo_best.append(res.top(1)[0]["score"])
        rnd_best.append(max(s for _sp, s in random_search(tables, CONS, budget, KW["n_samples"], seed)))
        best = SearchSpace.parse(res.top(1)[0]["space"])
        assert best.block_types == tuple(GOOD)
    assert min(evo_best) > max(rnd_best)


def test_scores_cached_and_seeded_per_space(tables):
    res = SpaceEvolution(tables, CONS, evaluations=80, **KW).run()
    assert len(res.history) == 80 and res.finished
    assert len(res.cache) < 80  # repeats come from the cache
    sp, score = res.history[-1]
    assert score == qt_score(sp, tables, CONS, KW["n_samples"], space_seed(sp, KW["seed"]), warn=False).score
    top = res.top(5)
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert {"latency_penalty", "top_loss", "min_latency_ms", "max_latency_ms"} <= set(top[0])
    assert np.all(np.diff(res.best_curve()) >= 0)


def test_resume_equals_uninterrupted(tables, tmp_path):
    full = SpaceEvolution(tables, CONS, evaluations=120, **KW).run()
    ck = tmp_path / "ck.json"
    part = SpaceEvolution(tables, CONS, evaluations=120, checkpoint=ck, checkpoint_every=7, **KW).run(stop_after=53)
    assert not part.finished and len(part.history) == 53
    assert json.loads(ck.read_text())["format"] == "spaceevo-space-evolution"
    resumed = SpaceEvolution(tables, CONS, evaluations=120, checkpoint=ck, **KW).run(resume=ck)
    assert resumed.history == full.history
    assert resumed.top(10) == full.top(10)
    assert resumed.population == full.population


def test_resume_rejects_other_settings(tables, tmp_path):
    ck = tmp_path / "ck.json"
    SpaceEvolution(tables, CONS, evaluations=25, checkpoint=ck, **KW).run()
    with pytest.raises(ValueError, match=r"made with seed=1, this run has seed=2"):
        SpaceEvolution(tables, CONS, evaluations=25, **{**KW, "seed": 2}).run(resume=ck)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SpaceEvolution(tables, CONS, evaluations=25, **KW).run(resume=bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpaceEvolution(tables, CONS, evaluations=25, **KW).run(resume=tmp_path / "none.json")


def test_bad_parameters(tables, tmp_path):
    with pytest.raises(ValueError, match="tournament_size=30 must be <= population_size=20"):
        SpaceEvolution(tables, CONS, **{**KW, "tournament_size": 30})
    with pytest.raises(ValueError, match="evaluations=0"):
        SpaceEvolution(tables, CONS, evaluations=0, **KW)
    root = write_synthetic_luts(tmp_path, "onnxw", rows_per_resolution=1, skip=["stage2_3_1.csv"])
    partial = QTTables.load(root, "onnxw", fixed_predictor=ConstPredictor())
    with pytest.raises(FileNotFoundError, match=r"stage2_3_1\.csv"):
        SpaceEvolution(partial, CONS, evaluations=5, **KW).run()


def test_plot_png(tables, tmp_path):
    res = SpaceEvolution(tables, CONS, evaluations=30, **KW).run()
    out = res.plot(tmp_path / "best.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
