"""End to end on this CPU: profile blocks and whole subnets, train predictors, validate on whole subnets.

Run: ``python benchmarks/bench_predictor_accuracy.py [--out DIR] [--validate 50] [--train-models 20]``.
Sample ``--validate`` onnxw subnets at r160 (seed 0, as ``spaceevo validate --seed 0 --resolution 160``)
and ``--train-models`` other ones (seed 100); profile the distinct blocks of both samples (the LUT of
this part of the space) and the whole training subnets (for the composition term); then report
unit-level k-fold accuracy and model-level accuracy on the validation subnets, measured whole:
- ``lut``: measured block latencies (the space's LUT) + composition term;
- ``lgbm`` / ``rf``: models trained on the training subnets' blocks only (validation blocks unseen).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    """Profile, train, validate, print a table and write JSON."""
    from spaceevo.predictors import cross_validate_units, train_predictor
    from spaceevo.predictors._validate import measure_subnets, profile_sample, sample_subnets, subnet_block_configs
    from spaceevo.predictors._validate import validate_predictor
    from spaceevo.space import SearchSpace

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="onnxw-151122-023231")
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--validate", type=int, default=50)
    ap.add_argument("--train-models", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=200, help="timed runs per unit (whole subnets and blocks)")
    ap.add_argument("--out", default="bench_predictor_accuracy")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sp = SearchSpace.parse(args.space)
    val = sample_subnets(sp, args.validate, seed=0, resolution=args.resolution)
    train = sample_subnets(sp, args.train_models, seed=100, resolution=args.resolution)

    t0 = time.time()
    csv = out / "measurements.csv"
    vcsv = out / "validation_measured.json"
    if csv.is_file():
        df = pd.read_csv(csv)
        measured = np.array(json.loads(vcsv.read_text()))
    else:
        df = profile_sample(sp, list(train) + list(val), repeats=args.repeats)
        # whole subnets: training (composition) and validation ones interleaved in one pass, so that
        # slow drifts of this shared machine hit both alike
        order = [("t", i) for i in range(len(train))] + [("v", i) for i in range(len(val))]
        order = [order[i] for i in np.random.default_rng(0).permutation(len(order))]
        lat = measure_subnets(sp, [train[i] if k == "t" else val[i] for k, i in order], repeats=args.repeats)
        t_lat = {i: v for (k, i), v in zip(order, lat) if k == "t"}
        measured = np.array([v for _i, v in sorted((i, v) for (k, i), v in zip(order, lat) if k == "v")])
        rows = [{"kind": "model", "type": "subnet", "config": json.dumps({"space": str(sp), "subnet": str(s)}),
                 "key": f"{sp}/{s}", "device": df["device"].iloc[0], "backend": "ort", "dtype": "int8",
                 "threads": 1, "status": "ok", "median_ms": t_lat[i]} for i, s in enumerate(train)]
        df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
        df.to_csv(csv, index=False)
        vcsv.write_text(json.dumps(measured.tolist()))
    t_all = time.time() - t0
    t_profile = t_all
    device = df["device"].iloc[0]
    train_keys = {c.to_string() for c in subnet_block_configs(sp, train)}
    train_df = df[(df["kind"] == "model") | df["key"].isin(train_keys)]
    n_blocks = int((df["kind"] == "block").sum())

    results = {"space": str(sp), "resolution": args.resolution, "device": device, "block_rows": n_blocks,
               "train_block_rows": int((train_df["kind"] == "block").sum()), "model_rows": int((df["kind"] == "model").sum()),
               "validation_subnets": len(val), "profile_s": round(t_profile, 1), "total_measure_s": round(t_all, 1)}
    for est in ("lgbm", "rf"):
        cv = cross_validate_units(df, estimator=est, folds=5, seed=0)
        results[f"unit_cv_{est}"] = cv["overall"]
    preds = {"lut": train_predictor(df, device=device, estimator="lut", cv_folds=0),
             "lgbm": train_predictor(train_df, device=device, estimator="lgbm", cv_folds=0),
             "rf": train_predictor(train_df, device=device, estimator="rf", cv_folds=0)}
    for name, p in preds.items():
        p.save(out / f"pred-{name}.json.gz")
        v = validate_predictor(p, sp, samples=len(val), seed=0, resolution=args.resolution, measured=measured)
        results[f"model_{name}"] = {k: v[k] for k in ("acc_10pct", "acc_5pct", "mape", "kendall_tau")}
        results[f"model_{name}_without_composition"] = {k: v["without_composition"][k]
                                                         for k in ("acc_10pct", "acc_5pct", "mape", "kendall_tau")}
        results[f"composition_{name}"] = p.composition
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
