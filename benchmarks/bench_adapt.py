"""Few-shot transfer of latency predictors (issue 15): leave one local target out, adapt from the others.

For each target with ground truth, the target's own predictor is left out and a predictor is adapted from
the other targets' full-profile predictors and the built-ins (``vnni-ort-int8``, ``pixel4-tflite-int8``)
with N = 10, 20, 50, 100 blocks drawn from the target's profiled pool (the units are *looked up* in the
target's store, which simulates profiling them) and up to 5 of the target's 8 whole subnets, then scored on
the target's 50 unseen whole subnets: +-10%, +-5%, MAPE, Kendall tau. Several seeds draw the subnets (and,
for the ``random`` strategy, the blocks). The profiling cost of the N units is read from the store's round
timestamps (see :func:`unit_costs`) next to the full profile's wall time.

Ground truth (one folder per target under ``--gt``; the exact commands, with ``SP=onnxw-151122-023231``)::

    spaceevo profile --backend B --dtype D --threads T --device DEV --space $SP --resolution 160 \\
        --subnets 8 --published --db GT/<target>/local.db --seed 1 --json > GT/<target>/profile.json
    spaceevo train --db GT/<target>/local.db --dtype D -o GT/<target>/local.pred --json > GT/<target>/train.json
    spaceevo validate --predictor GT/<target>/local.pred --space $SP --samples 50 --backend B --dtype D \\
        --threads T --resolution 160 --db GT/<target>/val.db --json > GT/<target>/validate.json

with the targets ``ort-int8-1t`` (ort int8 1 ort-amd-epyc), ``ort-int8-2t`` (ort int8 2 ort-amd-epyc-2t),
``ort-fp32-1t`` (ort fp32 1 ort-amd-epyc), ``tflite-int8-1t`` and ``tflite-fp32-1t`` (tflite int8|fp32 1
tflite-amd-epyc). Then::

    python benchmarks/bench_adapt.py --gt GT --out benchmarks/results/adapt-issue15

writes ``results.csv`` (every run), ``table.md`` (the README's table) and ``budget_accuracy.png``.

``--target min_ms`` learns and scores each unit's fastest sample instead of its ratio to the reference block
(issue 18: the statistic that repeats across runs on this machine). The sources and the target's full-profile
predictor are then ``GT/<target>/local-min_ms.pred``, trained from the same store when missing (what
``spaceevo train --db GT/<target>/local.db --dtype D --target min_ms -o GT/<target>/local-min_ms.pred`` writes),
and the target's validation subnets are those of ``GT/<target>/val-min_ms.db`` when present (timed in 20-30
rounds, ``spaceevo validate --predictor GT/<target>/local-min_ms.pred ... --rounds 30 --db
GT/<target>/val-min_ms.db``), otherwise ``val.db`` (10 rounds, a noisier fastest sample). The full-profile
row is then scored here, as ``spaceevo validate`` scores.

``--target median_ms`` does the same with each unit's median sample (the statistic that repeats across runs
for 2 threads on this 2-core VM, where the fastest sample does not), scored on the same multi-round
validation store (``val-median_ms.db`` if present, else ``val-min_ms.db``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spaceevo.datasets import LatencyStore
from spaceevo.predictors import (ADAPT_METHODS, AdaptSource, adapt_predictor, configs_from_frame, latency_metrics,
                                 load_predictor, select_units, train_from_store)
from spaceevo.predictors._adapt import check_source, source_log_predictions, unit_arrays

TARGETS = ("ort-int8-1t", "ort-int8-2t", "ort-fp32-1t", "tflite-int8-1t", "tflite-fp32-1t")
BUILTINS = ("vnni-ort-int8", "pixel4-tflite-int8")
SPACE = "onnxw-151122-023231"
STATISTICS = ("norm_ms", "min_ms", "median_ms")


def pred_file(folder: Path, target: str = "norm_ms") -> Path:
    """The target's full-profile predictor for the statistic ``target``."""
    return folder / ("local.pred" if target == "norm_ms" else f"local-{target}.pred")


def val_file(folder: Path, target: str = "norm_ms") -> Path:
    """The target's validation store for ``target``: its own multi-round one when it exists, else the
    ``min_ms`` one (every stored row has every statistic), else ``val.db``."""
    if target != "norm_ms":
        for name in (f"val-{target}.db", "val-min_ms.db"):
            if (folder / name).is_file():
                return folder / name
    return folder / "val.db"


