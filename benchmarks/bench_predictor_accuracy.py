"""End to end on this CPU: profile a search space's blocks and whole training subnets, train, validate.

Run the stages (each resumable; measurements go into SQLite stores under ``--out``)::

    python benchmarks/bench_predictor_accuracy.py blocks --out /tmp/p4     # the blocks of SPACE at r160, random order
    python benchmarks/bench_predictor_accuracy.py models --out /tmp/p4 --train-models 24   # whole subnets, seed 100
    python benchmarks/bench_predictor_accuracy.py train --out /tmp/p4 --target norm_ms    # unit hold-out / k-fold
    spaceevo validate --predictor /tmp/p4/pred-lgbm.json.gz --space SPACE --samples 50 --backend ort \
        --dtype int8 --resolution 160 --db /tmp/p4/val.db --recheck 10 --json  # 50 other subnets, seed 0
    python benchmarks/bench_predictor_accuracy.py score --out /tmp/p4      # every trained predictor on val.db

Run the stages one after another (side by side they slow each other down); ``blocks`` measures in a
seeded random order, so stopping it early leaves a uniform sample of the space's blocks. Measurements
use the collector's protocol: interleaved rounds (``run_profile(rounds=...)``, each unit converted once,
then timed in ``--rounds`` short fresh sessions spread over the run) with the reference block timed
beside every sample (``--reference``, default on). On a shared machine whose speed changes from second
to second, the ratio to the reference is the steady statistic, so the default target is ``norm_ms``
(unit-level hold-out +-10% on 1,065 blocks: norm_ms 98.6%, median_ms 92.4%, min_ms 74.8%). The
training subnets (seed 100) are disjoint from the validation subnets (seed 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _measure(args, units: list, name: str, chunk: int = 200) -> dict:
    from spaceevo.datasets.store import LatencyStore
    from spaceevo.latency import run_profile
    from spaceevo.predictors._validate import make_backend

    be = make_backend("ort", rounds=args.rounds, reference=args.reference)
    t0 = time.time()
    with LatencyStore(Path(args.out) / f"{name}.db") as st:
        run_profile(units, be, ["int8"], db=st, rounds=args.rounds, chunk=chunk, progress=not args.quiet)
        df = st.read_measurements(status="ok")
    return {name: len(df), "median_within_cv": float(df["cv"].median()),
            "median_between_round_cv": float(df["round_cv"].median()), "seconds": time.time() - t0}


def _blocks(args) -> dict:
    from spaceevo.latency import BlockUnit
    from spaceevo.latency._samplers import space_block_configs

    units = [BlockUnit(c) for c in space_block_configs(args.space, [args.resolution])]
    # a seeded random order: stopped early, the blocks measured so far are a uniform sample of the space
    order = np.random.default_rng(args.seed).permutation(len(units))
    return _measure(args, [units[i] for i in order], "blocks", chunk=100)


def _models(args) -> dict:
    from spaceevo.latency import SubnetUnit
    from spaceevo.predictors._validate import sample_subnets

    subs = sample_subnets(args.space, args.train_models, seed=args.train_seed, resolution=args.resolution)
    return _measure(args, [SubnetUnit(args.space, str(s)) for s in subs], "models")


def _read(out: Path):
    import pandas as pd

    from spaceevo.datasets.store import LatencyStore

    frames = []
    for name in ("blocks.db", "models.db"):
        if (out / name).is_file():
            with LatencyStore(out / name) as st:
                frames.append(st.read_measurements(status="ok"))
    return pd.concat(frames, ignore_index=True)


def _train(args) -> dict:
    from spaceevo.predictors import train_predictor

    out = Path(args.out)
    df = _read(out)
    device = str(df["device"].iloc[0])
    res = {"device": device, "block_rows": int((df["kind"] == "block").sum()),
           "model_rows": int((df["kind"] == "model").sum()), "target": args.target}
    for est in args.estimators:
        t0 = time.time()
        p = train_predictor(df, device=device, estimator=est, cv_folds=5, seed=0, target=args.target,
                            source=str(out))
        p.save(out / f"pred-{est}.json.gz")
        m = p.manifest["metrics"]
        res[est] = {"unit_holdout": m.get("unit_holdout"), "unit_cv": m.get("unit_cv"),
                    "model_sum_train": m.get("model_sum"), "model_composed_loo": m.get("model_composed_loo"),
                    "composition": p.composition, "seconds": round(time.time() - t0, 1)}
    return res


def _score(args) -> dict:
    from spaceevo.datasets.store import LatencyStore
    from spaceevo.predictors import LatencyPredictor, with_target
    from spaceevo.predictors._validate import sample_subnets, validate_predictor

    out = Path(args.out)
    subs = sample_subnets(args.space, args.validate, seed=0, resolution=args.resolution)
    with LatencyStore(out / "val.db") as st:
        df = st.read_measurements(kind="model", status="ok")
    res = {}
    for est in args.estimators:
        p = LatencyPredictor.load(out / f"pred-{est}.json.gz")
        got = dict(zip(df["key"], with_target(df, p.target, p.reference_ms)[p.target]))
        measured = np.array([got[f"{args.space}/{s}"] for s in subs])
        v = validate_predictor(p, args.space, samples=len(subs), seed=0, resolution=args.resolution,
                               measured=measured)
        keys = ("acc_10pct", "acc_5pct", "mape", "kendall_tau")
        res[est] = {"with_composition": {k: v[k] for k in keys},
                    "without_composition": {k: v["without_composition"][k] for k in keys}}
    return res


def main() -> None:
    """Run one stage and print (and save) its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["blocks", "models", "train", "score"])
    ap.add_argument("--space", default="onnxw-151122-023231")
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--train-models", type=int, default=30)
    ap.add_argument("--train-seed", type=int, default=100)
    ap.add_argument("--validate", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--target", default="norm_ms", help="norm_ms (needs --reference), min_ms, median_ms")
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="time the reference block beside every sample (rows get a ratio)")
    ap.add_argument("--estimators", nargs="+", default=["lgbm", "lut", "rf"])
    ap.add_argument("--out", default="/tmp/spaceevo-predictor-accuracy")
    ap.add_argument("--seed", type=int, default=0, help="order of the blocks")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = {"blocks": _blocks, "models": _models, "train": _train, "score": _score}[args.stage](args)
    res["stage_wall_s"] = round(time.time() - t0, 1)
    text = json.dumps(res, indent=2, default=str)
    (Path(args.out) / f"{args.stage}.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
