"""Farm throughput on this machine: units per minute with 1 and 2 devices (ort pinned to core 0, then cores 0 and
1) on one local Ray cluster, their ratio from the same run, and the scheduling overhead per unit.

Every configuration profiles the same units into a fresh store with the default protocol of ``spaceevo profile``
(10 rounds of 5 warm-up + 10 samples, the reference block beside every sample, conversion included);
``--single`` adds the single-process collector (``run_profile``) on the same units for comparison.

Scheduling overhead per unit = (a device's active time - its timing time - its wait for conversion results) /
its units, summed over the devices; its share is that over the mean timing time of a unit. The wait for
conversions is reported apart: on two cores with two devices, conversion competes with timing for the CPUs.

Run: ``python benchmarks/bench_farm.py [--units 30] [--space onnxw] [--resolution 160] [--single] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from spaceevo.datasets import LatencyStore
from spaceevo.latency import ROUND_REPEATS, ROUND_WARMUP, ROUNDS, create_backend, run_profile
from spaceevo.latency._farm import run_farm
from spaceevo.latency._farm_cluster import connect
from spaceevo.latency._pool import DeviceSpec
from spaceevo.latency._samplers import sample_space

OPTS = {"repeats": ROUND_REPEATS, "warmup": ROUND_WARMUP, "reference": True, "min_sample_ms": 2.0}


def farm_run(units: list, n_devices: int, path: Path) -> dict:
    """Profile ``units`` on ``n_devices`` ort devices (one core each) into a fresh store."""
    pool = [DeviceSpec(f"ort-core{c}", "ort", cores=(c,)) for c in range(n_devices)]
    with LatencyStore(path) as st:
        s = run_farm(units, pool, ["int8"], db=st, address="local", backend_opts={"ort": OPTS}, rounds=ROUNDS,
                     progress=False)
    devs = s["devices"]
    timed = sum(d["units"] for d in devs)
    timing = sum(d["timing_s"] for d in devs)
    wait = sum(d["conversion_wait_s"] for d in devs)
    overhead = sum(d["active_s"] - d["timing_s"] - d["conversion_wait_s"] for d in devs if d["active_s"])
    per_unit_timing = timing / timed
    return {"config": f"farm, {n_devices} device(s)", "units": len(units), "ok": s["ok"], "seconds": s["seconds"],
            "units_per_min": round(60 * s["ok"] / s["seconds"], 1),
            "timing_s_per_unit": round(per_unit_timing, 3),
            "conversion_wait_s_per_unit": round(wait / timed, 3),
            "overhead_s_per_unit": round(overhead / timed, 4),
            "overhead_share": round(overhead / timed / per_unit_timing, 4),
            "units_per_device": {d["name"]: d["units"] for d in devs}}


def single_run(units: list, path: Path) -> dict:
    """The single-process collector on core 0, for comparison."""
    be = create_backend("ort", cores=[0], **OPTS)
    t0 = time.perf_counter()
    with LatencyStore(path) as st:
        s = run_profile(units, be, ["int8"], db=st, device="bench", rounds=ROUNDS, progress=False)
    sec = time.perf_counter() - t0
    return {"config": "single process (run_profile)", "units": len(units), "ok": s["ok"], "seconds": round(sec, 2),
            "units_per_min": round(60 * s["ok"] / sec, 1)}


def main() -> None:
    """Run the benchmark and print a table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=30)
    ap.add_argument("--space", default="onnxw")
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--single", action="store_true", help="also time the single-process collector")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark needs 2 cores")
    units = sample_space(args.space, [args.resolution], limit=args.units, seed=args.seed)
    t0 = time.perf_counter()
    connect("local", [DeviceSpec(f"ort-core{c}", "ort") for c in (0, 1)], num_cpus=2)
    cluster_s = time.perf_counter() - t0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.single:
            results.append(single_run(units, Path(tmp) / "single.db"))
        for n in (1, 2):
            results.append(farm_run(units, n, Path(tmp) / f"farm{n}.db"))
            if not args.json:
                print(results[-1], flush=True)
    one, two = results[-2], results[-1]
    out = {"units": len(units), "cluster_start_s": round(cluster_s, 1), "results": results,
           "ratio_2_vs_1": round(two["units_per_min"] / one["units_per_min"], 2)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    cols = ["config", "units", "seconds", "units_per_min", "timing_s_per_unit", "conversion_wait_s_per_unit",
            "overhead_s_per_unit", "overhead_share"]
    print("\n" + " | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c, "-")) for c in cols))
    print(f"ratio 2 devices / 1 device: {out['ratio_2_vs_1']}x; Ray local cluster start {out['cluster_start_s']} s")


if __name__ == "__main__":
    main()
