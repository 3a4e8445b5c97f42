"""Collector throughput and stability: units per minute, median CV over 50 units, and the median relative
difference when the same 30 units are timed twice in one run, for ``ort`` and ``tflite``; the protocol
variants (wall clock vs. the timing thread's CPU time; one inference per sample vs. samples of at least
``min_sample_ms``) side by side.

Run: ``python benchmarks/bench_collector.py [--backends ort tflite] [--units 50] [--pairs 30]
[--space onnxw] [--resolution 160] [--min-sample-ms 0 2] [--clocks wall cpu] [--json]``. Units are INT8 blocks drawn with
the ``space`` sampler (seeded). Units per minute include conversion (quantisation) and all re-measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from spaceevo.latency import get_backend
from spaceevo.latency._samplers import sample_space


def bench(backend: str, units: list, pairs: int, min_sample_ms: float, clock: str, dtype: str = "int8") -> dict:
    """Prepare and measure every unit once, then time the first ``pairs`` again in fresh sessions."""
    be = get_backend(backend, min_sample_ms=min_sample_ms, clock=clock)
    be.require()
    artifacts, first, cvs = [], [], []
    t0 = time.perf_counter()
    for u in units:
        art = be.prepare(u, dtype)
        s = be.measure_artifact(art)
        artifacts.append(art)
        first.append(s.median_ms)
        cvs.append(s.cv)
    elapsed = time.perf_counter() - t0
    again = [be.measure_artifact(a).median_ms for a in artifacts[:pairs]]
    rel = [abs(a - b) / ((a + b) / 2) for a, b in zip(first[:pairs], again)]
    return {"backend": backend, "clock": clock, "min_sample_ms": min_sample_ms, "units": len(units),
            "units_per_min": round(60 * len(units) / elapsed, 1), "median_cv": round(statistics.median(cvs), 4),
            "cv_p90": round(float(np.percentile(cvs, 90)), 4), "cv_over_5pct": int(sum(c > 0.05 for c in cvs)),
            "pairs": len(rel), "median_rel_diff": round(statistics.median(rel), 4),
            "p90_rel_diff": round(float(np.percentile(rel, 90)), 4),
            "median_latency_ms": round(statistics.median(first), 4)}


def main() -> None:
    """Run the benchmark and print a table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["ort", "tflite"])
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--space", default="onnxw")
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--min-sample-ms", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--clocks", nargs="+", default=["wall", "cpu"], help="wall and/or cpu (thread CPU time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    units = sample_space(args.space, [args.resolution], limit=args.units, seed=args.seed)
    results = []
    for backend in args.backends:
        if not get_backend(backend).available():
            print(f"skipping {backend}: not available here")
            continue
        for clock in args.clocks:
            for msm in args.min_sample_ms:
                results.append(bench(backend, units, min(args.pairs, len(units)), msm, clock))
                if not args.json:
                    print(results[-1], flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    cols = ["backend", "clock", "min_sample_ms", "units", "units_per_min", "median_cv", "cv_p90", "cv_over_5pct", "pairs",
            "median_rel_diff", "p90_rel_diff", "median_latency_ms"]
    print("\n" + " | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
