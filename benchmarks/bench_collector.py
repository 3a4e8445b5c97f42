"""Collector throughput and stability, protocols side by side: units per minute, the median CV over 50 units,
and the median relative difference when the same 30 units are measured twice in one run (of ``median_ms``,
of ``min_ms`` and, with the reference, of ``ratio``), for ``ort`` and ``tflite``.

Protocols: ``single`` is one fresh session per unit (10 warm-up + 50 timed samples, nn-Meter's counts;
re-measured up to 3 times while the CV exceeds 5%); ``rounds`` is 10 short sessions per unit (5 warm-up + 10 samples, same re-measure rule) spread over the run in a
shuffled order; ``reference`` is ``rounds`` with the fixed reference block timed beside every sample (the
default of ``spaceevo profile`` for ort and tflite), whose ``ratio`` (sample over neighbouring reference
times) is what ``norm_ms`` is made of. All go through the collector's ``run_profile`` into throw-away
stores, conversion included.

Run: ``python benchmarks/bench_collector.py [--backends ort tflite] [--protocols single rounds reference]
[--units 50] [--pairs 30] [--space onnxw] [--resolution 160] [--clock auto] [--min-sample-ms 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from spaceevo.datasets import LatencyStore
from spaceevo.latency import ROUND_REPEATS, ROUND_WARMUP, ROUNDS, create_backend, run_profile
from spaceevo.latency._samplers import sample_space

PROTOCOLS = {  # name -> (rounds, backend options)
    "single": (1, {"repeats": 50, "warmup": 10}),
    "rounds": (ROUNDS, {"repeats": ROUND_REPEATS, "warmup": ROUND_WARMUP}),
    "reference": (ROUNDS, {"repeats": ROUND_REPEATS, "warmup": ROUND_WARMUP, "reference": True}),
}


def _profile(units: list, be, rounds: int, path: Path, dtype: str) -> tuple[dict, dict]:
    with LatencyStore(path) as st:
        summary = run_profile(units, be, [dtype], db=st, device="bench", rounds=rounds, progress=False)
        df = st.read_measurements(status="ok")
    return summary, {k: (m, mn, r) for k, m, mn, r in zip(df["key"], df["median_ms"], df["min_ms"], df["ratio"])}


def _rel(a: dict, b: dict, i: int) -> list[float]:
    return [abs(a[k][i] - b[k][i]) / ((a[k][i] + b[k][i]) / 2) for k in b
            if k in a and a[k][i] is not None and np.isfinite(float(a[k][i]))]


def bench(backend: str, units: list, pairs: int, protocol: str, clock: str, min_sample_ms: float,
          dtype: str = "int8") -> dict:
    """Profile every unit with ``protocol``, then the first ``pairs`` units again in a second store."""
    rounds, opts = PROTOCOLS[protocol]
    be = create_backend(backend, min_sample_ms=min_sample_ms, clock=clock, **opts)
    be.require()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        first, m1 = _profile(units, be, rounds, Path(tmp) / "first.db", dtype)
        elapsed = time.perf_counter() - t0
        _, m2 = _profile(units[:pairs], be, rounds, Path(tmp) / "again.db", dtype)
    med, mn, ratio = _rel(m1, m2, 0), _rel(m1, m2, 1), _rel(m1, m2, 2)
    return {"backend": backend, "protocol": protocol, "clock": be.resolved_clock(), "units": len(units),
            "units_per_min": round(60 * len(units) / elapsed, 1), "median_cv": round(first["median_cv"], 4),
            "median_round_cv": first["median_round_cv"] and round(first["median_round_cv"], 4),
            "pairs": len(med), "median_rel_diff": round(statistics.median(med), 4),
            "p90_rel_diff": round(float(np.percentile(med, 90)), 4), "min_rel_diff": round(statistics.median(mn), 4),
            "min_p90_rel_diff": round(float(np.percentile(mn, 90)), 4),
            "ratio_rel_diff": round(statistics.median(ratio), 4) if ratio else None,
            "ratio_p90_rel_diff": round(float(np.percentile(ratio, 90)), 4) if ratio else None,
            "median_latency_ms": round(statistics.median(v[0] for v in m1.values()), 4)}


def main() -> None:
    """Run the benchmark and print a table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["ort", "tflite"])
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--space", default="onnxw")
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--clock", default="auto", help="auto (thread CPU time at 1 thread) | wall | cpu")
    ap.add_argument("--min-sample-ms", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    units = sample_space(args.space, [args.resolution], limit=args.units, seed=args.seed)
    results = []
    for backend in args.backends:
        if not create_backend(backend).available():
            print(f"skipping {backend}: not available here")
            continue
        for protocol in args.protocols:
            results.append(bench(backend, units, min(args.pairs, len(units)), protocol, args.clock,
                                 args.min_sample_ms))
            if not args.json:
                print(results[-1], flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    cols = ["backend", "protocol", "clock", "units", "units_per_min", "median_cv", "median_round_cv", "pairs",
            "median_rel_diff", "p90_rel_diff", "min_rel_diff", "min_p90_rel_diff", "ratio_rel_diff",
            "ratio_p90_rel_diff", "median_latency_ms"]
    print("\n" + " | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
