"""End-to-end checks: measure whole subnets with the collector's protocol and compare with predictions."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from spaceevo.datasets import LatencyStore
from spaceevo.latency import (ROUND_REPEATS, ROUND_WARMUP, BlockUnit, SubnetUnit, create_backend, default_device,
                              run_profile)
from spaceevo.space import BlockConfig, SearchSpace, Subnet, as_search_space

from ._bundle import LatencyPredictor
from ._metrics import latency_metrics
from ._target import uses_reference, with_target

log = logging.getLogger(__name__)


def sample_subnets(space: SearchSpace | str, n: int, seed: int = 0, resolution: int | None = None) -> list[Subnet]:
    """``n`` random subnets of ``space``, all at ``resolution`` when given.

    Parameters
    ----------
    space : SearchSpace or str
    n : int
    seed : int
    resolution : int, optional

    Returns
    -------
    list of Subnet
    """
    sp = as_search_space(space)
    subs = sp.sample(n, seed=seed)
    if resolution is not None:
        if resolution not in sp.hyperspace.resolutions:
            raise ValueError(f"resolution={resolution} is not in {sp.hyperspace.name} resolutions "
                             f"{list(sp.hyperspace.resolutions)}")
        subs = [dataclasses.replace(s, resolution=resolution) for s in subs]
    return subs


def subnet_block_configs(space: SearchSpace | str, subnets: Sequence[Subnet]) -> list[BlockConfig]:
    """The distinct block configs occurring in ``subnets`` (head included), in first-seen order."""
    sp = as_search_space(space)
    seen: dict[BlockConfig, None] = {}
    for s in subnets:
        for b in sp.blocks(s):
            seen.setdefault(b.config, None)
    return list(seen)


def make_backend(backend: str = "ort", threads: int = 1, repeats: int | None = None, rounds: int = 1,
                 reference: bool = False, **opts):
    """The collector's timing backend ``backend`` (``spaceevo.latency``), checked to be usable here.

    With ``rounds > 1`` each round is one short session: the collector's ``ROUND_WARMUP`` + ``ROUND_REPEATS``
    runs unless ``repeats`` is given. ``reference`` times the reference block beside every sample (``ratio``).
    """
    if reference:
        opts["reference"] = True
    if rounds > 1:
        opts.setdefault("warmup", ROUND_WARMUP)
        repeats = repeats or ROUND_REPEATS
    if repeats is not None:
        opts["repeats"] = repeats
    be = create_backend(backend, threads=threads, **opts)
    be.require()
    return be


def _measure_units(units: list, be, dtype: str, db: str | Path | None, device: str | None,
                   progress: bool, rounds: int = 1, seed: int | None = None,
                   model_rounds: int | None = None) -> pd.DataFrame:
    """Measure ``units`` into ``db`` (a temporary store when None; reruns reuse rows): the store's rows.

    The collector's ``run_profile`` does the work; ``rounds > 1`` spreads each unit's sessions over the run.
    """
    device = device or default_device(be)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(db) if db is not None else Path(tmp) / "measurements.db"
        with LatencyStore(path) as store:
            summary = run_profile(units, be, dtypes=[dtype], db=store, device=device,
                                  seed=be.seed if seed is None else seed, progress=progress, rounds=rounds,
                                  model_rounds=model_rounds)
            if summary["failed"]:
                log.warning("%d of %d units failed to measure (see the store's error column)",
                            summary["failed"], len(units))
            df = store.read_measurements(device=device, dtype=dtype, status="ok")
    df = df[df["threads"] == be.threads]
    keys = {(u.kind, u.key) for u in units}
    return df[[k in keys for k in zip(df["kind"], df["key"])]].reset_index(drop=True)


def measure_subnets(space: SearchSpace | str, subnets: Sequence[Subnet], backend: str = "ort", dtype: str = "int8",
                    threads: int = 1, repeats: int | None = None, statistic: str = "median_ms",
                    db: str | Path | None = None, device: str | None = None, progress: bool = True,
                    rounds: int = 1, reference: float | None = None) -> np.ndarray:
    """Latency (ms, the timing ``statistic``) of each whole subnet, built as one model and timed by the collector.

    With ``db`` the measurements go into that latency store (kind ``model``) and a rerun reuses them;
    ``rounds > 1`` times them in interleaved rounds (the collector's ``run_profile``). ``statistic='norm_ms'``
    times the reference block beside every sample and scales the ratio by ``reference`` (ms).

    Parameters
    ----------
    space : SearchSpace or str
    subnets : sequence of Subnet
    backend : str
    dtype : str
    threads : int
    repeats : int, optional
    statistic : str
        One of ``TARGETS``.
    db : str or Path, optional
    device : str, optional
    progress : bool
    rounds : int
    reference : float, optional

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    RuntimeError
        A subnet could not be measured.
    """
    sp = as_search_space(space)
    be = make_backend(backend, threads, repeats, rounds, reference=uses_reference(statistic))
    units = [SubnetUnit(str(sp), str(sn)) for sn in subnets]
    df = with_target(_measure_units(list(dict.fromkeys(units)), be, dtype, db, device, progress, rounds),
                     statistic, reference)
    values = dict(zip(df["key"], df[statistic]))
    missing = [u.key for u in units if u.key not in values]
    if missing:
        raise RuntimeError(f"{len(missing)} subnets could not be measured, e.g. {missing[0]}")
    return np.array([float(values[u.key]) for u in units])


def remeasure_subnets(space: SearchSpace | str, subnets: Sequence[Subnet], backend: str = "ort", dtype: str = "int8",
                      threads: int = 1, repeats: int | None = None, statistic: str = "median_ms",
                      rounds: int = 1, seed: int = 1, progress: bool = True,
                      reference: float | None = None) -> np.ndarray:
    """Measure subnets again (converted again, fresh sessions), not stored: the repeatability check.

    Parameters
    ----------
    space : SearchSpace or str
    subnets : sequence of Subnet
    backend : str
    dtype : str
    threads : int
    repeats : int, optional
    statistic : str
    rounds : int
    seed : int
    progress : bool
    reference : float, optional

    Returns
    -------
    numpy.ndarray
    """
    sp = as_search_space(space)
    be = make_backend(backend, threads, repeats, rounds, reference=uses_reference(statistic))
    units = list(dict.fromkeys(SubnetUnit(str(sp), str(sn)) for sn in subnets))
    df = with_target(_measure_units(units, be, dtype, None, None, progress, rounds, seed=seed), statistic, reference)
    values = dict(zip(df["key"], df[statistic]))
    return np.array([float(values[SubnetUnit(str(sp), str(sn)).key]) for sn in subnets])


def profile_sample(space: SearchSpace | str, subnets: Sequence[Subnet], model_subnets: Sequence[Subnet] = (),
                   backend: str = "ort", dtype: str = "int8", threads: int = 1, repeats: int | None = None,
                   device: str | None = None, db: str | Path | None = None, progress: bool = True,
                   rounds: int = 1, blocks: Sequence[BlockConfig] | None = None,
                   reference: bool = False, model_rounds: int | None = None) -> pd.DataFrame:
    """Measure the distinct blocks of ``subnets`` (and ``blocks``) and the whole ``model_subnets``: store rows.

    Parameters
    ----------
    space : SearchSpace or str
    subnets : sequence of Subnet
    model_subnets : sequence of Subnet
    backend : str
    dtype : str
    threads : int
    repeats : int, optional
    device : str, optional
    db : str or Path, optional
    progress : bool
    rounds : int
    blocks : sequence of BlockConfig, optional
    reference : bool
        Time the reference block beside every sample.
    model_rounds : int, optional
        Sessions per whole subnet (default ``rounds``).

    Returns
    -------
    pandas.DataFrame
    """
    sp = as_search_space(space)
    be = make_backend(backend, threads, repeats, rounds, reference=reference)
    configs = list(dict.fromkeys([*subnet_block_configs(sp, subnets), *(blocks or [])]))
    units = [BlockUnit(c) for c in configs]
    units += list(dict.fromkeys(SubnetUnit(str(sp), str(sn)) for sn in model_subnets))
    return _measure_units(units, be, dtype, db, device, progress, rounds, model_rounds=model_rounds)


def _repeatability(first: np.ndarray, second: np.ndarray, errors: np.ndarray | None = None) -> dict:
    """How far two timings of the same networks agree; with ``errors`` (relative prediction errors), whether the
    prediction error is within that noise (median |error| no larger than the median |difference|).

    ``within_10pct`` and ``kendall_tau`` score the second timing as a prediction of the first: the most a perfect
    predictor could score against one measurement of these networks (``kendall_tau`` None below two)."""
    signed = (second - first) / first
    d = np.abs(signed)
    agree = latency_metrics(first, second)
    tau = agree["kendall_tau"]
    out = {"n": int(len(d)), "median_abs_rel_diff": float(np.median(d)) if len(d) else None,
           "max_abs_rel_diff": float(d.max()) if len(d) else None,
           "median_rel_diff": float(np.median(signed)) if len(d) else None,
           "within_5pct": agree["acc_5pct"] if len(d) else None,
           "within_10pct": agree["acc_10pct"] if len(d) else None,
           "kendall_tau": None if np.isnan(tau) else tau}
    if errors is not None and len(d) and len(errors):
        err = float(np.median(np.abs(errors)))
        out["median_abs_error"] = err
        out["error_within_noise"] = bool(err <= out["median_abs_rel_diff"])
    return out


def validate_predictor(pred: LatencyPredictor, space: SearchSpace | str, samples: int = 50, backend: str = "ort",
                       dtype: str = "int8", seed: int = 0, threads: int = 1, resolution: int | None = None,
                       repeats: int | None = None, progress: bool = True, measured: np.ndarray | None = None,
                       db: str | Path | None = None, recheck: int = 0, rounds: int = 1) -> dict:
    """Sample subnets, measure them whole, and report model-level accuracy and Kendall tau (JSON-ready).

    Measured with the collector's protocol (``spaceevo.latency``), in the predictor's timing statistic
    (``pred.target``). ``db`` keeps the whole-subnet measurements in a latency store (a rerun, or another
    predictor, reuses them); ``measured`` (ms, in sample order) skips the measurement. ``recheck`` re-measures
    that many of the subnets in fresh sessions and reports the repeatability of the measurement itself.
    ``rounds > 1`` measures in interleaved rounds (the collector's ``run_profile``): steadier on a shared machine.

    Parameters
    ----------
    pred : LatencyPredictor
    space : SearchSpace or str
    samples : int
        Random subnets (>= 2).
    backend, dtype : str
    seed : int
    threads : int
    resolution : int, optional
    repeats : int, optional
    progress : bool
    measured : numpy.ndarray, optional
    db : str or Path, optional
    recheck : int
    rounds : int

    Returns
    -------
    dict
        Accuracy with and without the composition term, Kendall tau, per-subnet values (and repeatability).

    Raises
    ------
    ValueError
        ``samples`` < 2, ``recheck`` out of range, or ``measured`` of the wrong length.
    """
    if samples < 2:
        raise ValueError(f"samples={samples} must be >= 2 (Kendall tau needs two subnets)")
    if recheck < 0 or recheck > samples:
        raise ValueError(f"recheck={recheck} must be between 0 and samples={samples}")
    sp = as_search_space(space)
    subs = sample_subnets(sp, samples, seed=seed, resolution=resolution)
    predicted = pred.predict_subnets(sp, subs)
    sums = pred.table(sp).sum_subnets(subs)
    statistic = pred.target
    if measured is None:
        measured = measure_subnets(sp, subs, backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                                   statistic=statistic, db=db, progress=progress, rounds=rounds,
                                   reference=pred.reference_ms)
    measured = np.asarray(measured, dtype=np.float64)
    if len(measured) != samples:
        raise ValueError(f"measured has {len(measured)} values for samples={samples}")
    m = latency_metrics(measured, predicted)
    raw = latency_metrics(measured, sums)
    rows = [{"subnet": str(s), "measured_ms": float(y), "predicted_ms": float(p), "blocks_sum_ms": float(b),
             "rel_error": float((p - y) / y)} for s, y, p, b in zip(subs, measured, predicted, sums)]
    out = {"space": str(sp), "predictor_device": pred.device, "backend": backend, "dtype": dtype,
           "threads": threads, "resolution": resolution, "seed": seed, "samples": samples, "statistic": statistic,
           "rounds": rounds,
           "acc_10pct": m["acc_10pct"], "acc_5pct": m["acc_5pct"], "mape": m["mape"], "rmse_ms": m["rmse_ms"],
           "kendall_tau": m["kendall_tau"], "with_composition": m, "without_composition": raw,
           "composition": pred.composition, "predictor_warnings": pred.warnings, "rows": rows}
    if recheck:
        again = remeasure_subnets(sp, subs[:recheck], backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                                  statistic=statistic, rounds=rounds, seed=seed + 1, progress=progress,
                                  reference=pred.reference_ms)
        out["repeatability"] = _repeatability(measured[:recheck], again, (predicted - measured) / measured)
        for row, v in zip(rows, again):
            row["remeasured_ms"] = float(v)
    return out
