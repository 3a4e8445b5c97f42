"""Subnet search inside a space: valid chained subnets, latency <= T, better than random, Pareto front."""

from __future__ import annotations

import numpy as np
import pytest

from spaceevo.search import QTTables, SubnetSearch, pareto_front, plot_pareto
from spaceevo.search._subnet_search import Candidate
from spaceevo.search._synthetic import write_synthetic_luts
from spaceevo.space import SearchSpace

SPACE = "onnxw-151122-023231"


class MacsPredictor:
    """Stand-in with only ``predict_blocks``: 0.01 ms + 1 ms per 100M MACs per block."""

    device = "stand-in"

    def predict_blocks(self, configs):
        return np.array([0.01 + c.macs / 1e8 for c in configs])


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = write_synthetic_luts(tmp_path_factory.mktemp("lut"), "onnxw", rows_per_resolution=30, seed=2)
    return QTTables.load(root, "onnxw", fixed_predictor=MacsPredictor())


def _latency(space: SearchSpace, subnet: str) -> float:
    return float(MacsPredictor().predict_blocks([b.config for b in space.blocks(space.parse_subnet(subnet))]).sum())


def test_subnets_are_valid_chained_and_feasible(tables):
    sp = SearchSpace.parse(SPACE)
    s = SubnetSearch(sp, tables, MacsPredictor(), population_size=40, iterations=5, seed=0)
    rnd = SubnetSearch(sp, tables, MacsPredictor(), population_size=40, iterations=0, seed=0)
    rnd._fill([], np.random.default_rng(0), 40)
    lats = np.array([c.latency_ms for c in rnd.evaluated])
    T = float(np.quantile(lats, 0.3))
    best = s.search(T)
    assert best is not None and best.latency_ms <= T
    assert best.latency_ms == pytest.approx(_latency(sp, best.subnet), rel=1e-12)
    for c in s.evaluated[:50]:
        sn = sp.parse_subnet(c.subnet)  # valid in the space
        blocks = sp.blocks(sn, head=False)
        # every stage's first block takes the previous stage's output width (chained table rows)
        for prev, cur in zip(blocks, blocks[1:]):
            assert cur.config.cin == prev.config.cout
    # better than the best feasible random subnet of the initial population of the same size
    feasible_rnd = [c.loss for c in rnd.evaluated if c.latency_ms <= T]
    assert best.loss <= min(feasible_rnd)
    assert len(s.evaluated) > 40


def test_loss_is_sum_of_row_losses(tables):
    sp = SearchSpace.parse(SPACE)
    s = SubnetSearch(sp, tables, MacsPredictor(), population_size=8, iterations=0, seed=3)
    g = s._random(np.random.default_rng(1))
    c = s._evaluate([g])[0]
    tabs = tables.space_tables(sp)
    assert c.loss == pytest.approx(sum(t.loss[r] for t, r in zip(tabs, g[1])))
    assert c.resolution == tables.resolutions[g[0]]


def test_impossible_constraint_gives_none(tables):
    s = SubnetSearch(SPACE, tables, MacsPredictor(), population_size=8, iterations=1, seed=0)
    assert s.search(1e-3) is None
    with pytest.raises(ValueError, match="constraint=0"):
        s.search(0)


def test_deterministic(tables):
    a = SubnetSearch(SPACE, tables, MacsPredictor(), population_size=16, iterations=3, seed=4).search(5.0)
    b = SubnetSearch(SPACE, tables, MacsPredictor(), population_size=16, iterations=3, seed=4).search(5.0)
    assert a == b


def test_pareto_front_and_plot(tmp_path):
    cands = [Candidate("a", 160, 3.0, 1.0), Candidate("b", 160, 2.0, 2.0), Candidate("c", 160, 2.5, 3.0),
             Candidate("d", 160, 1.0, 4.0), Candidate("e", 160, 3.5, 0.5)]
    front = pareto_front(cands)
    assert [c.subnet for c in front] == ["e", "a", "b", "d"]
    out = plot_pareto(cands, front, {2.5: cands[1], 0.1: None}, tmp_path / "p.png", title="t")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_bad_parameters(tables):
    with pytest.raises(ValueError, match="population_size=2"):
        SubnetSearch(SPACE, tables, MacsPredictor(), population_size=2)
    with pytest.raises(ValueError, match="parent_ratio=0"):
        SubnetSearch(SPACE, tables, MacsPredictor(), parent_ratio=0)
