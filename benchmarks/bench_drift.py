"""What moves the collector's ratio (issue 18): which units drift against which reference over a run.

Whole subnets, blocks and two references are timed in turn for a while, then analysed.

Units (INT8, ort, one thread, pinned to one core, prepared once): four whole subnets of
``onnxw-151122-023231`` at r160 (min, max and two random; 7-50 MiB of INT8 weights, 0.16-3 GMAC; the head alone holds ~4.6 MiB), four blocks of
different working sets (a small in-cache block, an activation-heavy one, the FeatureMix head block with
2.4 MB of weights, a wide ResNet block of stage 6 with ~10 MB), the collector's reference block
(``ref_cache``, in cache), a 4 MiB fully-connected layer (``fc_4mib``: 8x this VM's L2, well inside its
L3) and a candidate **memory-streaming reference** (``ref_stream``: an FC layer of 64 MiB of INT8 weights,
twice the L3 the VM reports, so every run streams its weights from memory).

A pass times every unit once, in a shuffled order, in two modes each (also in a shuffled order):

* ``fresh``: the collector's round, as ``Backend.time_loop`` runs it: a fresh session, 5 warm-up runs,
  5 samples of >= 2 ms, each bracketed by the in-cache reference (kept open), giving the collector's ratio;
* ``open``: the same in a session kept open for the whole run (2 warm-up runs): no session creation.

Between two unit bursts the streaming reference is probed (1 untimed + 3 timed runs in its own kept-open
session), so every burst lies between two probes a few hundred ms apart: ``ratio_rs`` = the burst's median
sample / mean of the two probes (the burst-level analogue of the collector's ratio, for the reference that
streams). The probe evicts the unit's weights from the caches before the burst; the burst's warm-up brings
them back, as it does after the previous unit in the collector.

Each burst is appended at once to ``<out>/records.jsonl`` (a kill loses nothing), with the thread CPU time
of its samples (the collector's clock), the wall time since the start, ``/proc/loadavg`` and the busy and
steal fractions of every core since the previous record (``/proc/stat``). ``<out>/units.json`` holds each
unit's INT8 weight bytes and MACs. The analysis (``--analyse OUT``, also run at the end) bins the series by
time and reports, per unit: the drift of its raw time, of its ratio to ``ref_cache`` (the collector's) and
of its ratio to ``ref_stream``, as the spread of 5-minute medians and the first-half/second-half change;
the elasticity of its time to each reference's (1-minute medians, log-log slope); the dependence of its
ratio on the machine's state (bursts grouped by the quartile of the in-cache reference's time beside
them: slowest over fastest, and the burst-level log-log slope); a two-reference correction fitted on the
first half and tested on the second; ``table.md`` (the README's table) and a PNG of the series.

Run: ``python benchmarks/bench_drift.py --minutes 30 --out drift-run`` (the machine to itself), then
``python benchmarks/bench_drift.py --analyse drift-run`` to analyse again. ``--smoke`` times small stand-ins
for a few seconds (checks the script, not the machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path

SPACE = "onnxw-151122-023231"
RESOLUTION = 160
BLOCKS = {  # name -> block (the reference block is added from latency._backend)
    "blk_small": "MobileNetV2ResBlock hw=20 cin=32 cout=32 k=3 e=4 s=1 act=relu6",
    "blk_act": "MobileNetV2ResBlock hw=80 cin=32 cout=32 k=3 e=4 s=1 act=relu6",
    "blk_featmix": "FeatureMixBlock hw=5 cin=1280 cout=1920 k=1 e=0 s=1 act=hswish",
    "blk_wide": "ResNetBlock hw=5 cin=416 cout=416 k=5 e=1.5 s=1 act=relu",
}
FC = {"fc_4mib": (2048, 2048), "ref_stream": (8192, 8192)}  # name -> (cin, cout): 4 MiB and 64 MiB of INT8
SMOKE_BLOCKS = {"blk_small": BLOCKS["blk_small"]}
SMOKE_FC = {"ref_stream": (512, 512)}


# -- machine facts ------------------------------------------------------------------------------
def cache_sizes() -> list[dict]:
    """The caches of cpu0 as sysfs lists them (level, type, size, shared with)."""
    out = []
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            out.append({k: (d / k).read_text().strip() for k in ("level", "type", "size", "shared_cpu_list")})
        except OSError:
            pass
    return out


def _proc_stat() -> dict[str, list[int]]:
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    return {p[0]: [int(x) for x in p[1:]] for p in (ln.split() for ln in lines) if p and p[0].startswith("cpu")}


class CpuMeter:
    """Busy and steal fraction of every core since the previous call (``/proc/stat``)."""

    def __init__(self) -> None:
        self.prev = _proc_stat()

    def delta(self) -> dict:
        now = _proc_stat()
        out = {}
        for cpu, vals in now.items():
            before = self.prev.get(cpu)
            if cpu == "cpu" or before is None:
                continue
            d = [a - b for a, b in zip(vals, before)]
            total = sum(d[:8]) or 1  # user nice system idle iowait irq softirq steal
            idle = d[3] + d[4]
            out[f"{cpu}_busy"] = round((total - idle) / total, 4)
            out[f"{cpu}_steal"] = round(d[7] / total, 4) if len(d) > 7 else None
        self.prev = now
        return out


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- units ----------------------------------------------------------------------------------------
def make_units(smoke: bool = False) -> dict:
    """name -> (kind, unit) for the run."""
    from spaceevo.latency import BlockUnit, SubnetUnit, make_kernel
    from spaceevo.latency._backend import REFERENCE_BLOCK
    from spaceevo.space import BlockConfig, SearchSpace

    sp = SearchSpace.parse(SPACE)
    at = lambda sn: dataclasses.replace(sn, resolution=RESOLUTION)  # noqa: E731
    subnets = {"net_min": at(sp.min_subnet())}
    if not smoke:
        rand = sorted((at(s) for s in sp.sample(2, seed=18)), key=lambda s: sum(b.config.params for b in sp.blocks(s)))
        subnets.update(net_rand_a=rand[0], net_rand_b=rand[1], net_max=at(sp.max_subnet()))
    units = {name: ("subnet", SubnetUnit(SPACE, str(sn))) for name, sn in subnets.items()}
    units["ref_cache"] = ("block", BlockUnit(BlockConfig.parse(REFERENCE_BLOCK)))
    for name, text in (SMOKE_BLOCKS if smoke else BLOCKS).items():
        units[name] = ("block", BlockUnit(BlockConfig.parse(text)))
    for name, (cin, cout) in (SMOKE_FC if smoke else FC).items():
        units[name] = ("fc", make_kernel("fc", cin=cin, cout=cout))
    return units


def weight_bytes(model) -> int:
    """Bytes of the model's initializers (INT8 weights, scales, zero points, biases)."""
    from onnx import helper

    total = 0
    for init in model.graph.initializer:
        n = math.prod(init.dims) if init.dims else 1
        total += n * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return int(total)


