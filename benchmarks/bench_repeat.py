"""Numbers that repeat (issue 18): the same whole subnets timed at different times, quiet and under load.

Each run is one ``spaceevo validate`` of a predictor against the same random subnets (same ``--seed``), into
its own store, so every run times every subnet afresh with the collector's protocol (whole networks in
``MODEL_ROUNDS`` sessions). ``run`` records the command, its JSON, when it ran and, with ``--load``, a load
kept on the other core for the whole run:

* ``cpu``: a busy loop (one CPU-bound process);
* ``mem``: NumPy copying a 256 MiB array back and forth (streams memory, evicts the shared L3).

``analyse`` compares the runs:

* repeatability of every pair of quiet runs (median and max |difference| of each subnet's ``ratio`` to the
  reference and of its fastest sample, ``min``, on the first ten subnets and on all common ones), once with
  all rounds of the run and once with only its first ``ROUNDS`` (10) rounds: the same data read as the
  collector read whole networks before ``MODEL_ROUNDS``;
* each run's accuracy as validated (+-10%, +-5%, MAPE, Kendall tau, median signed error), and with
  ``--predictor``, every run's stored timings scored again against that predictor (another target);
* each loaded run against the median of the quiet runs (how far a load moves the numbers).

``analyse`` also writes every whole subnet's rounds (samples and reference samples) to ``rounds.jsonl.gz``,
from which it reruns where the stores are not kept (``benchmarks/results/repeat-issue18/``).

Run (the machine to itself; runs 30 minutes apart, loads in between)::

    python benchmarks/bench_repeat.py run --out rep --name quiet1 --predictor ort-amd-epyc-int8
    python benchmarks/bench_repeat.py run --out rep --name cpu --load cpu --samples 10
    python benchmarks/bench_repeat.py analyse rep       # summary.json, table.md, repeat.png
    python benchmarks/bench_repeat.py analyse rep --predictor min.json.gz   # + every run against another predictor
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


def _export(out: Path, stored: dict[str, list]) -> None:
    with gzip.open(out / "rounds.jsonl.gz", "wt") as f:
        for name, rounds in stored.items():
            for subnet, rnd, s in rounds:
                f.write(json.dumps({"run": name, "subnet": subnet, "round": rnd,
                                    "samples": [round(x, 5) for x in s["samples"]],
                                    "ref_samples": [round(x, 5) for x in s["ref_samples"]]}) + "\n")


STATISTICS = ("ratio", "min")  # the pooled sample/reference ratio (norm_ms); the fastest sample (min_ms)


def _per_subnet(rounds: list[tuple[str, int, dict]], stat: str, max_rounds: int | None = None) -> dict[str, float]:
    """Each whole subnet's ``stat`` over its stored ``rounds`` (the first ``max_rounds`` only), as the collector
    pools them (``TimingStats.from_rounds``): ``ratio`` (subnets timed without the reference have none) or
    ``min`` (``min_ms``, the fastest sample)."""
    from spaceevo.latency import TimingStats

    per: dict[str, list] = {}
    for subnet, rnd, s in rounds:
        if max_rounds is None or rnd < max_rounds:
            per.setdefault(subnet, []).append(TimingStats.from_times(s["samples"], ref_times_ms=s["ref_samples"]))
    pooled = {key: TimingStats.from_rounds(r) for key, r in per.items()}
    field = "min_ms" if stat == "min" else "ratio"
    return {key: getattr(t, field) for key, t in pooled.items() if getattr(t, field) is not None}


def _pair(a: dict, b: dict, keys: list[str]) -> dict:
    d = np.array([b[k] / a[k] - 1 for k in keys])
    if not len(d):
        return {"n": 0, "median_abs": None, "max_abs": None, "median_signed": None}
    return {"n": len(keys), "median_abs": round(100 * float(np.median(np.abs(d))), 2),
            "max_abs": round(100 * float(np.abs(d).max()), 2), "median_signed": round(100 * float(np.median(d)), 2)}


def _rescore(pred_path: str, runs: list[dict], values: dict) -> list[dict]:
    """Every run's stored whole-subnet timings scored against one predictor (its target: ``min_ms`` from the
    fastest sample, ``norm_ms`` from the ratio times the predictor's reference time)."""
    from spaceevo.predictors import latency_metrics, load_predictor

    pred = load_predictor(pred_path)
    if pred.target not in ("min_ms", "norm_ms"):
        raise SystemExit(f"--predictor {pred_path}: target {pred.target!r}; rescoring reads min_ms or norm_ms")
    stat, scale = ("min", 1.0) if pred.target == "min_ms" else ("ratio", pred.reference_ms)
    rows = []
    for r in runs:
        meas = values[r["name"]][stat]["all"]
        keys = [row["subnet"] for row in r["result"]["rows"] if row["subnet"] in meas]
        if len(keys) < 2:
            continue
        y = np.array([meas[k] * scale for k in keys])
        p = pred.predict_subnets(r["result"]["space"], keys)
        m = latency_metrics(y, p)
        rows.append({"name": r["name"], "load": r["load"], "target": pred.target, "samples": len(keys),
                     "acc_10pct": m["acc_10pct"], "acc_5pct": m["acc_5pct"], "mape": round(m["mape"], 2),
                     "kendall_tau": round(m["kendall_tau"], 3),
                     "median_signed_error": round(100 * float(np.median((p - y) / y)), 2)})
    return rows