def ensure_predictor(folder: Path, target: str) -> Path:
    """``pred_file``, trained from the target's store (``spaceevo train --target``) when it is missing."""
    path = pred_file(folder, target)
    if not path.is_file() and (folder / "local.pred").is_file():
        dtype = load_predictor(folder / "local.pred").dtype
        print(f"training {path} (target {target})", file=sys.stderr)
        train_from_store(folder / "local.db", dtype=dtype, target=target).save(path)
    return path


# -- ground truth ---------------------------------------------------------------------------------------
def ready(folder: Path, target: str = "norm_ms") -> bool:
    """A target's ground truth is complete: store, predictor, validation store and (``norm_ms``) figures."""
    need = ("local.db", "local.pred", "val.db", "validate.json") if target == "norm_ms" else ("local.db", "local.pred")
    return all((folder / f).is_file() for f in need) and val_file(folder, target).is_file()


def load_target(folder: Path, target: str = "norm_ms") -> dict:
    """The target's pool (blocks, whole subnets), its 50 validation subnets, its predictor and figures."""
    with LatencyStore(folder / "local.db") as st:
        rows = st.read_measurements()
        rounds = st.read_rounds()
    with LatencyStore(val_file(folder, target)) as st:
        val = st.read_measurements(kind="model")
    pred = load_predictor(ensure_predictor(folder, target))
    if target == "norm_ms":
        full = json.loads((folder / "validate.json").read_text())
    else:
        full = ValSet(val, target).score(pred)
    prof = folder / "profile.json"
    seconds = json.loads(prof.read_text()).get("seconds") if prof.is_file() and prof.stat().st_size else None
    return {"rows": rows, "rounds": rounds, "val": val, "pred": pred, "full": full, "profile_seconds": seconds,
            "dtype": pred.dtype, "val_rounds": int(val["rounds"].median())}


