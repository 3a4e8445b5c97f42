"""Numbers that repeat (issue 18): the same whole subnets timed at different times, quiet and under load.

Each run is one ``spaceevo validate`` of a predictor against the same random subnets (same ``--seed``), into
its own store, so every run times every subnet afresh with the collector's protocol (whole networks in
``MODEL_ROUNDS`` sessions). ``run`` records the command, its JSON, when it ran and, with ``--load``, a load
kept on the other core for the whole run:

* ``cpu``: a busy loop (one CPU-bound process);
* ``mem``: NumPy copying a 256 MiB array back and forth (streams memory, evicts the shared L3).

``analyse`` compares the runs:

* repeatability of every pair of quiet runs (median and max |difference| of the measured ``ratio``, on the
  first ten subnets and on all common ones), once with all rounds of the run and once with only its first
  ``ROUNDS`` (10) rounds: the same data read as the collector read whole networks before ``MODEL_ROUNDS``;
* each quiet run's accuracy (+-10%, +-5%, MAPE, Kendall tau, median signed error);
* each loaded run against the median of the quiet runs (how far a load moves the numbers).

``analyse`` also writes every whole subnet's rounds (samples and reference samples) to ``rounds.jsonl.gz``,
from which it reruns where the stores are not kept (``benchmarks/results/repeat-issue18/``).

Run (the machine to itself; runs 30 minutes apart, loads in between)::

    python benchmarks/bench_repeat.py run --out rep --name quiet1 --predictor ort-amd-epyc-int8
    python benchmarks/bench_repeat.py run --out rep --name cpu --load cpu --samples 10
    python benchmarks/bench_repeat.py analyse rep       # summary.json, table.md
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPACE = "onnxw-151122-023231"
OLD_ROUNDS = 10  # the collector's ROUNDS: what whole networks got before MODEL_ROUNDS


def _spin() -> None:
    while True:
        pass


def _stream() -> None:
    a = np.ones(32 * 2 ** 20)  # 256 MiB of float64
    b = np.empty_like(a)
    while True:
        np.copyto(b, a)
        np.copyto(a, b)


def _other_core() -> int | None:
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0] if len(allowed) > 1 else None  # the collector pins one thread to the last core


def start_load(kind: str) -> subprocess.Popen | None:
    """A process that keeps the other core busy (``cpu``) or streams memory from it (``mem``)."""
    if kind == "none":
        return None
    core = _other_core()
    if core is None:
        raise SystemExit("--load needs a second core to put the load on")
    code = {"cpu": "_spin", "mem": "_stream"}[kind]
    return subprocess.Popen([sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{core}}}); "
                             f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_repeat as b; "
                             f"b.{code}()"])


def cpu_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            v = [int(x) for x in line.split()[1:]]
            out.append((sum(v) - v[3] - v[4], sum(v)))
    return out


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{args.name}.db"
    if db.exists():
        raise SystemExit(f"{db} exists: every run times afresh; pick another --name")
    cmd = [str(Path(sys.executable).parent / "spaceevo"), "validate", "--predictor", args.predictor, "--space",
           args.space, "--samples", str(args.samples), "--seed", str(args.seed), "--backend", "ort", "--dtype",
           "int8", "--resolution", "160", "--db", str(db), "--json", *args.extra]
    load = start_load(args.load)
    started, before = time.time(), cpu_times()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        if load is not None:
            load.kill()
    after = cpu_times()
    if res.returncode:
        raise SystemExit(f"validate failed ({res.returncode}):\n{res.stderr[-3000:]}")
    busy = [round((a[0] - b[0]) / max(1, a[1] - b[1]), 3) for a, b in zip(after, before)]
    rec = {"name": args.name, "load": args.load, "command": " ".join(cmd[1:]), "started": started,
           "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
           "seconds": round(time.time() - started, 1), "core_busy": busy, "result": json.loads(res.stdout)}
    (out / f"{args.name}.json").write_text(json.dumps(rec, indent=1))
    r = rec["result"]
    print(f"{args.name}: {rec['seconds']} s, +-10% {r['acc_10pct']:.1f}%, +-5% {r['acc_5pct']:.1f}%, "
          f"MAPE {r['mape']:.2f}%, tau {r['kendall_tau']:.3f}, cores busy {busy}")


def _stored_rounds(db: Path) -> list[tuple[str, int, dict]]:
    """(subnet, round, samples and reference samples) of every whole subnet's round: from the run's store, or,
    where the store is not kept (``results/``), from ``rounds.jsonl.gz`` beside it (written by ``analyse``)."""
    if db.exists():
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT key, round, stats FROM rounds WHERE kind = 'model'").fetchall()
        return [(key.split("/", 1)[1], rnd, {k: json.loads(st)[k] for k in ("samples", "ref_samples")})
                for key, rnd, st in rows]
    with gzip.open(db.parent / "rounds.jsonl.gz", "rt") as f:
        recs = [json.loads(line) for line in f]
    return [(r["subnet"], r["round"], r) for r in recs if r["run"] == db.stem]


def _export(out: Path, names: list[str]) -> None:
    with gzip.open(out / "rounds.jsonl.gz", "wt") as f:
        for name in names:
            for subnet, rnd, s in _stored_rounds(out / f"{name}.db"):
                f.write(json.dumps({"run": name, "subnet": subnet, "round": rnd,
                                    "samples": [round(x, 5) for x in s["samples"]],
                                    "ref_samples": [round(x, 5) for x in s["ref_samples"]]}) + "\n")


def _ratios(db: Path, max_rounds: int | None = None) -> dict[str, float]:
    """Each whole subnet's ratio from its stored rounds (pooled sample ratios; the first ``max_rounds`` only)."""
    per: dict[str, list] = {}
    for subnet, rnd, stats in _stored_rounds(db):
        if max_rounds is None or rnd < max_rounds:
            per.setdefault(subnet, []).append(stats)
    out = {}
    for key, rounds in per.items():
        x = []
        for s in rounds:
            t, r = np.asarray(s["samples"]), np.asarray(s["ref_samples"])
            x.append(t / ((r[:-1] + r[1:]) / 2))
        out[key] = float(np.median(np.concatenate(x)))
    return out


