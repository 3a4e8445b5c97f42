"""End-to-end checks: measure whole subnets with the collector's protocol and compare with predictions."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from spaceevo.space import BlockConfig, SearchSpace, Subnet

from ._bundle import LatencyPredictor
from ._metrics import latency_metrics

log = logging.getLogger(__name__)


def sample_subnets(space: SearchSpace | str, n: int, seed: int = 0, resolution: int | None = None) -> list[Subnet]:
    """``n`` random subnets of ``space``, all at ``resolution`` when given."""
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    subs = sp.sample(n, seed=seed)
    if resolution is not None:
        if resolution not in sp.hyperspace.resolutions:
            raise ValueError(f"resolution={resolution} is not in {sp.hyperspace.name} resolutions "
                             f"{list(sp.hyperspace.resolutions)}")
        subs = [dataclasses.replace(s, resolution=resolution) for s in subs]
    return subs


def subnet_block_configs(space: SearchSpace | str, subnets: Sequence[Subnet]) -> list[BlockConfig]:
    """The distinct block configs occurring in ``subnets`` (head included), in first-seen order."""
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    seen: dict[BlockConfig, None] = {}
    for s in subnets:
        for b in sp.blocks(s):
            seen.setdefault(b.config, None)
    return list(seen)


ROUND_REPEATS = 10  # timed samples per session in a round (each sample lasts >= the backend's min_sample_ms)
ROUND_WARMUP = 3


def make_backend(backend: str = "ort", threads: int = 1, repeats: int | None = None, rounds: int = 1, **opts):
    """The collector's timing backend ``backend`` (``spaceevo.latency``), checked to be usable here.

    With ``rounds > 1`` each round is one short session (``ROUND_WARMUP`` + ``ROUND_REPEATS`` runs unless
    ``repeats`` is given) and a round is not re-measured on a high CV: the other rounds take care of it.
    """
    from spaceevo.latency import get_backend

    if rounds > 1:
        opts.setdefault("warmup", ROUND_WARMUP)
        opts.setdefault("max_attempts", 1)
        repeats = repeats or ROUND_REPEATS
    if repeats is not None:
        opts["repeats"] = repeats
    be = get_backend(backend, threads=threads, **opts)
    be.require()
    return be


def _aggregate(rounds: list) -> "TimingStats":
    """One summary of several independent timing rounds (fresh sessions at different times) of a unit.

    ``median_ms``/``p90_ms``: medians over the rounds of each round's statistic; ``min_ms``: the fastest sample
    of all rounds (the least disturbed run); ``mean_ms``: mean of the rounds' means; ``std_ms`` and ``cv``:
    spread of the rounds' medians (the between-session noise).
    """
    from spaceevo.latency import TimingStats

    med = np.array([r.median_ms for r in rounds])
    mean = float(np.mean([r.mean_ms for r in rounds]))
    std = float(med.std())
    return TimingStats(median_ms=float(np.median(med)), mean_ms=mean, std_ms=std,
                       min_ms=float(np.min([r.min_ms for r in rounds])),
                       p90_ms=float(np.median([r.p90_ms for r in rounds])), cv=std / float(med.mean()),
                       n=int(sum(r.n for r in rounds)), attempts=len(rounds), loops=int(rounds[0].loops))


def measure_rounds(units: list, be, dtype: str = "int8", rounds: int = 7, seed: int = 0, store=None,
                   device: str | None = None, chunk: int = 200, progress: bool = True,
                   raw: dict | None = None) -> dict:
    """Time ``units`` in interleaved rounds: convert each once, then ``rounds`` passes in shuffled order.

    Each pass times every unit once with the backend's protocol (fresh session, warm-up, ``be.repeats``
    samples); a unit's result aggregates its passes (:func:`_aggregate`). On a shared machine the noise
    between sessions run at different times is far larger than the noise inside one session, so passes
    spread over time, not more repeats in one session, make a measurement repeatable. Units already in
    ``store`` are skipped; results are written per ``chunk`` of units (an interrupted run loses at most one).
    Returns ``{key: TimingStats}`` of the units measured now; ``raw`` (a dict) receives each unit's per-round
    ``[median_ms, min_ms]`` pairs.
    """
    from spaceevo.latency import default_device, fingerprint_id

    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    device = device or default_device(be)
    fp_id = None
    todo = list(dict.fromkeys(units))
    if store is not None:
        fp = {**be.fingerprint(dtype), "rounds": rounds}
        fp_id = store.add_fingerprint(fingerprint_id(fp), fp)
        done = store.done(device, dtype, be.threads, include_failed=False)
        todo = [u for u in todo if (u.kind, u.key) not in done]
    rng = np.random.default_rng(seed)
    out = {}
    steps = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    bar = None
    if progress and todo:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("measuring", total=len(todo) * (1 + rounds))
        bar.start()
    try:
        for part in steps:
            arts, errors = {}, {}
            for u in part:
                try:
                    arts[u] = be.prepare(u, dtype)
                except Exception as exc:  # recorded as failed; the run goes on
                    errors[u] = f"{type(exc).__name__}: {exc}".strip()[:2000]
                if bar:
                    bar.advance(task)
            times: dict = {u: [] for u in arts}
            for _r in range(rounds):
                for i in rng.permutation(len(part)):
                    u = part[i]
                    if u in arts:
                        try:
                            times[u].append(be.time_once(arts[u]))
                        except Exception as exc:
                            errors[u] = f"{type(exc).__name__}: {exc}".strip()[:2000]
                            del arts[u]
                    if bar:
                        bar.advance(task)
            for u in part:
                if u in errors:
                    log.warning("%s %s failed: %s", dtype, u.key, errors[u])
                    if store is not None:
                        store.add(u, device, be.name, dtype, be.threads, error=errors[u], fingerprint_id=fp_id,
                                  seed=be.seed)
                    continue
                stats = _aggregate(times[u])
                out[u.key] = stats
                if raw is not None:
                    raw[u.key] = [[r.median_ms, r.min_ms] for r in times[u]]
                if store is not None:
                    store.add(u, device, be.name, dtype, be.threads, stats=stats, fingerprint_id=fp_id, seed=be.seed)
    finally:
        if bar:
            bar.stop()
    return out


def _measure_units(units: list, be, dtype: str, db: str | Path | None, device: str | None,
                   progress: bool, rounds: int = 1) -> pd.DataFrame:
    """Measure ``units`` into ``db`` (a temporary store when None; reruns reuse rows): the store's rows.

    ``rounds == 1``: the collector's ``run_profile``; more: :func:`measure_rounds`.
    """
    from spaceevo.datasets.store import LatencyStore
    from spaceevo.latency import default_device, run_profile

    device = device or default_device(be)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(db) if db is not None else Path(tmp) / "measurements.db"
        with LatencyStore(path) as store:
            if rounds > 1:
                measure_rounds(units, be, dtype, rounds=rounds, seed=be.seed, store=store, device=device,
                               progress=progress)
            else:
                summary = run_profile(units, be, dtypes=[dtype], db=store, device=device, seed=be.seed,
                                      progress=progress)
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
                    rounds: int = 1) -> np.ndarray:
    """Latency (ms, the timing ``statistic``) of each whole subnet, built as one model and timed by the collector.

    With ``db`` the measurements go into that latency store (kind ``model``) and a rerun reuses them;
    ``rounds > 1`` times them in interleaved rounds (:func:`measure_rounds`).
    """
    from spaceevo.latency import SubnetUnit

    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    be = make_backend(backend, threads, repeats, rounds)
    units = [SubnetUnit(str(sp), str(sn)) for sn in subnets]
    df = _measure_units(list(dict.fromkeys(units)), be, dtype, db, device, progress, rounds)
    values = dict(zip(df["key"], df[statistic]))
    missing = [u.key for u in units if u.key not in values]
    if missing:
        raise RuntimeError(f"{len(missing)} subnets could not be measured, e.g. {missing[0]}")
    return np.array([float(values[u.key]) for u in units])


def remeasure_subnets(space: SearchSpace | str, subnets: Sequence[Subnet], backend: str = "ort", dtype: str = "int8",
                      threads: int = 1, repeats: int | None = None, statistic: str = "median_ms",
                      rounds: int = 1, seed: int = 1, progress: bool = True) -> np.ndarray:
    """Measure subnets again (converted again, fresh sessions), not stored: the repeatability check."""
    from spaceevo.latency import SubnetUnit

    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    be = make_backend(backend, threads, repeats, rounds)
    units = [SubnetUnit(str(sp), str(sn)) for sn in subnets]
    if rounds > 1:
        got = measure_rounds(units, be, dtype, rounds=rounds, seed=seed, progress=progress)
        return np.array([float(got[u.key][statistic]) for u in units])
    return np.array([float(be.measure(u, dtype)[statistic]) for u in units])


def profile_sample(space: SearchSpace | str, subnets: Sequence[Subnet], model_subnets: Sequence[Subnet] = (),
                   backend: str = "ort", dtype: str = "int8", threads: int = 1, repeats: int | None = None,
                   device: str | None = None, db: str | Path | None = None, progress: bool = True,
                   rounds: int = 1, blocks: Sequence[BlockConfig] | None = None) -> pd.DataFrame:
    """Measure the distinct blocks of ``subnets`` (and ``blocks``) and the whole ``model_subnets``: store rows."""
    from spaceevo.latency import BlockUnit, SubnetUnit

    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    be = make_backend(backend, threads, repeats, rounds)
    configs = list(dict.fromkeys([*subnet_block_configs(sp, subnets), *(blocks or [])]))
    units = [BlockUnit(c) for c in configs]
    units += list(dict.fromkeys(SubnetUnit(str(sp), str(sn)) for sn in model_subnets))
    return _measure_units(units, be, dtype, db, device, progress, rounds)


def _repeatability(first: np.ndarray, second: np.ndarray) -> dict:
    d = np.abs(second - first) / first
    return {"n": int(len(d)), "median_abs_rel_diff": float(np.median(d)) if len(d) else None,
            "max_abs_rel_diff": float(d.max()) if len(d) else None,
            "within_5pct": float(100 * np.mean(d <= 0.05)) if len(d) else None}


def validate_predictor(pred: LatencyPredictor, space: SearchSpace | str, samples: int = 50, backend: str = "ort",
                       dtype: str = "int8", seed: int = 0, threads: int = 1, resolution: int | None = None,
                       repeats: int | None = None, progress: bool = True, measured: np.ndarray | None = None,
                       db: str | Path | None = None, recheck: int = 0, rounds: int = 1) -> dict:
    """Sample subnets, measure them whole, and report model-level accuracy and Kendall tau (JSON-ready).

    Measured with the collector's protocol (``spaceevo.latency``), in the predictor's timing statistic
    (``pred.target``). ``db`` keeps the whole-subnet measurements in a latency store (a rerun, or another
    predictor, reuses them); ``measured`` (ms, in sample order) skips the measurement. ``recheck`` re-measures
    that many of the subnets in fresh sessions and reports the repeatability of the measurement itself.
    ``rounds > 1`` measures in interleaved rounds (:func:`measure_rounds`): steadier on a shared machine.
    """
    if samples < 2:
        raise ValueError(f"samples={samples} must be >= 2 (Kendall tau needs two subnets)")
    if recheck < 0 or recheck > samples:
        raise ValueError(f"recheck={recheck} must be between 0 and samples={samples}")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    subs = sample_subnets(sp, samples, seed=seed, resolution=resolution)
    predicted = pred.predict_subnets(sp, subs)
    sums = pred.table(sp).sum_subnets(subs)
    statistic = pred.target
    if measured is None:
        measured = measure_subnets(sp, subs, backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                                   statistic=statistic, db=db, progress=progress, rounds=rounds)
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
           "composition": pred.composition, "rows": rows}
    if recheck:
        again = remeasure_subnets(sp, subs[:recheck], backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                                  statistic=statistic, rounds=rounds, seed=seed + 1, progress=progress)
        out["repeatability"] = _repeatability(measured[:recheck], again)
        for row, v in zip(rows, again):
            row["remeasured_ms"] = float(v)
    return out
