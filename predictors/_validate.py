"""End-to-end checks: measure whole subnets with the collector's protocol and compare with predictions."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

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


def _collector():
    """The collector's ``(get_backend, BlockUnit, SubnetUnit)``, or None where this checkout lacks them."""
    try:
        from spaceevo.latency import BlockUnit, SubnetUnit, get_backend
    except ImportError:
        return None
    return get_backend, BlockUnit, SubnetUnit


def make_timer(backend: str = "ort", dtype: str = "int8", threads: int = 1, repeats: int | None = None):
    """A function ``(BlockConfig | (space, Subnet)) -> stats dict`` timing one unit with the collector's protocol.

    Uses ``spaceevo.latency``'s backend; where that is not installed, falls back to the built-in minimal
    onnxruntime INT8 timer (``_ort_measure``) for ``ort``/``int8``.
    """
    col = _collector()
    if col is not None:
        get_backend, BlockUnit, SubnetUnit = col
        opts = {"threads": threads}
        if repeats is not None:
            opts["repeats"] = repeats
        be = get_backend(backend, **opts)
        if not be.available():
            raise ValueError(f"backend={backend!r} is not available on this machine")

        def timer(item):
            unit = BlockUnit(item) if isinstance(item, BlockConfig) else SubnetUnit(str(item[0]), str(item[1]))
            return be.measure(unit, dtype).as_dict()
        return timer
    if backend != "ort" or dtype != "int8":
        raise ValueError(f"backend={backend!r} dtype={dtype!r} needs spaceevo.latency (the collector), which is "
                         "not installed here; only ort/int8 has a built-in fallback")
    from spaceevo.space import block_to_onnx, subnet_to_onnx

    from ._ort_measure import measure_int8

    log.warning("spaceevo.latency not available: timing with the built-in onnxruntime INT8 fallback")

    def fallback(item):
        model = block_to_onnx(item) if isinstance(item, BlockConfig) else subnet_to_onnx(item[0], item[1])
        return measure_int8(model, threads=threads, repeats=repeats or 50)
    return fallback


def _track(items, description: str, progress: bool):
    if not progress:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


def measure_subnets(space: SearchSpace | str, subnets: Sequence[Subnet], backend: str = "ort", dtype: str = "int8",
                    threads: int = 1, repeats: int | None = None, progress: bool = True) -> np.ndarray:
    """Median latency (ms) of each whole subnet, built as one model and timed with the collector's protocol."""
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    timer = make_timer(backend, dtype, threads, repeats)
    out = np.zeros(len(subnets))
    for i, sn in _track(list(enumerate(subnets)), "measuring subnets", progress):
        out[i] = timer((sp, sn))["median_ms"]
    return out


def profile_sample(space: SearchSpace | str, subnets: Sequence[Subnet], model_subnets: Sequence[Subnet] = (),
                   backend: str = "ort", dtype: str = "int8", threads: int = 1, repeats: int | None = None,
                   device: str | None = None, progress: bool = True):
    """Measure the distinct blocks of ``subnets`` and the whole ``model_subnets``: rows in the store's format."""
    import json
    import time

    import pandas as pd

    from ._ort_measure import cpu_slug

    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    device = device or f"{backend}-{cpu_slug()}"
    timer = make_timer(backend, dtype, threads, repeats)
    rows = []
    base = {"device": device, "backend": backend, "dtype": dtype, "threads": threads, "status": "ok", "error": None}
    for cfg in _track(subnet_block_configs(sp, subnets), "profiling blocks", progress):
        stats = timer(cfg)
        rows.append({"kind": "block", **cfg.as_dict(), "config": json.dumps(cfg.as_dict()), "key": cfg.to_string(),
                     **base, **stats, "created_at": time.time()})
    for sn in _track(list(model_subnets), "profiling whole subnets", progress):
        stats = timer((sp, sn))
        rows.append({"kind": "model", "type": "subnet", "config": json.dumps({"space": str(sp), "subnet": str(sn)}),
                     "key": f"{sp}/{sn}", **base, **stats, "created_at": time.time()})
    return pd.DataFrame(rows)


def validate_predictor(pred: LatencyPredictor, space: SearchSpace | str, samples: int = 50, backend: str = "ort",
                       dtype: str = "int8", seed: int = 0, threads: int = 1, resolution: int | None = None,
                       repeats: int | None = None, progress: bool = True, measured: np.ndarray | None = None) -> dict:
    """Sample subnets, measure them whole, and report model-level accuracy and Kendall tau (JSON-ready).

    ``measured`` (ms, in sample order) skips the measurement, to score several predictors on one run.
    """
    if samples < 2:
        raise ValueError(f"samples={samples} must be >= 2 (Kendall tau needs two subnets)")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    subs = sample_subnets(sp, samples, seed=seed, resolution=resolution)
    predicted = pred.predict_subnets(sp, subs)
    sums = pred.table(sp).sum_subnets(subs)
    if measured is None:
        measured = measure_subnets(sp, subs, backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                                   progress=progress)
    measured = np.asarray(measured, dtype=np.float64)
    if len(measured) != samples:
        raise ValueError(f"measured has {len(measured)} values for samples={samples}")
    m = latency_metrics(measured, predicted)
    raw = latency_metrics(measured, sums)
    rows = [{"subnet": str(s), "measured_ms": float(y), "predicted_ms": float(p), "blocks_sum_ms": float(b),
             "rel_error": float((p - y) / y)} for s, y, p, b in zip(subs, measured, predicted, sums)]
    return {"space": str(sp), "predictor_device": pred.device, "backend": backend, "dtype": dtype,
            "threads": threads, "resolution": resolution, "seed": seed, "samples": samples,
            "acc_10pct": m["acc_10pct"], "acc_5pct": m["acc_5pct"], "mape": m["mape"], "rmse_ms": m["rmse_ms"],
            "kendall_tau": m["kendall_tau"], "without_composition": raw, "rows": rows}
