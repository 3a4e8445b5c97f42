"""``spaceevo adapt`` end to end: sources, candidate units, profiling the chosen ones (resumable), fit, bundle.

The candidates are planned as ``spaceevo profile`` plans them: blocks (``space`` sampler: every block of a
search space or hyperspace at the resolutions) or kernels (``profile --models DIR``: the distinct kernels of
some ONNX models, whose whole models are the composition term's candidates). The choice of units depends
only on the sources, the candidates and the seed, so a rerun chooses the same units and the collector
(``latency.run_profile``) skips those already in the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ._adapt import (AdaptSource, adapt_predictor, check_source, kernel_unit_arrays, select_units,
                     source_log_predictions, unit_arrays)
from ._adapt_kernels import adapt_kernel_predictor, shared_kernel_types
from ._kernel_features import KERNEL_FEATURE_NAMES
from spaceevo.datasets import LatencyStore, load_fusion_rules
from spaceevo.latency import (MODEL_ROUNDS, ROUNDS, BlockUnit, SubnetUnit, check_dtype, create_backend, default_device,
                              get_sampler, list_backends, model_profile_units, random_subnets, run_profile)

from ._registry import describe_predictors, load_predictor
from ._target import check_target

MAX_COVER = 2000  # candidates of one type the unit choice looks at (a seeded subset beyond that)


def resolve_sources(names: Sequence[str] | None, dtype: str, unit_types: Sequence[str],
                    cross_dtype: bool = False, kind: str = "block") -> tuple[list[AdaptSource], dict[str, str]]:
    """Source predictors: ``names`` (registered names or paths, each must fit), else every installed one that fits.

    Returns the usable sources and, for the installed ones left out, why.

    Raises
    ------
    ValueError
        A named source of another dtype, of an unknown feature schema or lacking a unit type; no usable source.
    """
    skipped: dict[str, str] = {}
    if names:
        out = []
        for name in dict.fromkeys(names):
            src = AdaptSource(str(name), load_predictor(name))
            check_source(src, dtype, unit_types, cross_dtype, kind)
            out.append(src)
        return out, skipped
    out = []
    for row in describe_predictors():
        if "error" in row:
            skipped[row["name"]] = row["error"]
            continue
        try:
            if row.get("unit_kind", "block") != kind:
                skipped[row["name"]] = f"a {row.get('unit_kind', 'block')} predictor ({kind} units)"
                continue
            src = AdaptSource(row["name"], load_predictor(row["path"]))
            check_source(src, dtype, unit_types, cross_dtype, kind)
        except ValueError as exc:
            skipped[row["name"]] = str(exc)
            continue
        out.append(src)
    if not out:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no predictors installed"
        raise ValueError(f"no installed {kind} predictor can serve dtype={dtype!r} and the unit types "
                         f"{sorted(unit_types)} ({reasons}); name sources with --from (or pass --cross-dtype)")
    return out, skipped


def candidate_units(space: str, resolutions: Sequence[int] | None, kind: str = "block") -> list:
    """The units ``spaceevo profile --space SPACE --resolution R --kind KIND`` plans (every block of the space)."""

    if kind != "block":
        raise ValueError(f"kind={kind!r}: the candidates of a search space are blocks (kind='block'); kernel "
                         "candidates come from ONNX models (models=DIR)")
    return get_sampler("space")(space=space, resolutions=list(resolutions) if resolutions else None, kind=kind)


def _cover_subset(types: np.ndarray, seed: int) -> np.ndarray:
    """Indices of at most ``MAX_COVER`` candidates per type (all of small types), seeded."""
    rng = np.random.default_rng(seed)
    keep = []
    for t in sorted(set(types.tolist())):
        idx = np.nonzero(types == t)[0]
        keep.append(idx if len(idx) <= MAX_COVER else np.sort(rng.choice(idx, MAX_COVER, replace=False)))
    return np.sort(np.concatenate(keep))


def run_adapt(backend: str, dtype: str, budget: int, space: str | None, output: str | Path, db: str | Path,
              sources: Sequence[str] | None = None, subnets: int = 5, resolutions: Sequence[int] | None = None,
              kind: str = "block", device: str | None = None, seed: int = 0, strategy: str = "diverse",
              method: str = "auto", cross_dtype: bool = False, backend_opts: dict | None = None,
              rounds: int | None = None, progress: bool = True, target: str = "auto",
              models: str | Path | None = None) -> dict:
    """Adapt a predictor to the device of ``backend``: choose units, profile them into ``db``, fit, save ``output``.

    Parameters
    ----------
    backend, dtype : str
        The new device's collector backend (``ort``, ``tflite``, ``adb``) and dtype.
    budget : int
        Units to measure: blocks of ``space`` at ``resolutions``, or kernels of ``models`` (``kind='kernel'``).
    space : str or None
        A search space or hyperspace (the block candidates, as ``spaceevo profile`` plans them); None with
        ``models``.
    output, db : path
        The predictor bundle to write; the latency store the measurements go to (a rerun resumes).
    sources : sequence of str, optional
        Source predictors (names or paths); default every installed one that fits.
    subnets : int
        Random whole subnets of ``space`` (or models of ``models``) timed end to end for the composition term.
    resolutions, kind, device, seed : optional
        Candidate resolutions, unit kind, device id (default the backend's), seed of the choices.
    strategy, method : str
        Unit choice (``diverse`` | ``random``) and transfer fit (``auto`` or a method of ``ADAPT_METHODS``).
    cross_dtype : bool
        Allow sources of another dtype.
    backend_opts : dict, optional
        Options of the collector's backend (threads, repeats, warmup, reference, cores, ...).
    rounds : int, optional
        Rounds a unit (default the collector's ``ROUNDS`` for blocks, ``MODEL_ROUNDS`` for whole subnets).
    progress : bool
        Show the collector's progress bar.
    target : str
        Timing statistic the new predictor learns: ``auto`` (``norm_ms`` with the reference), ``min_ms``, ...
    models : path, optional
        ONNX models (a zoo folder, a folder of ``*.onnx``) whose distinct kernels are the candidates; implies
        ``kind='kernel'`` and a kernel predictor (sources must be kernel predictors).

    Returns
    -------
    dict
        JSON-ready summary: output, device, sources chosen and skipped, method, units, seconds.

    Raises
    ------
    ValueError
        Bad budget or subnets, unusable sources, an unknown or unavailable backend.
    """
    started = time.perf_counter()
    check_dtype(dtype)
    if target != "auto":
        check_target(target)
    if backend not in list_backends():
        raise ValueError(f"backend={backend!r} is not one of {list_backends()}")
    be = create_backend(backend, **(backend_opts or {}))
    try:
        be.require()
    except Exception as exc:  # not installed here, or no device: say why and what is usable
        usable = [b for b in list_backends() if b != backend and _available(b)]
        raise ValueError(f"backend={backend!r} is not available on this machine ({exc}); "
                         f"usable here: {usable}") from None
    if not isinstance(subnets, int) or subnets < 0:
        raise ValueError(f"subnets={subnets!r} must be an integer >= 0")
    if models is not None:
        kind = "kernel"
    if kind not in ("block", "kernel"):
        raise ValueError(f"kind={kind!r} is not one of ['block', 'kernel']")
    if kind == "kernel" and models is None:
        raise ValueError("kind='kernel' needs models=DIR (the ONNX models whose kernels are the candidates)")
    if kind == "block" and not space:
        raise ValueError("space is required for kind='block' (a search space or hyperspace)")
    dev = device or default_device(be)
    rules = None
    if kind == "kernel":
        if Path(db).is_file():
            with LatencyStore(db) as store:
                rules = load_fusion_rules(store, dev, backend, dtype)
        planned = model_profile_units(models, backend, dtype, rules, whole=True)
        units, model_units = planned["kernels"], planned["models"]
        types, X = kernel_unit_arrays([(u.type, u.config) for u in units])
        where = f"the distinct kernels of the {len(model_units)} models of {str(models)!r}"
    else:
        units = candidate_units(space, resolutions, kind)
        types, X = unit_arrays([u.block for u in units])
        where = f"{space} at {list(resolutions) if resolutions else 'its LUT resolutions'} (kind {kind})"
    if not isinstance(budget, int) or not 1 <= budget <= len(units):
        raise ValueError(f"budget={budget!r} must be between 1 and the {len(units)} candidate units of {where}")
    srcs, skipped = resolve_sources(sources, dtype, sorted(set(types.tolist())), cross_dtype, kind)
    if kind == "kernel":
        plan = [units[i] for i in _choose_kernels(srcs, types, X, budget, strategy, seed)]
        # seed + 1 as for subnets; the models are the composition term's, not those of a validation
        rng = np.random.default_rng(seed + 1)
        pick = sorted(rng.choice(len(model_units), size=min(subnets, len(model_units)), replace=False).tolist())
        whole = [model_units[i] for i in pick]
        plan += whole
    else:
        chosen_units = [units[i] for i in _choose_blocks(srcs, types, X, budget, strategy, seed)]
        plan = [BlockUnit(u.block) for u in chosen_units]
        # seed + 1: never the subnets 'spaceevo validate' draws by default (seed 0), which would leak into the check
        whole = random_subnets(space, subnets, resolutions, seed=seed + 1) if subnets else []
        plan += list(dict.fromkeys(SubnetUnit(str(sp), str(sn)) for sp, sn in whole))
    t0 = time.perf_counter()
    with LatencyStore(db) as store:
        summary = run_profile(plan, be, [dtype], db=store, device=dev, seed=seed, progress=progress,
                              rounds=ROUNDS if rounds is None else rounds,
                              model_rounds=MODEL_ROUNDS if rounds is None else rounds)
        rows = store.read_measurements(device=dev, dtype=dtype, status="ok")
        fps = store.fingerprints()
    profile_s = time.perf_counter() - t0
    rows = rows[rows["threads"] == be.threads]
    wanted = {(u.kind, u.key) for u in plan}
    rows = rows[[k in wanted for k in zip(rows["kind"], rows["key"])]].reset_index(drop=True)
    if not (rows["kind"] == kind).any():
        raise RuntimeError(f"none of the {budget} chosen units could be measured on {dev} (see the store's error "
                           f"column in {db})")
    fp_id = rows["fingerprint_id"].dropna().iloc[0] if rows["fingerprint_id"].notna().any() else None
    info = {"budget": int(budget), "subnets_planned": int(len(whole)), "candidates": int(len(units)),
            "space": space, "resolutions": list(resolutions) if resolutions else None, "kind": kind,
            "models": None if models is None else str(models),
            "strategy": strategy, "seed": int(seed), "backend": backend, "threads": int(be.threads),
            "profile_seconds": round(profile_s, 2), "units_measured_now": int(summary["measured"]),
            "units_reused": int(summary["skipped"]), "failed": int(summary["failed"])}
    fingerprint = fps.get(fp_id) if fp_id else None
    if kind == "kernel":
        pred = adapt_kernel_predictor(srcs, rows, device=dev, dtype=dtype, backend=backend, method=method,
                                      fingerprint=fingerprint, rules=rules, info=info, target=target)
    else:
        pred = adapt_predictor(srcs, rows, device=dev, dtype=dtype, method=method, fingerprint=fingerprint,
                               info=info, target=target)
    pred._manifest["adaptation"]["adapt_seconds"] = round(time.perf_counter() - started, 2)
    path = pred.save(output)
    ad = pred.manifest["adaptation"]
    return {"output": str(path), "kind": kind, "device": dev, "dtype": dtype, "db": str(db), "budget": int(budget),
            "subnets": ad["n_subnets"], "units": ad["n_units"], "failed": info["failed"],
            "sources": ad["sources"], "source_ranking": ad["source_ranking"], "skipped_sources": skipped,
            "method": ad["method"], "method_cv_log_rmse": ad["method_cv_log_rmse"],
            "profile_seconds": info["profile_seconds"], "fit_seconds": ad["fit_seconds"],
            "adapt_seconds": ad["adapt_seconds"], "composition": pred.composition,
            "unit_train": pred.manifest["metrics"]["unit_train"]}


def _choose_blocks(srcs: Sequence[AdaptSource], types: np.ndarray, X: np.ndarray, budget: int, strategy: str,
                   seed: int) -> np.ndarray:
    """Indices of the blocks to measure (a seeded subset of each large type is looked at)."""
    keep = _cover_subset(types, seed)
    S = source_log_predictions(srcs, types[keep], X[keep])
    return keep[select_units(types[keep], X[keep], S, budget, strategy, seed)]


def _choose_kernels(srcs: Sequence[AdaptSource], types: np.ndarray, X: np.ndarray, budget: int, strategy: str,
                    seed: int) -> np.ndarray:
    """Indices of the kernels to measure: among the types every source models (the fallback answers the others)
    unless there are fewer of those than the budget."""
    modelled = np.isin(types, sorted(shared_kernel_types(srcs)))
    pool = np.nonzero(modelled)[0] if modelled.sum() >= budget else np.arange(len(types))
    keep = pool[_cover_subset(types[pool], seed)]
    ok = modelled[keep]
    S = np.zeros((len(keep), len(srcs)))
    if ok.any():
        S[ok] = source_log_predictions(srcs, types[keep][ok], X[keep][ok])
        S[~ok] = np.median(S[ok], axis=0)
    return keep[select_units(types[keep], X[keep], S, budget, strategy, seed, KERNEL_FEATURE_NAMES)]


def _available(name: str) -> bool:
    try:
        return bool(create_backend(name).available())
    except Exception:  # a backend that cannot even be built is not usable
        return False
