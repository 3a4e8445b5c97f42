"""The main job on the local CPU: profile it in INT8, train its latency predictor, predict and check subnets.

This is what ``spaceevo quickstart`` runs. It ties the layers together in the order data flows:
``space`` (sample subnets) -> ``latency`` (time blocks and whole subnets with onnxruntime INT8) ->
``datasets`` (a resumable SQLite store) -> ``predictors`` (train, save, predict). Killing it loses at
most the unit being timed; rerunning it resumes from the store.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spaceevo.datasets import LatencyStore
from spaceevo.latency import (MODEL_ROUNDS, ROUND_REPEATS, ROUND_WARMUP, ROUNDS, SubnetUnit, create_backend,
                              default_device, run_profile, subnet_units)
from spaceevo.predictors import (install_predictor, latency_metrics, load_predictor, spaceevo_home, train_predictor,
                                 with_target)
from spaceevo.space import EXAMPLE_SPACE, EXAMPLE_SUBNET, published_subnets  # noqa: F401  (re-exported)
from spaceevo.space import SearchSpace, get_hyperspace, list_hyperspaces


def default_workdir() -> Path:
    """``$SPACEEVO_HOME/quickstart`` (default ``~/.cache/spaceevo/quickstart``)."""
    return spaceevo_home() / "quickstart"


def _hyperspaces() -> list[dict]:
    out = []
    for name in list_hyperspaces():
        h = get_hyperspace(name)
        out.append({"hyperspace": h.name, "device": h.device, "n_search_spaces": h.size,
                    "stages": len(h.all_stages), "block_types": len(h.block_choices),
                    "resolutions": list(h.resolutions)})
    return out


def run_quickstart(workdir: str | Path | None = None, space: str = EXAMPLE_SPACE, resolution: int = 160,
                   train_subnets: int = 8, test_subnets: int = 5, repeats: int = ROUND_REPEATS, rounds: int = ROUNDS,
                   seed: int = 0, published: str | Path | None = None, progress: bool = True,
                   model_rounds: int = MODEL_ROUNDS, target: str = "min_ms",
                   log: Callable[[str], Any] = print) -> dict:
    """Profile this CPU (ort, INT8, 1 thread), train an LightGBM predictor, and check it on unseen subnets.

    Blocks of ``train_subnets + test_subnets`` random subnets and the whole ``train_subnets`` are timed;
    the whole ``test_subnets`` are timed only to score the predictor (they never enter training). Blocks get
    ``rounds`` sessions each, whole subnets ``model_rounds``. The predictor learns ``target``: by default
    ``min_ms``, each unit's fastest sample over its spread sessions (on this shared VM the one whole-model
    statistic that repeats from run to run; README, "Numbers that repeat"), or ``norm_ms``.
    """
    if train_subnets < 2 or test_subnets < 2:
        raise ValueError(f"train_subnets={train_subnets}, test_subnets={test_subnets}: each must be >= 2")
    if repeats < 5:
        raise ValueError(f"repeats={repeats} must be >= 5")
    if target not in ("min_ms", "norm_ms"):
        raise ValueError(f"target={target!r} is not one of ['min_ms', 'norm_ms']")
    if rounds < 1 or model_rounds < 1:
        raise ValueError(f"rounds={rounds}, model_rounds={model_rounds}: each must be >= 1")
    sp = SearchSpace.parse(space)
    if resolution not in sp.hyperspace.resolutions:
        raise ValueError(f"resolution={resolution} is not in {sp.hyperspace.name} resolutions "
                         f"{list(sp.hyperspace.resolutions)}")
    if sp.hyperspace.name != "onnxw":
        raise ValueError(f"space={space!r}: the quick start profiles onnxruntime on this CPU, so it takes an onnxw "
                         "space (mobilew is the Pixel 4 / TFLite hyperspace)")
    work = Path(workdir) if workdir else default_workdir()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"workdir": str(work), "space": str(sp), "resolution": resolution, "target": target,
                              "hyperspaces": _hyperspaces()}
    for h in report["hyperspaces"]:
        log(f"hyperspace {h['hyperspace']} ({h['device']}): {h['n_search_spaces']:,} search spaces, "
            f"{h['stages']} stages, {h['block_types']} block types, resolutions {h['resolutions']}")

    def at_res(subs):
        return [dataclasses.replace(s, resolution=resolution) for s in subs]

    train = at_res(sp.sample(train_subnets, seed=seed))
    test = at_res(sp.sample(test_subnets, seed=seed + 10_000))
    pub = published_subnets(published, hyperspace="onnxw")
    units = subnet_units([(sp, s) for s in train], [(sp, s) for s in test] + [(i["space"], i["subnet"]) for i in pub])
    n_blocks = sum(u.kind == "block" for u in units)
    backend = create_backend("ort", threads=1, repeats=repeats, warmup=ROUND_WARMUP, seed=seed, reference=True)
    device = default_device(backend)
    db = work / "latency.db"
    log(f"1/3 profiling {n_blocks} blocks (of {len(train) + len(test)} random subnets of {sp} at r{resolution} "
        f"and {len(pub)} published ones) and {len(train)} whole subnets on {device} (onnxruntime INT8, 1 thread) "
        f"-> {db}")
    with LatencyStore(db) as store:
        prof = run_profile(units, backend, ["int8"], db=store, device=device, seed=seed, progress=progress,
                           rounds=rounds, model_rounds=model_rounds)
        test_units = [SubnetUnit(str(sp), str(s)) for s in test]
        test_prof = run_profile(test_units, backend, ["int8"], db=store, device=f"{device}-heldout", seed=seed,
                                progress=progress, rounds=model_rounds)
        train_df = store.read_measurements(device=device, dtype="int8")
        test_df = store.read_measurements(device=f"{device}-heldout", dtype="int8", kind="model")
        fingerprints = sorted(set(train_df["fingerprint_id"].dropna().astype(str)))
    report["profile"] = {k: prof[k] for k in ("device", "units", "measured", "skipped", "ok", "failed", "median_cv",
                                               "seconds")}
    report["profile"]["heldout_subnets_seconds"] = test_prof["seconds"]

    log(f"2/3 training a LightGBM predictor on {len(train_df)} measurements")
    pred = train_predictor(train_df, device=device, dtype="int8", estimator="lgbm",
                           fingerprint={"fingerprint_ids": fingerprints}, source=str(db), cv_folds=0, seed=seed,
                           target=target)
    name = f"{device}-int8"
    path = install_predictor(pred, name)
    report["predictor"] = {"name": name, "path": str(path), "composition": pred.manifest.get("composition")}

    test_df = with_target(test_df, target, pred.reference_ms)  # the statistic the predictor learned
    measured = {row["key"].split("/", 1)[1]: float(row[target]) for _, row in test_df.iterrows()}
    test_ok = [s for s in test if str(s) in measured]
    predicted = pred.predict_subnets(sp, test_ok)
    y = np.array([measured[str(s)] for s in test_ok])
    metrics = latency_metrics(y, predicted) if len(test_ok) >= 2 else None
    report["heldout"] = {"subnets": [{"subnet": str(s), "measured_ms": float(m), "predicted_ms": float(p),
                                      "rel_error": float((p - m) / m)} for s, m, p in zip(test_ok, y, predicted)],
                         "metrics": metrics}
    log(f"3/3 predicting: {len(test_ok)} unseen subnets measured whole vs predicted by {name}")

    vnni = load_predictor("vnni-ort-int8")
    rows = []
    for item in pub:
        info = pred.predict_subnet(item["space"], item["subnet"])
        rows.append({"name": item["name"], "space": item["space"], "subnet": item["subnet"],
                     "this_cpu_ms": float(info["latency_ms"]),
                     "vnni_paper_cpu_ms": float(vnni.predict_subnets(item["space"], [item["subnet"]])[0])})
    report["published"] = rows
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