def prepare_all(be, units: dict, cache: Path) -> tuple[dict, dict]:
    """INT8 artifacts (cached as ``cache/<name>.onnx``) and per-unit facts."""
    import onnx

    cache.mkdir(parents=True, exist_ok=True)
    arts, facts = {}, {}
    for name, (kind, unit) in units.items():
        path = cache / f"{name}.onnx"
        t0 = time.perf_counter()
        if path.is_file():
            model = onnx.load(str(path))
        else:
            model = be.prepare(unit, "int8")
            onnx.save(model, str(path))
        arts[name] = model
        facts[name] = {"kind": kind, "key": unit.key, "weight_bytes": weight_bytes(model),
                       "macs": int(unit.macs)}
        print(f"  prepared {name:12s} {facts[name]['weight_bytes'] / 2**20:7.2f} MiB  "
              f"{facts[name]['macs'] / 1e6:8.1f} MMAC  ({time.perf_counter() - t0:.1f} s)", flush=True)
    return arts, facts


# -- the timing loop ------------------------------------------------------------------------------
def run(out: Path, minutes: float, seed: int = 0, smoke: bool = False, repeats: int = 5,
        until: float | None = None) -> None:
    """Prepare the units, then pass over them until ``minutes`` have gone by (or the epoch time ``until``)."""
    import numpy as np

    from spaceevo.latency import create_backend
    from spaceevo.latency._pinning import pinned
    from spaceevo.latency._stats import TimingStats

    out.mkdir(parents=True, exist_ok=True)
    be = create_backend("ort", threads=1, repeats=repeats, warmup=5, reference=True, seed=0, min_sample_ms=2.0)
    be.require()
    units = make_units(smoke)
    print(f"preparing {len(units)} units (INT8, cached under {out / 'models'})", flush=True)
    arts, facts = prepare_all(be, units, out / "models")
    cores = be.pin_cores()
    meta = {"units": facts, "caches": cache_sizes(), "pinned_cores": cores, "repeats": repeats,
            "min_sample_ms": be.min_sample_ms, "ref_sample_ms": be.ref_sample_ms, "clock": be.resolved_clock(),
            "minutes": minutes, "seed": seed, "smoke": smoke, "cpu": os.uname().machine,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "units.json").write_text(json.dumps(meta, indent=1))
    names = list(units)  # ref_cache too: as a unit of its own it is bracketed by its kept-open twin (ratio ~1)
    rng = random.Random(seed)
    clock = be.clock_fn()
    meter = CpuMeter()
    records = (out / "records.jsonl").open("a")
    with pinned(cores):
        ref = be.reference_runner()  # ref_cache, kept open, calibrated (as the collector does)
        stream_run = be.open_runner(arts["ref_stream"])
        kept = {n: be.open_runner(arts[n]) for n in names}
        for r in (stream_run, *kept.values()):
            r()

        def probe() -> float:
            stream_run()
            ts = []
            for _ in range(3):
                t0 = clock()
                stream_run()
                ts.append((clock() - t0) * 1e3)
            return float(np.median(ts))

        start = time.perf_counter()
        deadline = start + minutes * 60
        if until is not None:
            deadline = min(deadline, start + until - time.time())
        n_pass = 0
        last_probe = probe()
        while time.perf_counter() < deadline:
            order = names[:]
            rng.shuffle(order)
            pass_t0 = time.perf_counter()
            for name in order:
                modes = ["fresh", "open"]
                rng.shuffle(modes)
                for mode in modes:
                    t_burst = time.perf_counter()
                    create_ms = None
                    if mode == "fresh":
                        t0 = time.perf_counter()
                        runner = be.open_runner(arts[name])
                        create_ms = (time.perf_counter() - t0) * 1e3
                        be.warmup = 5
                    else:
                        runner = kept[name]
                        be.warmup = 2
                    stats: TimingStats = be.time_loop(runner)
                    del runner
                    burst_s = time.perf_counter() - t_burst
                    next_probe = probe()
                    rec = {"pass": n_pass, "t": round(t_burst - start, 4), "unit": name, "mode": mode,
                           "median_ms": stats.median_ms, "min_ms": stats.min_ms, "cv": round(stats.cv, 5),
                           "loops": stats.loops, "ratio_rc": stats.ratio, "ref_ms": stats.ref_ms,
                           "rs_before": last_probe, "rs_after": next_probe,
                           "ratio_rs": stats.median_ms / ((last_probe + next_probe) / 2),
                           "create_ms": create_ms, "burst_s": round(burst_s, 4), "loadavg": loadavg(),
                           "samples": [round(x, 5) for x in stats.samples],
                           "ref_samples": [round(x, 5) for x in stats.ref_samples], **meter.delta()}
                    records.write(json.dumps(rec) + "\n")
                    records.flush()
                    last_probe = next_probe
            n_pass += 1
            left = (deadline - time.perf_counter()) / 60
            print(f"pass {n_pass}: {time.perf_counter() - pass_t0:.1f} s, {left:.1f} min left", flush=True)
    records.close()