def unit_costs(rows: pd.DataFrame, rounds: pd.DataFrame, total_seconds: float | None = None, chunk: int = 64,
               conversion_gap: float = 5.0) -> tuple[dict, dict]:
    """Seconds each unit cost to profile, from the store's round timestamps; and the run's overheads.

    The collector converts ``chunk`` units, then times their rounds interleaved, storing each round as it
    finishes: the gap before a round is what timing it cost, except the gaps over ``conversion_gap`` s at
    a chunk's start, which are the chunk's conversions. Conversion seconds per block and per whole subnet
    are fitted by least squares on the chunks (rows in plan order, ``chunk`` units each); the first chunk's
    conversion and the start-up are ``total_seconds`` less everything else.
    """
    t = pd.to_datetime(rounds["created_at"])
    order = np.argsort(t.to_numpy(), kind="stable")
    r = rounds.iloc[order].reset_index(drop=True)
    secs = (pd.to_datetime(r["created_at"]) - pd.to_datetime(r["created_at"]).min()).dt.total_seconds().to_numpy()
    gap = np.diff(secs, prepend=secs[0])
    conv = gap > conversion_gap
    timing = pd.Series(np.where(conv, 0.0, gap)).groupby(r["key"].to_numpy()).sum().to_dict()
    ok = rows.reset_index(drop=True)
    chunk_of = {k: i // chunk for i, k in enumerate(ok["key"])}
    kinds = dict(zip(ok["key"], ok["kind"]))
    conv_rows = []
    for i in np.nonzero(conv)[0]:
        c = chunk_of.get(r["key"].iloc[i])
        if c is not None:
            keys = [k for k, cc in chunk_of.items() if cc == c]
            conv_rows.append((sum(kinds[k] == "block" for k in keys), sum(kinds[k] == "model" for k in keys), gap[i]))
    per_block, per_model = 0.2, 2.0
    if conv_rows:
        A = np.array([[a, b] for a, b, _ in conv_rows], dtype=float)
        g = np.array([x for *_, x in conv_rows])
        from scipy.optimize import nnls

        sol, _ = nnls(A, g)
        per_block, per_model = (float(sol[0]) or per_block), (float(sol[1]) or per_model)
    cost = {k: timing.get(k, 0.0) + (per_block if kinds[k] == "block" else per_model) for k in ok["key"]}
    spent = float(sum(cost.values()))
    total = float(total_seconds) if total_seconds else spent
    return cost, {"per_block_conversion_s": per_block, "per_model_conversion_s": per_model,
                  "startup_s": max(0.0, total - spent), "total_s": total}


# -- scoring --------------------------------------------------------------------------------------------
class ValSet:
    """The target's validation subnets and their measured ``target`` statistic: ratios (the predictor's
    reference turns them into ms) or fastest samples."""

    def __init__(self, val: pd.DataFrame, target: str = "norm_ms"):
        self.target = target
        self.y = val["ratio" if target == "norm_ms" else target].to_numpy(dtype=float)
        self.subnets = [json.loads(cfg)["subnet"] for cfg in val["config"]]

    def score(self, pred) -> dict:
        """Model-level metrics of ``pred`` on the subnets (as ``spaceevo validate`` computes them)."""
        p = np.array([pred.predict_subnet(SPACE, s)["latency_ms"] for s in self.subnets])
        scale = float(pred.reference_ms) if self.target == "norm_ms" else 1.0
        return latency_metrics(self.y * scale, p)


# -- the experiment -------------------------------------------------------------------------------------
def sources_for(target: str, gt: Path, dtype: str, cross_dtype: bool, types: list[str],
                cache: dict, statistic: str = "norm_ms") -> tuple[list[AdaptSource], dict]:
    """The other targets' full-profile predictors of ``statistic`` (those trained so far) and the built-ins
    that can serve ``target`` (and why the others cannot)."""
    out, skipped = [], {}
    others = [t for t in TARGETS if t != target and (gt / t / "local.pred").is_file()]
    for name in others + list(BUILTINS):
        if (name, statistic) not in cache:
            cache[name, statistic] = load_predictor(ensure_predictor(gt / name, statistic) if name in TARGETS
                                                    else name)
        name_pred = cache[name, statistic]
        src = AdaptSource(name, name_pred)
        try:
            check_source(src, dtype, types, cross_dtype=cross_dtype)
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        out.append(src)
    return out, skipped


def run_target(target: str, gt: Path, budgets: list[int], seeds: list[int], n_subnets: int, cache: dict,
               methods: list[str], statistic: str = "norm_ms") -> list[dict]:
    data = load_target(gt / target, statistic)
    rows = data["rows"]
    blocks = rows[rows["kind"] == "block"].reset_index(drop=True)
    subnets = rows[rows["kind"] == "model"].reset_index(drop=True)
    types, X = unit_arrays(configs_from_frame(blocks))
    val = ValSet(data["val"], statistic)
    cost, overhead = unit_costs(rows, data["rounds"], data["profile_seconds"])
    full = data["full"]
    out = [{"target": target, "sources": "full profile", "budget": len(blocks), "subnets": len(subnets),
            "strategy": "all", "method": "train", "seed": 0, "acc_10pct": full["acc_10pct"],
            "acc_5pct": full["acc_5pct"], "mape": full["mape"], "kendall_tau": full["kendall_tau"],
            "profile_s": overhead["total_s"], "chosen_sources": "", "chosen_method": "", "fit_s": None,
            "statistic": statistic, "val_rounds": data["val_rounds"]}]
    for mode, cross in (("same dtype", False), ("any dtype", True)):
        srcs, skipped = sources_for(target, gt, data["dtype"], cross, sorted(set(types.tolist())), cache, statistic)
        print(f"{target} [{mode}]: sources {[s.name for s in srcs]}; skipped {sorted(skipped)}", file=sys.stderr)
        if not srcs:
            continue
        S = source_log_predictions(srcs, types, X)
        for n in budgets:
            if n > len(blocks):
                continue
            for seed in seeds:
                rng = np.random.default_rng(seed)
                subs = subnets.iloc[sorted(rng.choice(len(subnets), size=min(n_subnets, len(subnets)),
                                                      replace=False))]
                for strategy in ("diverse", "disagree", "random"):
                    idx = select_units(types, X, S, n, strategy, seed=seed)
                    chosen = pd.concat([blocks.iloc[idx], subs])
                    secs = float(sum(cost[k] for k in chosen["key"])) + overhead["startup_s"]
                    # every method on the diverse units of the first seed; the default (auto) on all
                    todo = methods if strategy == "diverse" and seed == seeds[0] else ["auto"]
                    for method in todo:
                        t0 = time.perf_counter()
                        pred = adapt_predictor(srcs, chosen, device=f"adapted-{target}", dtype=data["dtype"],
                                               method=method, target=statistic)
                        fit_s = time.perf_counter() - t0
                        m = val.score(pred)
                        ad = pred.manifest["adaptation"]
                        out.append({"target": target, "sources": mode, "budget": n, "subnets": len(subs),
                                    "strategy": strategy, "method": method, "seed": seed,
                                    "acc_10pct": m["acc_10pct"], "acc_5pct": m["acc_5pct"], "mape": m["mape"],
                                    "kendall_tau": m["kendall_tau"], "profile_s": secs,
                                    "chosen_sources": "+".join(s["name"] for s in ad["sources"]),
                                    "chosen_method": ad["method"], "fit_s": fit_s, "statistic": statistic,
                                    "val_rounds": data["val_rounds"]})
                        print(f"  {mode} N={n} seed={seed} {strategy} {method}->{ad['method']} "
                              f"[{out[-1]['chosen_sources']}]: +-10% {m['acc_10pct']:.0f} +-5% {m['acc_5pct']:.0f} "
                              f"MAPE {m['mape']:.2f} tau {m['kendall_tau']:.3f} ({secs:.0f} s profiling)",
                              file=sys.stderr)
    return out


# -- reports --------------------------------------------------------------------------------------------
def summary_table(df: pd.DataFrame) -> str:
    """The README table: per target and budget, adapted (auto, diverse) against the full-profile predictor."""
    lines = ["| target | sources | N blocks + subnets | profiling (s) | +-10% | +-5% | MAPE | Kendall tau | "
             "chosen sources (seed 0) |", "|---|---|---|---|---|---|---|---|---|"]
    for target, g in df.groupby("target", sort=False):
        full = g[g["method"] == "train"].iloc[0]
        for mode in ("same dtype", "any dtype"):
            a = g[(g["sources"] == mode) & (g["strategy"] == "diverse") & (g["method"] == "auto")]
            for n, b in a.groupby("budget"):
                def cell(col, fmt):
                    return f"{fmt.format(b[col].mean())} ({fmt.format(b[col].min())})" if len(b) > 1 \
                        else fmt.format(b[col].mean())
                lines.append(f"| {target} | {mode} | {n} + {int(b['subnets'].iloc[0])} | {b['profile_s'].mean():.0f} | "
                             f"{cell('acc_10pct', '{:.0f}%')} | {cell('acc_5pct', '{:.0f}%')} | "
                             f"{b['mape'].mean():.2f}% | {cell('kendall_tau', '{:.3f}')} | "
                             f"{b[b['seed'] == b['seed'].min()]['chosen_sources'].iloc[0]} |")
        lines.append(f"| {target} | full profile | {int(full['budget'])} + {int(full['subnets'])} | "
                     f"{full['profile_s']:.0f} | {full['acc_10pct']:.0f}% | {full['acc_5pct']:.0f}% | "
                     f"{full['mape']:.2f}% | {full['kendall_tau']:.3f} | |")
    return "\n".join(lines)


def readme_table(df: pd.DataFrame) -> str:
    """The README's compact table: any-dtype sources, diverse units, auto; mean over seeds (min)."""
    lines = ["| target | N blocks + 5 subnets | profiling | +-10% | +-5% | MAPE | Kendall tau | sources (seed 0) |",
             "|---|---|---|---|---|---|---|---|"]
    for target, g in df.groupby("target", sort=False):
        a = g[(g["sources"] == "any dtype") & (g["strategy"] == "diverse") & (g["method"] == "auto")]
        for n, b in a.groupby("budget"):
            lines.append(f"| {target} | {n} | {b['profile_s'].mean():.0f} s | {b['acc_10pct'].mean():.0f}% "
                         f"({b['acc_10pct'].min():.0f}%) | {b['acc_5pct'].mean():.0f}% | {b['mape'].mean():.2f}% | "
                         f"{b['kendall_tau'].mean():.3f} | "
                         f"{b[b['seed'] == b['seed'].min()]['chosen_sources'].iloc[0]} |")
        full = g[g["method"] == "train"].iloc[0]
        lines.append(f"| {target} | **full profile** ({int(full['budget'])} + {int(full['subnets'])}) | "
                     f"{full['profile_s']:.0f} s | {full['acc_10pct']:.0f}% | {full['acc_5pct']:.0f}% | "
                     f"{full['mape']:.2f}% | {full['kendall_tau']:.3f} | |")
    return "\n".join(lines)


def method_table(df: pd.DataFrame, targets: list[str]) -> str:
    """Mean Kendall tau and +-10% per method and budget (diverse units, any-dtype sources; the methods on the
    first seed's units, auto on all) and the other unit choices (auto), over ``targets``."""
    d = df[(df["sources"] == "any dtype") & df["target"].isin(targets)]
    rows = ["| N | " + " | ".join(m for m in ADAPT_METHODS) + " | disagree units, auto | random units, auto |",
            "|---|" + "---|" * (len(ADAPT_METHODS) + 2)]
    for n, g in d.groupby("budget"):
        cells = []
        for m in ADAPT_METHODS:
            x = g[(g["strategy"] == "diverse") & (g["method"] == m) & (g["seed"] == g["seed"].min())]
            cells.append(f"{x['kendall_tau'].mean():.3f} / {x['acc_10pct'].mean():.0f}%" if len(x) else "-")
        for strategy in ("disagree", "random"):
            x = g[(g["strategy"] == strategy) & (g["method"] == "auto")]
            cells.append(f"{x['kendall_tau'].mean():.3f} / {x['acc_10pct'].mean():.0f}%" if len(x) else "-")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def stat_line(df: pd.DataFrame) -> str:
    """Which statistic the rows learned and scored, and in how many rounds the validation subnets were timed."""
    if "statistic" not in df:
        return "norm_ms"
    full = df[df["method"] == "train"]
    return ", ".join(f"{r.target}: {r.statistic} ({r.val_rounds:.0f} rounds)" for r in full.itertuples())


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for target in targets:
        g = df[(df["target"] == target) & (df["sources"] == "any dtype") & (df["strategy"] == "diverse")
               & (df["method"] == "auto")].groupby("budget")[["kendall_tau", "acc_10pct"]].mean()
        if g.empty:
            continue
        line = axes[0].plot(g.index, g["kendall_tau"], marker="o", label=target)[0]
        axes[1].plot(g.index, g["acc_10pct"], marker="o", color=line.get_color(), label=target)
        full = df[(df["target"] == target) & (df["method"] == "train")].iloc[0]
        axes[0].axhline(full["kendall_tau"], color=line.get_color(), ls=":", lw=1)
        axes[1].axhline(full["acc_10pct"], color=line.get_color(), ls=":", lw=1)
    for ax, title in zip(axes, ("Kendall tau, 50 unseen subnets", "within +-10%, 50 unseen subnets (%)")):
        ax.set_xscale("log")
        ax.set_xticks([10, 20, 50, 100], ["10", "20", "50", "100"])
        ax.set_xlabel("blocks measured on the target (+ 5 whole subnets)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].axhline(0.9, color="k", lw=0.8)
    axes[1].axhline(95, color="k", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle("adapted predictors (auto, diverse units) vs budget; dotted: the full-profile predictor")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", type=Path, required=True, help="folder with one ground-truth folder per target")
    ap.add_argument("--targets", nargs="*", default=None, help=f"default: those of {list(TARGETS)} that are ready")
    ap.add_argument("--budgets", nargs="*", type=int, default=[10, 20, 50, 100])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--subnets", type=int, default=5, help="whole subnets of the target's 8 (<= 5)")
    ap.add_argument("--methods", nargs="*", default=list(ADAPT_METHODS))
    ap.add_argument("--target", choices=STATISTICS, default="norm_ms",
                    help="the timing statistic learned and scored (min_ms: each unit's fastest sample; "
                         "median_ms: its median one)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt-issue15"))
    ap.add_argument("--render", nargs="*", type=Path, default=None,
                    help="only write the tables and plot from these results.csv files (runs of other targets)")
    args = ap.parse_args(argv)
    targets = args.targets or [t for t in TARGETS if ready(args.gt / t, args.target)]
    missing = [t for t in TARGETS if not ready(args.gt / t, args.target)]
    if missing:
        print(f"no complete ground truth for {missing} under {args.gt}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    if args.render:
        df = pd.concat([pd.read_csv(p) for p in args.render], ignore_index=True)
        targets = list(dict.fromkeys(df["target"]))
        missing = [t for t in TARGETS if t not in targets]
    else:
        rows = []
        for target in targets:
            rows += run_target(target, args.gt, args.budgets, args.seeds, args.subnets, cache, args.methods,
                               args.target)
        df = pd.DataFrame(rows)
    df.to_csv(args.out / "results.csv", index=False)
    full = df[df["method"] == "train"]
    usable = full.loc[full["kendall_tau"] >= 0.5, "target"].tolist()  # a target its own data cannot rank is noise
    text = (f"# Few-shot adaptation, leave one target out ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
            f"Targets: {targets}; missing ground truth: {missing or 'none'}. Statistic learned and scored: "
            f"{stat_line(df)}. Means over seeds {args.seeds} "
            "(minimum in brackets); units chosen by `select_units(strategy='diverse')`, method `auto`.\n\n"
            + summary_table(df) + "\n\n## README table (any-dtype sources)\n\n" + readme_table(df)
            + "\n\n## Kendall tau / +-10% by method (diverse units, any-dtype sources), and the other unit "
            "choices (method auto), per target whose full-profile predictor reaches tau 0.5\n\n"
            + "\n\n".join(f"### {t}\n\n" + method_table(df, [t]) for t in usable) + "\n")
    (args.out / "table.md").write_text(text)
    plot(df, args.out / "budget_accuracy.png")
    print(text)


if __name__ == "__main__":
    main()
