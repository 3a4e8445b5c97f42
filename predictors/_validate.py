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


def measure_subnets(space: SearchSpace | str, subnets: Sequence[Subnet], backend: str = "ort", dtype: str = "int8",
                    threads: int = 1, repeats: int | None = None, progress: bool = True) -> np.ndarray:
    """Median latency (ms) of each whole subnet, built as one model and timed by the collector's backend."""
    from spaceevo.latency import SubnetUnit, get_backend

    opts = {"threads": threads}
    if repeats is not None:
        opts["repeats"] = repeats
    be = get_backend(backend, **opts)
    if not be.available():
        raise ValueError(f"backend={backend!r} is not available on this machine")
    out = np.zeros(len(subnets))
    items = list(enumerate(subnets))
    if progress:
        from rich.progress import track

        items = track(items, description="measuring subnets", transient=True)
    for i, sn in items:
        out[i] = be.measure(SubnetUnit(str(space), str(sn)), dtype).median_ms
    return out


def validate_predictor(pred: LatencyPredictor, space: SearchSpace | str, samples: int = 50, backend: str = "ort",
                       dtype: str = "int8", seed: int = 0, threads: int = 1, resolution: int | None = None,
                       repeats: int | None = None, progress: bool = True) -> dict:
    """Sample subnets, measure them whole, and report model-level accuracy and Kendall tau (JSON-ready)."""
    if samples < 2:
        raise ValueError(f"samples={samples} must be >= 2 (Kendall tau needs two subnets)")
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    subs = sample_subnets(sp, samples, seed=seed, resolution=resolution)
    predicted = pred.predict_subnets(sp, subs)
    sums = pred.table(sp).sum_subnets(subs)
    measured = measure_subnets(sp, subs, backend=backend, dtype=dtype, threads=threads, repeats=repeats,
                               progress=progress)
    m = latency_metrics(measured, predicted)
    raw = latency_metrics(measured, sums)
    rows = [{"subnet": str(s), "measured_ms": float(y), "predicted_ms": float(p), "blocks_sum_ms": float(b),
             "rel_error": float((p - y) / y)} for s, y, p, b in zip(subs, measured, predicted, sums)]
    return {"space": str(sp), "predictor_device": pred.device, "backend": backend, "dtype": dtype,
            "threads": threads, "resolution": resolution, "seed": seed, "samples": samples,
            "acc_10pct": m["acc_10pct"], "acc_5pct": m["acc_5pct"], "mape": m["mape"], "rmse_ms": m["rmse_ms"],
            "kendall_tau": m["kendall_tau"], "without_composition": raw, "rows": rows}