# -- analysis -------------------------------------------------------------------------------------
def _spread(x) -> float:
    """(max - min) / median of a series of bin medians."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float((x.max() - x.min()) / np.median(x)) if x.size > 1 else float("nan")


def analyse(out: Path, bin_min: float = 5.0, fine_min: float = 1.0, plot: bool = True) -> dict:
    """Drift table per unit and mode; writes ``summary.json`` (and ``drift.png``) under ``out``."""
    import numpy as np
    import pandas as pd

    meta = json.loads((out / "units.json").read_text())
    src = out / "records.jsonl"
    df = pd.read_json(src if src.is_file() else out / "records.jsonl.gz", lines=True)
    if df.empty:
        raise SystemExit(f"{out}/records.jsonl holds no records")
    df["rs_ms"] = (df["rs_before"] + df["rs_after"]) / 2
    span_min = df["t"].max() / 60
    bin_min = min(bin_min, max(span_min / 4, 1e-3))  # short (smoke) runs: 4 bins
    fine_min = min(fine_min, max(span_min / 12, 1e-3))
    df["bin"] = (df["t"] / 60 // bin_min).astype(int)
    df["fine"] = (df["t"] / 60 // fine_min).astype(int)
    df["half"] = (df["t"] > df["t"].max() / 2).astype(int)
    # the machine's state at a burst: the quartile of the in-cache reference's time (0 fastest, 3 slowest)
    df["state"] = pd.qcut(df["ref_ms"], 4, labels=False, duplicates="drop")
    # the in-cache reference's own per-burst time (median of its bracketing samples) is ref_ms
    rows = []
    for (unit, mode), g in df.groupby(["unit", "mode"]):
        fine = g.groupby("fine")[["median_ms", "ratio_rc", "ratio_rs", "ref_ms", "rs_ms"]].median()
        fine = fine[(fine > 0).all(axis=1)]
        lu, lrc, lrs = (np.log(fine[c].to_numpy()) for c in ("median_ms", "ref_ms", "rs_ms"))
        lu, lrc, lrs = lu - lu.mean(), lrc - lrc.mean(), lrs - lrs.mean()

        def slope(y, x):
            return float((x * y).sum() / (x * x).sum()) if (x * x).sum() > 0 else float("nan")

        def corr(y, x):
            return float(np.corrcoef(y, x)[0, 1]) if len(y) > 2 and y.std() > 0 and x.std() > 0 else float("nan")

        # two-reference correction: log u - log rc = c + w (log rs - log rc), w fitted on the first half
        first, second = g[g["half"] == 0], g[g["half"] == 1]
        f1 = first.groupby("fine")[["median_ms", "ref_ms", "rs_ms"]].median()
        y1 = np.log(f1["median_ms"] / f1["ref_ms"]).to_numpy()
        x1 = np.log(f1["rs_ms"] / f1["ref_ms"]).to_numpy()
        y1, x1 = y1 - y1.mean(), x1 - x1.mean()
        w = float((x1 * y1).sum() / (x1 * x1).sum()) if len(x1) > 1 and (x1 * x1).sum() > 0 else 0.0
        g = g.assign(ratio_mix=g["ratio_rc"] * (g["rs_ms"] / g["ref_ms"]) ** w)
        bins = g.groupby("bin")[["median_ms", "ratio_rc", "ratio_rs", "ratio_mix"]].median()
        halves = g.groupby("half")[["median_ms", "ratio_rc", "ratio_rs", "ratio_mix"]].median()
        h2 = second.assign(ratio_mix=second["ratio_rc"] * (second["rs_ms"] / second["ref_ms"]) ** w)
        fine2 = h2.groupby("fine")[["ratio_rc", "ratio_rs", "ratio_mix"]].median()

        def half_change(c):
            return float(halves[c].iloc[-1] / halves[c].iloc[0] - 1) if len(halves) == 2 else float("nan")

        fb = meta["units"].get(unit, {})
        row = {"unit": unit, "mode": mode, "weight_mib": round(fb.get("weight_bytes", 0) / 2**20, 3),
               "mmac": round(fb.get("macs", 0) / 1e6, 1), "n": int(len(g)),
               "median_ms": float(g["median_ms"].median()), "ratio_rc": float(g["ratio_rc"].median()),
               "p90_p10_ms": float(g["median_ms"].quantile(0.9) / g["median_ms"].quantile(0.1)),
               "p90_p10_rc": float(g["ratio_rc"].quantile(0.9) / g["ratio_rc"].quantile(0.1)),
               "p90_p10_rs": float(g["ratio_rs"].quantile(0.9) / g["ratio_rs"].quantile(0.1)),
               "create_ms": float(g["create_ms"].median()) if g["create_ms"].notna().any() else None}
        for c, short in (("median_ms", "ms"), ("ratio_rc", "rc"), ("ratio_rs", "rs"), ("ratio_mix", "mix")):
            row[f"spread5_{short}"] = _spread(bins[c])
            row[f"half_{short}"] = half_change(c)
        for c, short in (("ratio_rc", "rc"), ("ratio_rs", "rs"), ("ratio_mix", "mix")):  # second half, 1-min bins
            v = fine2[c].to_numpy()
            row[f"h2_cv1_{short}"] = float(v.std() / v.mean()) if v.size > 1 else float("nan")
        v = fine["ratio_rc"].to_numpy()
        row["cv1_rc"] = float(v.std() / v.mean()) if v.size > 1 else float("nan")
        v = fine["ratio_rs"].to_numpy()
        row["cv1_rs"] = float(v.std() / v.mean()) if v.size > 1 else float("nan")
        lratio = np.log(fine["ratio_rc"].to_numpy())
        # does the collector's ratio depend on the machine's state? burst-level log-log slope on ref_ms,
        # and the ratio in the slowest quartile of ref_ms over the fastest
        bx, by = np.log(g["ref_ms"].to_numpy()), np.log(g["ratio_rc"].to_numpy())
        row["state_slope_rc"] = slope(by - by.mean(), bx - bx.mean())
        byq = g.groupby("state")["ratio_rc"].median()
        row["slow_over_fast_rc"] = float(byq.iloc[-1] / byq.iloc[0] - 1) if len(byq) > 1 else float("nan")
        byq = g.groupby("state")["ratio_rs"].median()
        row["slow_over_fast_rs"] = float(byq.iloc[-1] / byq.iloc[0] - 1) if len(byq) > 1 else float("nan")
        row.update(beta_rc=slope(lu, lrc), beta_rs=slope(lu, lrs), corr_rc=corr(lu, lrc), corr_rs=corr(lu, lrs),
                   corr_ratio_disagree=corr(lratio - lratio.mean(), lrs - lrc), w_mix=w)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["mode", "weight_mib"])
    # the machine: references against each other, time trend, load
    fine_all = df.groupby("fine")[["ref_ms", "rs_ms", "loadavg"]].median()
    busy_cols = [c for c in df.columns if c.endswith("_busy") or c.endswith("_steal")]
    machine = {"minutes": round(span_min, 2), "passes": int(df["pass"].max() + 1), "bursts": int(len(df)),
               "ref_cache_ms_p10_p50_p90": [round(float(df["ref_ms"].quantile(q)), 4) for q in (0.1, 0.5, 0.9)],
               "ref_stream_ms_p10_p50_p90": [round(float(df["rs_ms"].quantile(q)), 4) for q in (0.1, 0.5, 0.9)],
               "ref_cache_ms_by_state": [round(float(v), 4) for v in df.groupby("state")["ref_ms"].median()],
               "spread5_ref_cache_ms": _spread(df.groupby("bin")["ref_ms"].median()),
               "spread5_ref_stream_ms": _spread(df.groupby("bin")["rs_ms"].median()),
               "spread5_stream_over_cache": _spread(df.groupby("bin").apply(
                   lambda g: float((g["rs_ms"] / g["ref_ms"]).median()))),
               "corr1_ref_cache_stream": float(np.corrcoef(np.log(fine_all["ref_ms"]), np.log(fine_all["rs_ms"]))[0, 1])
               if len(fine_all) > 2 else None,
               "means": {c: round(float(df[c].mean()), 4) for c in busy_cols + ["loadavg"] if c in df},
               "caches": meta.get("caches"), "pinned_cores": meta.get("pinned_cores")}
    # what the ratio's per-burst wobble goes with (fresh bursts of whole subnets)
    nets = df[(df["unit"].str.startswith("net_")) & (df["mode"] == "fresh")].copy()
    if not nets.empty:
        nets["dev"] = np.log(nets["ratio_rc"]) - np.log(nets.groupby("unit")["ratio_rc"].transform("median"))
        nets["rs_rc"] = np.log(nets["rs_ms"] / nets["ref_ms"])
        cand = {"stream_over_cache": "rs_rc", "t": "t", "loadavg": "loadavg", "create_ms": "create_ms",
                **{c: c for c in busy_cols}}
        machine["subnet_ratio_rc_corr"] = {k: round(float(nets["dev"].corr(nets[c])), 3)
                                           for k, c in cand.items() if c in nets and nets[c].std() > 0}
    med = table.pivot(index="unit", columns="mode", values="median_ms")
    if {"fresh", "open"} <= set(med.columns):
        table["fresh_over_open"] = table["unit"].map(med["fresh"] / med["open"])
    summary = {"machine": machine, "units": table.to_dict(orient="records")}
    (out / "table.md").write_text(markdown_table(table))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    cols = ["unit", "mode", "weight_mib", "median_ms", "spread5_ms", "spread5_rc", "spread5_rs", "spread5_mix",
            "half_ms", "half_rc", "half_rs", "half_mix", "h2_cv1_rc", "h2_cv1_rs", "h2_cv1_mix", "beta_rc",
            "beta_rs", "corr_rc", "corr_rs", "corr_ratio_disagree", "w_mix", "state_slope_rc", "slow_over_fast_rc",
            "slow_over_fast_rs"]
    print(table[cols].round(4).to_string(index=False))
    print(json.dumps({k: v for k, v in machine.items() if k != "caches"}, indent=1, default=float))
    if plot:
        _plot(df, out, bin_min, fine_min)
    return summary


def markdown_table(table) -> str:
    """The README's table: per unit and mode, drift of the raw time and of the three normalisations."""
    def pct(x):
        return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"

    def sp(x):
        return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"

    lines = ["| unit | mode | INT8 weights | median ms | 5-min spread: raw | / ref_cache | / ref_stream | "
             "two-ref mix | 2nd half vs 1st: raw | / ref_cache | / ref_stream | mix | elasticity to ref_cache | "
             "to ref_stream | w | slow vs fast state: / ref_cache | / ref_stream |", "|" + "---|" * 17]
    for r in table.to_dict(orient="records"):
        lines.append(f"| {r['unit']} | {r['mode']} | {r['weight_mib']:.2f} MiB | {r['median_ms']:.3g} | "
                     f"{sp(r['spread5_ms'])} | {sp(r['spread5_rc'])} | {sp(r['spread5_rs'])} | {sp(r['spread5_mix'])} | "
                     f"{pct(r['half_ms'])} | {pct(r['half_rc'])} | {pct(r['half_rs'])} | {pct(r['half_mix'])} | "
                     f"{r['beta_rc']:.2f} | {r['beta_rs']:.2f} | {r['w_mix']:.2f} | {pct(r['slow_over_fast_rc'])} | "
                     f"{pct(r['slow_over_fast_rs'])} |")
    return "\n".join(lines) + "\n"


