"""Q-T score speed against a plain per-sample reference, sampling error, ranking stability, evolution time.

Run from the repository root::

    python benchmarks/bench_qt.py --lut-dir ../shared/data/spaceevo/block_lut [--evolution]

Prints: one space, 100,000 samples, 2 constraints: the vectorised time (median of repeats and of one
run), the plain reference's time on the same samples, and their ratio; the score's relative standard
deviation over seeds at several sample counts; how often two spaces whose mean scores differ by more
than 2 sigma swap rank across seeds; with ``--evolution``, the wall time of a full search-space run.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

from spaceevo.search import QTTables, SpaceEvolution, draw_samples, qt_score, random_space
from spaceevo.space import SearchSpace

SPACE = "onnxw-151122-023231"


def plain_reference(tables: QTTables, space: SearchSpace, res_idx, rows, constraints) -> float:
    """Per-sample Python loops and sorted lists (the formula of SPACEEVO.md section 6)."""
    tabs = tables.space_tables(space)
    loss_cols = [t.loss.tolist() for t in tabs]
    lat_cols = [t.total_ms.tolist() for t in tabs]
    fixed = tables.fixed_ms.tolist()
    rows = rows.tolist()
    losses, lats = [], []
    for i, r in enumerate(res_idx.tolist()):
        loss, lat = 0.0, fixed[r]
        for s in range(len(tabs)):
            loss += loss_cols[s][rows[s][i]]
            lat += lat_cols[s][rows[s][i]]
        losses.append(loss)
        lats.append(lat)
    total = 0.0
    for T in constraints:
        ok = sorted(lo for lo, m in zip(losses, lats) if m <= T)
        p = len(ok) / len(losses) + 1e-5
        top = sum(ok[:50]) / len(ok[:50]) if ok else 1e5
        total += 1.0 / (max(1.0, (0.1 / p) ** 0.01) * top)
    return total


def _test_reference():
    """``reference_score`` of ``tests/test_search_qt.py`` (the plain reference the tests compare with)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tests" / "test_search_qt.py"
    spec = importlib.util.spec_from_file_location("_qt_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reference_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut-dir", default="../shared/data/spaceevo/block_lut")
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--evolution", action="store_true", help="also time a full 5,000-evaluation search-space run")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tables = QTTables.load(args.lut_dir, "onnxw")
    print(f"tables loaded in {time.perf_counter() - t0:.2f} s (latency {tables.latency_source}, "
          f"fixed stages {tables.fixed_source})")
    sp = SearchSpace.parse(SPACE)
    cons = [10.0, 15.0]
    n = args.samples

    qt_score(sp, tables, cons, n, seed=0, warn=False)  # warm-up
    times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        res = qt_score(sp, tables, cons, n, seed=r, warn=False)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    fast = qt_score(sp, tables, cons, n, seed=123, warn=False)
    one_fast = time.perf_counter() - t
    smp = draw_samples(tables.space_tables(sp), tables.fixed_ms, n, seed=123)
    t = time.perf_counter()
    ref = plain_reference(tables, sp, smp.res_idx, smp.rows, cons)
    one_ref = time.perf_counter() - t
    test_ref = _test_reference()
    t = time.perf_counter()
    ref2 = test_ref(tables, SPACE, smp.res_idx, smp.rows, cons)
    one_ref2 = time.perf_counter() - t
    print(f"\n[speed] {SPACE}, {n} samples, constraints {cons} ms")
    print(f"  vectorised: median {1e3 * statistics.median(times):.2f} ms, min {1e3 * min(times):.2f} ms "
          f"over {args.repeats} seeds; this run {1e3 * one_fast:.2f} ms")
    print(f"  reference of tests/test_search_qt.py on the same samples: {1e3 * one_ref2:.1f} ms -> ratio "
          f"{one_ref2 / one_fast:.0f}x; same score: {np.isclose(ref2, fast.score, rtol=1e-12)}")
    print(f"  tuned pure-Python reference (lists, no numpy scalars): {1e3 * one_ref:.1f} ms -> ratio "
          f"{one_ref / one_fast:.0f}x; same score: {np.isclose(ref, fast.score, rtol=1e-12)} "
          f"({fast.score:.8f} vs {ref:.8f})")

    print("\n[sampling error] relative std of the score over 10 seeds (T = 10 ms)")
    for m in (10_000, 30_000, 100_000):
        sc = np.array([qt_score(sp, tables, [10.0], m, seed=s, warn=False).score for s in range(10)])
        print(f"  {m:>7} samples: mean {sc.mean():.5f}, std {sc.std(ddof=1):.5f} "
              f"({100 * sc.std(ddof=1) / sc.mean():.2f}%)")

    print("\n[ranking stability] 24 spaces (random + published), 5 seeds each, T = 10 ms")
    rng = np.random.default_rng(0)
    spaces = [SPACE, "onnxw-121122-133333"] + [str(random_space(tables, rng)) for _ in range(22)]
    scores = {s: np.array([qt_score(s, tables, [10.0], n, seed=k, warn=False).score for k in range(5)])
              for s in spaces}
    pairs = flips = close = 0
    for a, b in itertools.combinations(spaces, 2):
        sa, sb = scores[a], scores[b]
        gap = abs(sa.mean() - sb.mean())
        sigma = max(sa.std(ddof=1), sb.std(ddof=1))
        if gap <= 2 * sigma:
            close += 1
            continue
        pairs += 1
        flips += int(len(set(np.sign(sa - sb))) > 1)
    rel = np.median([scores[s].std(ddof=1) / scores[s].mean() for s in spaces])
    print(f"  median relative std {100 * rel:.2f}%; pairs differing by > 2 sigma: {pairs}, rank swaps across "
          f"seeds among them: {flips}; pairs within 2 sigma (undecided): {close}")

    if args.evolution:
        t = time.perf_counter()
        res = SpaceEvolution(tables, [10.0], 500, 125, 5000, n, seed=0, progress=True).run()
        wall = time.perf_counter() - t
        best = res.top(1)[0]
        print(f"\n[evolution] 5000 evaluations x {n} samples: {wall:.1f} s ({len(res.cache)} distinct spaces "
              f"scored); best {best['space']} score {best['score']:.5f}")


if __name__ == "__main__":
    main()
