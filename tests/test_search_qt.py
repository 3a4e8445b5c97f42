"""Q-T score: formula edge cases, equality with a plain reference, determinism, latency sources, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spaceevo.datasets.block_lut import LutKey, lut_files, read_lut, row_blocks
from spaceevo.search import QTTables, draw_samples, qt_score, qt_score_error, score_samples
from spaceevo.search._synthetic import write_synthetic_luts
from spaceevo.space import SearchSpace, get_hyperspace

SPACE = "onnxw-151122-023231"


class MacsPredictor:
    """Stand-in predictor: 0.01 ms + 1 ms per 100M MACs per block; counts its calls."""

    device = "stand-in"

    def __init__(self) -> None:
        self.calls = 0
        self.manifest = {"device": "stand-in", "version": 1}

    def predict_blocks(self, configs):
        self.calls += 1
        return np.array([0.01 + c.macs / 1e8 for c in configs])


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_luts(tmp_path_factory.mktemp("lut"), "onnxw", rows_per_resolution=8, seed=3)


@pytest.fixture(scope="module")
def synth_tables(synth):
    return QTTables.load(synth, "onnxw", fixed_predictor=MacsPredictor())


@pytest.fixture(scope="module")
def real_tables(lut_dir):
    return QTTables.load(lut_dir, "onnxw", fixed_predictor=MacsPredictor())


def reference_score(tables: QTTables, space: str, res_idx, rows, constraints, top_k=50, t=0.1, a=0.01):
    """Deliberately plain: per-sample Python sums, sorted lists, the formula of SPACEEVO.md section 6."""
    tabs = tables.space_tables(SearchSpace.parse(space))
    losses, lats = [], []
    for i in range(len(res_idx)):
        loss = 0.0
        lat = float(tables.fixed_ms[int(res_idx[i])])
        for s, tab in enumerate(tabs):
            r = int(rows[s][i])
            loss += float(tab.loss[r])
            lat += float(tab.latency_ms[r])
            if s == 5:  # final_expand depends on stage6's last width
                res = tables.resolutions[int(res_idx[i])]
                lat += tables.final_expand_ms[res][int(tab.last_width[r])]
        losses.append(loss)
        lats.append(lat)
    total = 0.0
    for T in constraints:
        ok = sorted(l for l, m in zip(losses, lats) if m <= T)
        p = len(ok) / len(losses) + 1e-5
        top = sum(ok[:top_k]) / len(ok[:top_k]) if ok else 1e5
        total += 1.0 / (max(1.0, (t / p) ** a) * top)
    return total


@pytest.mark.parametrize("which", ["synthetic", "real"])
def test_equals_plain_reference(which, request):
    tables = request.getfixturevalue("synth_tables" if which == "synthetic" else "real_tables")
    space = SPACE
    tabs = tables.space_tables(SearchSpace.parse(space))
    lo, hi = tables.latency_range(SearchSpace.parse(space))
    cons = [lo + 0.1 * (hi - lo), lo + 0.3 * (hi - lo)]
    n = 5000
    smp = draw_samples(tabs, tables.fixed_ms, n, seed=11)
    ref = reference_score(tables, space, smp.res_idx, smp.rows, cons)
    got = qt_score(space, tables, cons, n_samples=n, seed=11)
    assert got.score == pytest.approx(ref, rel=1e-12)
    assert all(0 < c.n_feasible < n for c in got.constraints)


def test_samples_respect_resolution_and_batches(synth_tables):
    tabs = synth_tables.space_tables(SearchSpace.parse(SPACE))
    smp = draw_samples(tabs, synth_tables.fixed_ms, 1050, seed=2, batch_size=100)
    for s, tab in enumerate(tabs):
        assert np.array_equal(tab.resolution[smp.rows[s]], np.asarray(synth_tables.resolutions)[smp.res_idx])
    # 11 batches of one resolution each: the counts per resolution are sums of batch sizes
    counts = np.bincount(smp.res_idx, minlength=3)
    assert counts.sum() == 1050 and all(c % 100 in (0, 50) for c in counts)


def test_no_sample_meets_constraint(synth_tables, caplog):
    sp = SearchSpace.parse(SPACE)
    lo, _hi = synth_tables.latency_range(sp)
    with caplog.at_level(logging.WARNING, logger="spaceevo.search._qt"):
        r = qt_score(sp, synth_tables, [lo * 0.5], n_samples=2000, seed=0)
    c = r.constraints[0]
    assert c.n_feasible == 0 and c.top_loss == 1e5 and c.p_feasible == pytest.approx(1e-5)
    assert c.latency_penalty == pytest.approx((0.1 / 1e-5) ** 0.01)
    assert r.score == pytest.approx(1 / ((0.1 / 1e-5) ** 0.01 * 1e5))
    assert c.below_min_latency
    assert f"{lo:.3f} ms" in caplog.text


def test_all_samples_meet_constraint(synth_tables):
    sp = SearchSpace.parse(SPACE)
    _lo, hi = synth_tables.latency_range(sp)
    r = qt_score(sp, synth_tables, [hi + 1], n_samples=3000, seed=4)
    c = r.constraints[0]
    smp = draw_samples(synth_tables.space_tables(sp), synth_tables.fixed_ms, 3000, seed=4)
    assert c.n_feasible == 3000 and c.latency_penalty == 1.0
    assert c.p_feasible == pytest.approx(1 + 1e-5)
    assert c.top_loss == pytest.approx(np.sort(smp.loss)[:50].mean(), rel=1e-12)
    assert not c.below_min_latency


def test_score_samples_by_hand():
    loss = np.array([3.0, 1.0, 2.0, 5.0])
    lat = np.array([1.0, 9.0, 2.0, 3.0])
    few, none = score_samples(loss, lat, [2.5, 0.5], top_k=50)
    assert few.n_feasible == 2 and few.top_loss == pytest.approx(2.5)  # fewer than top_k: mean of all feasible
    assert few.latency_penalty == 1.0 and few.score == pytest.approx(1 / 2.5)
    assert none.top_loss == 1e5
    two = score_samples(loss, lat, [3.0], top_k=2)[0]
    assert two.top_loss == pytest.approx(2.5)  # the 2 lowest of {3, 2, 5}
    sparse = score_samples(np.ones(1000), np.r_[np.zeros(10), np.ones(990) * 9], [1.0], a=0.08)[0]
    assert sparse.latency_penalty == pytest.approx((0.1 / (0.01 + 1e-5)) ** 0.08)


def test_deterministic_for_a_seed(synth_tables):
    lo, hi = synth_tables.latency_range(SearchSpace.parse(SPACE))
    cons = [lo + 0.2 * (hi - lo), lo + 0.4 * (hi - lo)]
    a = qt_score(SPACE, synth_tables, cons, n_samples=4000, seed=7)
    b = qt_score(SPACE, synth_tables, cons, n_samples=4000, seed=7)
    c = qt_score(SPACE, synth_tables, cons, n_samples=4000, seed=8)
    assert a.to_dict() == b.to_dict()
    assert a.score != c.score


def test_sampling_error_small_at_default(real_tables):
    err = qt_score_error(SPACE, real_tables, [10.0], n_samples=100_000, seeds=range(3))
    assert 0 < err["rel_std"] < 0.02


def test_table_latency_matches_columns(lut_dir, real_tables):
    key = LutKey("onnxw", 3, 2, 1)
    df = read_lut(lut_files(lut_dir, "onnxw")[key])
    tab = real_tables.tables[(3, 2, 1)]
    assert sorted(tab.latency_ms.tolist()) == sorted(df["latency_ms"].tolist())
    assert set(tab.resolution.tolist()) == {160, 192, 224}


def test_predictor_recomputes_rows_and_caches(synth, tmp_path):
    pred = MacsPredictor()
    tabs = QTTables.load(synth, "onnxw", predictor=pred, cache_dir=tmp_path / "cache")
    assert pred.calls == 2  # one batched call for all rows, one for the fixed stages
    assert tabs.latency_source == "predictor:stand-in" and tabs.fixed_source == "stand-in"
    h = get_hyperspace("onnxw")
    tab = tabs.tables[(2, 5, 3)]
    key = LutKey("onnxw", 2, 5, 3)
    for i in (0, 7, len(tab.loss) - 1):
        blocks = row_blocks(h, key, tab.configs[i], int(tab.cin[i]), int(tab.hw[i]))
        assert tab.latency_ms[i] == pytest.approx(sum(0.01 + b.macs / 1e8 for b in blocks), rel=1e-12)
    again = MacsPredictor()
    tabs2 = QTTables.load(synth, "onnxw", predictor=again, cache_dir=tmp_path / "cache")
    assert again.calls == 1  # rows from the cache, fixed stages recomputed
    assert np.array_equal(tabs2.tables[(2, 5, 3)].latency_ms, tab.latency_ms)
    # predictor latencies change the score (the point: a device of one's own)
    table_tabs = QTTables.load(synth, "onnxw", fixed_predictor=MacsPredictor())
    T = sum(table_tabs.latency_range(SearchSpace.parse(SPACE))) / 4
    assert qt_score(SPACE, tabs, [T], 2000).score != qt_score(SPACE, table_tabs, [T], 2000).score


def test_fixed_stages_and_final_expand(synth_tables):
    h = get_hyperspace("onnxw")
    tab6 = synth_tables.tables[(6, 1, 3)]
    for i in range(3):
        res = int(tab6.resolution[i])
        assert tab6.tail_ms[i] == synth_tables.final_expand_ms[res][int(tab6.last_width[i])]
    fe = synth_tables.final_expand_ms[224]
    assert fe[448] > fe[304] > 0  # wider stage6 output, slower final_expand
    assert np.all(np.diff(synth_tables.fixed_ms) > 0)  # higher resolution, slower fixed stages
    assert list(synth_tables.resolutions) == list(h.lut_resolutions)


def test_latency_range_bounds_samples(synth_tables):
    sp = SearchSpace.parse(SPACE)
    lo, hi = synth_tables.latency_range(sp)
    smp = draw_samples(synth_tables.space_tables(sp), synth_tables.fixed_ms, 20000, seed=0)
    assert lo <= smp.latency_ms.min() and smp.latency_ms.max() <= hi


def test_missing_stage_file_is_named(tmp_path):
    root = write_synthetic_luts(tmp_path, "onnxw", rows_per_resolution=2, seed=0, skip=["stage4_2_2.csv"])
    tabs = QTTables.load(root, "onnxw", fixed_predictor=MacsPredictor())
    with pytest.raises(FileNotFoundError, match=r"stage4_2_2\.csv"):
        qt_score("onnxw-111211-000200", tabs, [5.0], 100)
    with pytest.raises(FileNotFoundError, match=r"lacks 1 stage file.*stage4_2_2\.csv"):
        tabs.require_complete()
    qt_score("onnxw-111111-000000", tabs, [5.0], 100)  # spaces that do not need it still score


@pytest.mark.parametrize("bad, match", [
    ("onnxq-111111-000000", "unknown hyperspace 'onnxq'"),
    ("onnxw-11111-000000", "block digits"),
    ("onnxw-111111-000009", r"window digit 5 \(stage6\)=9"),
])
def test_malformed_space(synth_tables, bad, match):
    with pytest.raises(ValueError, match=match):
        qt_score(bad, synth_tables, [5.0], 100)


def test_bad_arguments(synth, synth_tables):
    with pytest.raises(ValueError, match="at least one latency constraint"):
        qt_score(SPACE, synth_tables, [], 100)
    with pytest.raises(ValueError, match="constraint=-1"):
        qt_score(SPACE, synth_tables, [-1], 100)
    with pytest.raises(ValueError, match="samples=0"):
        qt_score(SPACE, synth_tables, [5], 0)
    with pytest.raises(ValueError, match="needs a predictor"):
        QTTables.load(synth, "onnxw", latency="predictor", fixed_predictor=MacsPredictor())
    with pytest.raises(ValueError, match="unknown hyperspace"):
        QTTables.load(synth, "nope")
    with pytest.raises(ValueError, match="belongs to hyperspace 'mobilew'"):
        synth_tables.space_tables(SearchSpace.parse("mobilew-111111-000000"))