def _pair(a: dict, b: dict, keys: list[str]) -> dict:
    d = np.array([b[k] / a[k] - 1 for k in keys])
    return {"n": len(keys), "median_abs": round(100 * float(np.median(np.abs(d))), 2),
            "max_abs": round(100 * float(np.abs(d).max()), 2), "median_signed": round(100 * float(np.median(d)), 2)}


def analyse(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    runs = sorted((json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "summary.json"),
                  key=lambda r: r["started"])
    if not runs:
        raise SystemExit(f"no runs in {out}")
    order = [row["subnet"] for row in max(runs, key=lambda r: len(r["result"]["rows"]))["result"]["rows"]]
    first10 = order[:10]
    quiet = [r for r in runs if r["load"] == "none"]
    ratios = {r["name"]: {"all": _ratios(out / f"{r['name']}.db"),
                          "old": _ratios(out / f"{r['name']}.db", OLD_ROUNDS)} for r in runs}
    summary: dict = {"runs": [], "pairs": [], "loaded": []}
    for r in runs:
        res = r["result"]
        err = np.array([row["rel_error"] for row in res["rows"]])
        summary["runs"].append({"name": r["name"], "load": r["load"], "started_utc": r["started_utc"],
                                "seconds": r["seconds"], "core_busy": r["core_busy"], "samples": res["samples"],
                                "rounds": res["rounds"], "acc_10pct": res["acc_10pct"], "acc_5pct": res["acc_5pct"],
                                "mape": round(res["mape"], 2), "kendall_tau": round(res["kendall_tau"], 3),
                                "median_signed_error": round(100 * float(np.median(err)), 2)})
    for a, b in itertools.combinations(quiet, 2):
        common = [k for k in order if k in ratios[a["name"]]["all"] and k in ratios[b["name"]]["all"]]
        gap = round((b["started"] - a["started"]) / 60, 1)
        row = {"pair": f"{a['name']} / {b['name']}", "minutes_apart": gap}
        for proto in ("all", "old"):
            ra, rb = ratios[a["name"]][proto], ratios[b["name"]][proto]
            row[proto] = {"first10": _pair(ra, rb, [k for k in first10 if k in common]),
                          "common": _pair(ra, rb, common)}
        summary["pairs"].append(row)
    if quiet:
        base = {k: float(np.median([ratios[q["name"]]["all"][k] for q in quiet if k in ratios[q["name"]]["all"]]))
                for k in order if any(k in ratios[q["name"]]["all"] for q in quiet)}
        for r in runs:
            if r["load"] != "none":
                keys = [k for k in order if k in ratios[r["name"]]["all"] and k in base]
                summary["loaded"].append({"name": r["name"], "load": r["load"], "core_busy": r["core_busy"],
                                          **_pair(base, ratios[r["name"]]["all"], keys)})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if all((out / f"{r['name']}.db").exists() for r in runs):
        _export(out, [r["name"] for r in runs])
    if len(quiet) >= 2:
        _plot(out, quiet, ratios, order)
    lines = ["| run | load | started (UTC) | subnets | rounds | +-10% | +-5% | MAPE | Kendall tau | median error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['name']} | {r['load']} | {r['started_utc']} | {r['samples']} | {r['rounds']} | "
                     f"{r['acc_10pct']:.0f}% | {r['acc_5pct']:.0f}% | {r['mape']:.2f}% | {r['kendall_tau']:.3f} | "
                     f"{r['median_signed_error']:+.2f}% |")
    lines += ["", "| pair | minutes apart | first 10, all rounds: median / max | all common, all rounds | "
              f"first 10, first {OLD_ROUNDS} rounds | all common, first {OLD_ROUNDS} rounds |",
              "|---|---|---|---|---|---|"]
    for p in summary["pairs"]:
        cell = [f"{p[proto][s]['median_abs']:.2f}% / {p[proto][s]['max_abs']:.2f}% (n={p[proto][s]['n']})"
                for proto in ("all", "old") for s in ("first10", "common")]
        lines.append(f"| {p['pair']} | {p['minutes_apart']} | " + " | ".join(cell) + " |")
    if summary["loaded"]:
        lines += ["", "| loaded run | load | cores busy | vs quiet median: median signed | median abs | max abs |",
                  "|---|---|---|---|---|---|"]
        for r in summary["loaded"]:
            lines.append(f"| {r['name']} | {r['load']} | {r['core_busy']} | {r['median_signed']:+.2f}% | "
                         f"{r['median_abs']:.2f}% | {r['max_abs']:.2f}% |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def _plot(out: Path, quiet: list[dict], ratios: dict, order: list[str]) -> None:
    """Each subnet's quiet-run ratios relative to their mean: first OLD_ROUNDS rounds (left), all rounds (right)."""
    from spaceevo.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, proto, title in ((axes[0], "old", f"first {OLD_ROUNDS} rounds of each run (the old protocol)"),
                             (axes[1], "all", "all rounds (MODEL_ROUNDS)")):
        keys = [k for k in order if all(k in ratios[q["name"]][proto] for q in quiet)]
        for q in quiet:
            dev = [100 * (ratios[q["name"]][proto][k] / np.mean([ratios[p["name"]][proto][k] for p in quiet]) - 1)
                   for k in keys]
            ax.plot(range(len(keys)), dev, "o", ms=4, label=f"{q['name']} ({q['started_utc'][11:16]} UTC)")
        for y in (-2.5, 2.5):
            ax.axhline(y, color="grey", lw=0.6, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("subnet (validation order)")
    axes[0].set_ylabel("ratio vs the subnet's mean over the runs (%)")
    axes[1].legend(fontsize=8)
    fig.suptitle("The same whole subnets timed in runs 30+ minutes apart (ort INT8, 1 thread)")
    save_figure(fig, out / "repeat.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one validate run (quiet or under a load)")
    r.add_argument("--out", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--predictor", default="ort-amd-epyc-int8")
    r.add_argument("--space", default=SPACE)
    r.add_argument("--samples", type=int, default=50)
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--load", choices=("none", "cpu", "mem"), default="none")
    r.add_argument("extra", nargs="*", help="more validate options, after --")
    a = sub.add_parser("analyse", help="compare the runs in OUT")
    a.add_argument("out")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else analyse(args)


if __name__ == "__main__":
    main()
