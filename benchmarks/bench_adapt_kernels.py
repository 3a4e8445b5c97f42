"""Few-shot transfer of a *kernel* predictor (issue 15, any ONNX model), scored against two baselines.

The experiment (``K``: a work folder; ``M``: the issue-14 workdir with ``train/`` and ``val/`` zoos and the
ort INT8 kernel predictor ``kernels-lgbm.pred``), per budget N::

    spaceevo adapt --backend ort --dtype fp32 --threads 1 --from M/kernels-lgbm.pred --cross-dtype \\
        --models M/train --budget N --subnets 5 --target min_ms --db K/adapt.db -o K/adaptedN.json.gz --json \\
        > K/adaptN.json
    spaceevo validate --predictor K/adaptedN.json.gz --models M/val --backend ort --dtype fp32 --threads 1 \\
        --rounds 20 --db K/val.db --json > K/validateN.json        # the first times the 70 models; the rest reuse

Then ``python benchmarks/bench_adapt_kernels.py K --models M/val --source M/kernels-lgbm.pred --out OUT``
scores, on the same measured validation models (``K/val.db``, nothing is timed here):

- ``adapted``: the adapted predictor (as ``validate`` scored it);
- ``source x 1 factor``: the source kernel predictor, composition included, times one factor fitted on the
  5 whole models the adaptation measured (what a user gets from the 5 models alone);
- ``own data only``: a kernel predictor trained (``train --kind kernel``, LightGBM) on the same N kernels and 5
  whole models of the new device, without a source.

It writes ``results.json``, ``table.md`` and ``budget_accuracy.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spaceevo.datasets import LatencyStore
from spaceevo.predictors import latency_metrics, load_predictor, train_kernel_predictor, validate_models

KEYS = ("acc_10pct", "acc_5pct", "mape", "kendall_tau")


def measured_models(db: Path, statistic: str) -> dict[str, float]:
    """``{model name: ms}`` of the whole models in a validation store."""
    with LatencyStore(db) as st:
        rows = st.read_measurements(kind="model", status="ok")
    return {json.loads(c)["name"]: float(v) for c, v in zip(rows["config"], rows[statistic])}


def score(pred, models: Path, measured: dict[str, float]) -> dict:
    """``validate_models`` on stored timings: the metrics and the number of models scored."""
    out = validate_models(pred, models, measured=measured, progress=False)
    return {**{k: out[k] for k in KEYS}, "samples": out["samples"]}


def source_one_factor(source, adapted, adapt_rows, models: Path, measured: dict[str, float]) -> dict:
    """The source's model predictions times the geometric mean of measured / predicted over the adapted whole models."""
    whole = adapt_rows[adapt_rows["kind"] == "model"]
    names = set(adapted.manifest["adaptation"]["subnets"])
    pairs = [(float(v), source.predict_model(json.loads(c)["path"])["latency_ms"])
             for c, v in zip(whole["config"], whole[adapted.target]) if json.loads(c)["name"] in names]
    factor = float(np.exp(np.mean([np.log(y / p) for y, p in pairs])))
    out = validate_models(source, models, measured={k: v / factor for k, v in measured.items()}, progress=False)
    return {**{k: out[k] for k in KEYS}, "samples": out["samples"], "factor": factor}


def own_data_only(adapted, adapt_rows, models: Path, measured: dict[str, float]) -> dict:
    """A kernel predictor of the N kernels and the whole models the adaptation measured, without a source."""
    ad = adapted.manifest["adaptation"]
    keys = set(ad["units"])
    names = set(ad["subnets"])
    named = np.array([json.loads(c).get("name") in names for c in adapt_rows["config"]])
    rows = adapt_rows[((adapt_rows["kind"] == "kernel") & adapt_rows["key"].isin(keys)).to_numpy()
                      | ((adapt_rows["kind"] == "model").to_numpy() & named)]
    pred = train_kernel_predictor(rows, adapted.device, dtype=adapted.dtype, backend=adapted.backend,
                                  target=adapted.target, cv_folds=0)
    return score(pred, models, measured)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="folder with adapt.db, val.db, adaptedN.json.gz, adaptN.json")
    ap.add_argument("--models", type=Path, required=True, help="the validation zoo")
    ap.add_argument("--source", type=Path, required=True, help="the source kernel predictor")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt-issue15/kernels-ort-fp32"))
    args = ap.parse_args(argv)
    source = load_predictor(args.source)
    with LatencyStore(args.work / "adapt.db") as st:
        adapt_rows = st.read_measurements(status="ok")
    budgets = sorted(int(p.name[len("adapted"):-len(".json.gz")]) for p in args.work.glob("adapted*.json.gz"))
    results = []
    for n in budgets:
        adapted = load_predictor(args.work / f"adapted{n}.json.gz")
        measured = measured_models(args.work / "val.db", adapted.target)
        run = json.loads((args.work / f"adapt{n}.json").read_text())
        ad = adapted.manifest["adaptation"]
        row = {"budget": n, "kernels": ad["n_units"], "models": ad["n_subnets"], "candidates": ad["candidates"],
               "profile_seconds": run["profile_seconds"], "adapt_seconds": run["adapt_seconds"],
               "units_measured_now": ad["units_measured_now"], "method": ad["method"],
               "composition": adapted.composition.get("selected_by"),
               "adapted": score(adapted, args.models, measured),
               "source x 1 factor": source_one_factor(source, adapted, adapt_rows, args.models, measured),
               "own data only": own_data_only(adapted, adapt_rows, args.models, measured)}
        results.append(row)
        print(n, {k: row[k] for k in ("adapted", "source x 1 factor", "own data only")}, file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    lines = ["| N kernels (+ whole models) | profiling (s) | predictor | +-10% | +-5% | MAPE | Kendall tau |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for name in ("adapted", "source x 1 factor", "own data only"):
            m = r[name]
            lines.append(f"| {r['budget']} | {r['profile_seconds']:.0f} | {name} | {m['acc_10pct']:.0f}% | "
                         f"{m['acc_5pct']:.0f}% | {m['mape']:.2f}% | {m['kendall_tau']:.3f} |")
    last = load_predictor(args.work / f"adapted{budgets[-1]}.json.gz")
    text = (f"# Kernel predictor adapted to {last.backend} {last.dtype.upper()} (device {last.device}) from "
            f"{args.source.name} ({source.backend} {source.dtype.upper()}, device {source.device})\n\n"
            f"{results[0]['adapted']['samples']} validation models measured whole ({last.target}); candidates: "
            f"{results[0]['candidates']} distinct kernels of the training zoo; "
            f"{results[0]['models']} whole models measured per budget.\n\n" + "\n".join(lines) + "\n")
    (args.out / "table.md").write_text(text)
    plot(results, args.out / "budget_accuracy.png")
    print(text)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["budget"] for r in results]
    for name, style in (("adapted", "o-"), ("source x 1 factor", "s--"), ("own data only", "^:")):
        axes[0].plot(n, [r[name]["kendall_tau"] for r in results], style, label=name)
        axes[1].plot(n, [r[name]["acc_10pct"] for r in results], style, label=name)
    for ax, title, goal in zip(axes, ("Kendall tau", "within +-10% (%)"), (0.9, 95)):
        ax.set_xscale("log")
        ax.set_xticks(n, [str(x) for x in n])
        ax.set_xlabel("kernels measured on the new device (+ 5 whole models)")
        ax.set_title(title)
        ax.axhline(goal, color="k", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("kernel predictor adapted from ort INT8 to ort FP32: unseen zoo models")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