def _plot(df, out: Path, bin_min: float, fine_min: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fresh = df[df["mode"] == "fresh"]
    units = sorted(fresh["unit"].unique())
    fig, axes = plt.subplots(4, 1, figsize=(11, 14), sharex=True)
    for ax, col, title in ((axes[0], "median_ms", "raw time"), (axes[1], "ratio_rc", "ratio to ref_cache (collector)"),
                           (axes[2], "ratio_rs", "ratio to ref_stream")):
        for u in units:
            g = fresh[fresh["unit"] == u]
            s = g.groupby("fine").agg(t=("t", "median"), v=(col, "median"))
            ax.plot(s["t"] / 60, s["v"] / s["v"].median(), label=u, lw=1.8 if u.startswith("net_") else 0.9,
                    ls="-" if u.startswith(("net_", "ref_")) else "--")
        ax.set_ylabel("/ unit's median")
        ax.set_title(f"{title}, fresh sessions, {fine_min:.3g}-min medians")
        ax.grid(alpha=0.3)
    s = df.assign(d=df["rs_ms"] / df["ref_ms"]).groupby("fine").agg(t=("t", "median"), d=("d", "median"),
                                                                   rc=("ref_ms", "median"), rs=("rs_ms", "median"))
    for col, label in (("rc", "ref_cache ms"), ("rs", "ref_stream ms"), ("d", "ref_stream / ref_cache")):
        axes[3].plot(s["t"] / 60, s[col] / s[col].median(), label=label)
    axes[3].set_ylabel("/ median")
    axes[3].set_title("the two references and their disagreement")
    axes[3].legend(fontsize=8)
    axes[3].grid(alpha=0.3)
    axes[0].legend(ncol=4, fontsize=8)
    axes[-1].set_xlabel("minutes since start")
    fig.tight_layout()
    fig.savefig(out / "drift.png", dpi=72)
    plt.close(fig)


def _until(hhmm: str) -> float:
    """Epoch seconds of the next occurrence of UTC ``HH:MM``."""
    import calendar

    h, m = (int(x) for x in hhmm.split(":"))
    now = time.time()
    day = calendar.timegm(time.gmtime(now)[:3] + (0, 0, 0))
    t = day + h * 3600 + m * 60
    return t if t > now else t + 86400


def main() -> None:
    """Parse the command line; time (and analyse), or analyse only."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to time (after preparing the units)")
    ap.add_argument("--out", type=Path, default=Path("drift-run"), help="folder for records, units, summary, plot")
    ap.add_argument("--analyse", type=Path, default=None, metavar="OUT", help="only analyse an earlier run's folder")
    ap.add_argument("--bin-minutes", type=float, default=5.0, help="bin of the drift statistics (default 5)")
    ap.add_argument("--repeats", type=int, default=5, help="samples per burst (default 5)")
    ap.add_argument("--until", default=None, metavar="HH:MM",
                    help="stop timing at this UTC time of day at the latest (next occurrence)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="small stand-in units (checks the script only)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    if args.analyse is not None:
        analyse(args.analyse, bin_min=args.bin_minutes, plot=not args.no_plot)
        return
    try:
        run(args.out, args.minutes, seed=args.seed, smoke=args.smoke, repeats=args.repeats,
            until=_until(args.until) if args.until else None)
    except KeyboardInterrupt:
        print("interrupted; analysing what was recorded", file=sys.stderr)
    analyse(args.out, bin_min=args.bin_minutes, plot=not args.no_plot)


if __name__ == "__main__":
    main()