def _run_table(rows: list[dict], head: str) -> list[str]:
    lines = [f"| {head} | load | started (UTC) | target | subnets | rounds | +-10% | +-5% | MAPE | Kendall tau | "
             "median error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['load']} | {r.get('started_utc', '')} | {r['target']} | {r['samples']} | "
                     f"{r.get('rounds', '')} | {r['acc_10pct']:.0f}% | {r['acc_5pct']:.0f}% | {r['mape']:.2f}% | "
                     f"{r['kendall_tau']:.3f} | {r['median_signed_error']:+.2f}% |")
    return lines


def analyse(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    runs = sorted((json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "summary.json"),
                  key=lambda r: r["started"])
    if not runs:
        raise SystemExit(f"no runs in {out}")
    order = [row["subnet"] for row in max(runs, key=lambda r: len(r["result"]["rows"]))["result"]["rows"]]
    first10 = order[:10]
    quiet = [r for r in runs if r["load"] == "none"]
    stored = {r["name"]: _stored_rounds(out / f"{r['name']}.db") for r in runs}  # each store read once
    values = {name: {st: {"all": _per_subnet(rounds, st), "old": _per_subnet(rounds, st, OLD_ROUNDS)}
                     for st in STATISTICS} for name, rounds in stored.items()}
    summary: dict = {"runs": [], "pairs": [], "loaded": []}
    for r in runs:
        res = r["result"]
        err = np.array([row["rel_error"] for row in res["rows"]])
        summary["runs"].append({"name": r["name"], "load": r["load"], "started_utc": r["started_utc"],
                                "seconds": r["seconds"], "core_busy": r["core_busy"], "samples": res["samples"],
                                "target": res.get("statistic", "norm_ms"),
                                "rounds": res["rounds"], "acc_10pct": res["acc_10pct"], "acc_5pct": res["acc_5pct"],
                                "mape": round(res["mape"], 2), "kendall_tau": round(res["kendall_tau"], 3),
                                "median_signed_error": round(100 * float(np.median(err)), 2)})
    for a, b in itertools.combinations(quiet, 2):
        row = {"pair": f"{a['name']} / {b['name']}", "minutes_apart": round((b["started"] - a["started"]) / 60, 1)}
        for st in STATISTICS:
            for proto in ("all", "old"):
                va, vb = values[a["name"]][st][proto], values[b["name"]][st][proto]
                common = [k for k in order if k in va and k in vb]
                row[f"{st}_{proto}"] = {"first10": _pair(va, vb, [k for k in first10 if k in common]),
                                        "common": _pair(va, vb, common)}
        summary["pairs"].append(row)
    for st in STATISTICS:
        base = {k: float(np.median(v)) for k in order
                if (v := [values[q["name"]][st]["all"][k] for q in quiet if k in values[q["name"]][st]["all"]])}
        for r in runs:
            if r["load"] != "none":
                keys = [k for k in order if k in values[r["name"]][st]["all"] and k in base]
                summary["loaded"].append({"name": r["name"], "load": r["load"], "statistic": st,
                                          "core_busy": r["core_busy"],
                                          **_pair(base, values[r["name"]][st]["all"], keys)})
    if args.predictor:
        summary["rescored"] = {"predictor": args.predictor, "runs": _rescore(args.predictor, runs, values)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if all((out / f"{r['name']}.db").exists() for r in runs):
        _export(out, stored)
    if len(quiet) >= 2:
        _plot(out, quiet, values, order)
    lines = _run_table(summary["runs"], "run (as validated)")
    if "rescored" in summary:
        lines += ["", f"Every run's stored timings against `{Path(args.predictor).name}`:", ""]
        lines += _run_table(summary["rescored"]["runs"], "run (rescored)")
    for st in STATISTICS:
        lines += ["", f"| pair, `{st}` | minutes apart | first 10, all rounds: median / max | all common, all rounds | "
                  f"first 10, first {OLD_ROUNDS} rounds | all common, first {OLD_ROUNDS} rounds |",
                  "|---|---|---|---|---|---|"]
        for p in summary["pairs"]:
            if not p[f"{st}_all"]["common"]["n"]:  # a run timed without the reference has no ratio
                continue
            cell = [f"{c['median_abs']:.2f}% / {c['max_abs']:.2f}% (n={c['n']})" if c["n"] else "-"
                    for proto in ("all", "old") for c in (p[f"{st}_{proto}"]["first10"], p[f"{st}_{proto}"]["common"])]
            lines.append(f"| {p['pair']} | {p['minutes_apart']} | " + " | ".join(cell) + " |")
    if summary["loaded"]:
        lines += ["", "| loaded run | statistic | load | cores busy | vs quiet median: median signed | median abs | "
                  "max abs |", "|---|---|---|---|---|---|---|"]
        for r in summary["loaded"]:
            if r["n"]:
                lines.append(f"| {r['name']} | {r['statistic']} | {r['load']} | {r['core_busy']} | "
                             f"{r['median_signed']:+.2f}% | {r['median_abs']:.2f}% | {r['max_abs']:.2f}% |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def _plot(out: Path, quiet: list[dict], values: dict, order: list[str]) -> None:
    """Each subnet's quiet-run values relative to their mean, per statistic: first OLD_ROUNDS rounds, all rounds."""
    from spaceevo.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharey=True)
    for i, st in enumerate(STATISTICS):
        for ax, proto, title in ((axes[i, 0], "old", f"`{st}`, first {OLD_ROUNDS} rounds of each run"),
                                 (axes[i, 1], "all", f"`{st}`, all rounds (MODEL_ROUNDS)")):
            have = [q for q in quiet if values[q["name"]][st][proto]]
            keys = [k for k in order if all(k in values[q["name"]][st][proto] for q in have)]
            for q in have:
                v = values[q["name"]][st][proto]
                dev = [100 * (v[k] / np.mean([values[p["name"]][st][proto][k] for p in have]) - 1) for k in keys]
                ax.plot(range(len(keys)), dev, "o", ms=3, label=f"{q['name']} ({q['started_utc'][11:16]} UTC)")
            for y in (-2.5, 2.5):
                ax.axhline(y, color="grey", lw=0.6, ls="--")
            ax.set_title(title, fontsize=10)
        axes[i, 0].set_ylabel(f"{st} vs the subnet's mean over the runs (%)")
    for ax in axes[1]:
        ax.set_xlabel("subnet (validation order)")
    axes[1, 1].legend(fontsize=7, ncol=2)  # the panel with every run
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
    a.add_argument("--predictor", help="also score every run's stored timings against this predictor (name or file)")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else analyse(args)


if __name__ == "__main__":
    main()
