"""The composition term: from a sum of isolated block latencies to the latency of the whole network.

A block timed alone pays costs a block inside a network does not (one session call, quantising its
float input, de-quantising its output, a cold start of its weights) and misses some it would pay
(the network's weights do not all stay in cache). The composition term is linear in per-block
quantities, so it still folds into one value per block for the vectorised fast path::

    latency(subnet) = sum over blocks b of  sum_j coef_j * feature_j(b)  +  offset_ms

Per-block features: ``lat`` (the block's predicted latency, ms), ``lat:<BlockType>`` (the same, only
for blocks of that type: one scale per type), ``lat:rest`` (blocks of the types without a term of
their own; its coefficient stays 1), ``blocks`` (1 per block: a fixed per-block overhead),
``io_melem`` (input + output tensor elements, millions: the quantise/de-quantise work at an isolated
block's boundary), ``params_m`` (weights, millions) and ``fp32_melem`` (input + output elements, millions,
of the kernels an INT8 graph runs in FP32: the DequantizeLinear before and the QuantizeLinear after them,
which such a kernel timed alone does not pay; 0 for blocks).

:func:`fit_composition` fits every candidate feature set in ``CANDIDATE_SETS`` by least squares in
relative error on whole-subnet measurements (latency coefficients >= 0) and keeps the one with the
lowest leave-one-out error, so the choice itself is made on the training subnets only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spaceevo.space import BlockConfig

from ._metrics import latency_metrics

BASE_FEATURES: tuple[str, ...] = ("lat", "blocks", "io_melem", "params_m", "fp32_melem")
# Candidate feature sets, simplest first; "lat:*" expands to one latency column per block type whose
# latency varies across the training networks (CV > VARYING_CV) plus "lat:rest" (fixed at 1) for the others.
VARYING_CV = 0.1
CANDIDATE_SETS: tuple[tuple[str, ...], ...] = (
    ("lat",),
    ("lat", "blocks"),
    ("lat", "params_m"),
    ("lat", "io_melem", "blocks"),
    ("lat:*",),
    ("lat:*", "blocks"),
    ("lat:*", "io_melem", "blocks"),
    ("lat", "io_melem", "blocks", "fp32_melem"),
    ("lat:*", "io_melem", "blocks", "fp32_melem"),
)


def identity_composition() -> dict:
    """The plain sum of block latencies."""
    return {"terms": {"lat": 1.0}, "offset_ms": 0.0, "n_models": 0, "selected_by": None}


def terms_of(c: dict) -> dict[str, float]:
    """The ``{feature: coefficient}`` terms of a composition (older files: ``scale``/``params_coef``).

    Parameters
    ----------
    c : dict

    Returns
    -------
    dict of str to float
    """
    if "terms" in c:
        return {k: float(v) for k, v in c["terms"].items()}
    return {"lat": float(c.get("scale", 1.0)), "params_m": float(c.get("params_coef", 0.0))}


def _check_feature(name: str) -> None:
    if name not in BASE_FEATURES and not name.startswith("lat:") or name == "lat:":
        raise ValueError(f"composition feature {name!r} is not one of {list(BASE_FEATURES)} or 'lat:<BlockType>'")


def block_terms(configs: Sequence[BlockConfig], lat: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Per-block feature matrix ``(n_blocks, len(names))`` of the composition features ``names``."""
    lat = np.asarray(lat, dtype=np.float64)
    out = np.zeros((len(configs), len(names)))
    types = np.array([c.type for c in configs], dtype=object)
    own = [n[4:] for n in names if n.startswith("lat:") and n != "lat:rest"]
    for j, name in enumerate(names):
        _check_feature(name)
        if name == "lat":
            out[:, j] = lat
        elif name == "lat:rest":
            out[:, j] = np.where(np.isin(types, own), 0.0, lat)
        elif name.startswith("lat:"):
            out[:, j] = np.where(types == name[4:], lat, 0.0)
        elif name == "blocks":
            out[:, j] = 1.0
        elif name == "io_melem":
            out[:, j] = [(np.prod(c.input_shape) + np.prod(c.output_shape)) / 1e6 for c in configs]
        elif name == "fp32_melem":
            out[:, j] = [(np.prod(c.input_shape) + np.prod(c.output_shape)) / 1e6 if getattr(c, "fp32", False)
                         else 0.0 for c in configs]
        else:  # params_m
            out[:, j] = [c.params / 1e6 for c in configs]
    return out


def per_block_values(c: dict, configs: Sequence[BlockConfig], lat: np.ndarray) -> np.ndarray:
    """Each block's share of the composed latency (ms): ``sum_j coef_j * feature_j(block)``."""
    terms = terms_of(c)
    names = list(terms)
    if not names:
        return np.zeros(len(configs))
    return block_terms(configs, lat, names) @ np.array([terms[n] for n in names])


def compose(c: dict, configs: Sequence[BlockConfig], lat: np.ndarray) -> float:
    """Composed latency (ms) of one network made of blocks ``configs`` with latencies ``lat``.

    Parameters
    ----------
    c : dict
        A predictor's composition (``LatencyPredictor.composition``).
    configs : sequence of BlockConfig
    lat : numpy.ndarray
        Per-block latencies (ms).

    Returns
    -------
    float
    """
    return float(per_block_values(c, configs, lat).sum() + c.get("offset_ms", 0.0))


def varying_types(networks: Sequence[Sequence[BlockConfig]], lat: Sequence[np.ndarray]) -> list[str]:
    """Block types whose per-network latency sum varies (CV > ``VARYING_CV``): they get their own scale."""
    types = sorted({c.type for net in networks for c in net})
    sums = np.array([[float(np.sum([v for c, v in zip(net, lv) if c.type == t])) for t in types]
                     for net, lv in zip(networks, lat)])
    mean = sums.mean(axis=0)
    cv = np.divide(sums.std(axis=0), mean, out=np.zeros_like(mean), where=mean > 0)
    return [t for t, v in zip(types, cv) if v > VARYING_CV]


def _expand(names: Sequence[str], types: Sequence[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        out.extend([f"lat:{t}" for t in types] + ["lat:rest"] if n == "lat:*" else [n])
    return out


def _lsq(X: np.ndarray, y: np.ndarray, lat_cols: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Weights (free features..., offset) minimising the relative error of ``X w + fixed + b``; latency w >= 0."""
    from scipy.optimize import lsq_linear

    A = np.column_stack([X, np.ones(len(y))]) / y[:, None]
    lo = np.where(np.append(lat_cols, False), 0.0, -np.inf)
    return lsq_linear(A, (y - fixed) / y, bounds=(lo, np.full(A.shape[1], np.inf)), method="bvls").x


def _predict(w: np.ndarray, X: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    return X @ w[:-1] + fixed + w[-1]


def fit_composition(networks: Sequence[Sequence[BlockConfig]], lat: Sequence[np.ndarray], measured_ms,
                    candidates: Sequence[Sequence[str]] = CANDIDATE_SETS) -> tuple[dict, dict]:
    """Fit the composition term on whole networks; return it and metrics (sum, fitted, leave-one-out).

    ``networks[i]`` are the blocks of network ``i``, ``lat[i]`` their predicted latencies and
    ``measured_ms[i]`` its measured latency. The candidate with the lowest leave-one-out MAPE wins; a
    candidate needs at least three networks per coefficient.
    """
    y = np.asarray(measured_ms, dtype=np.float64)
    if len(networks) != len(y) or len(lat) != len(y):
        raise ValueError(f"networks, lat and measured_ms must have one entry per network "
                         f"({len(networks)}, {len(lat)}, {len(y)})")
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("measured_ms must be finite and > 0")
    sums = np.array([float(np.sum(v)) for v in lat])
    n = len(y)
    if n == 0:
        return identity_composition(), {}
    types = varying_types(networks, lat)
    if n < 3:  # one scale
        scale = float(np.mean(y / sums))
        c = {"terms": {"lat": scale}, "offset_ms": 0.0, "n_models": n, "selected_by": "too few networks"}
        return c, {"model_sum": latency_metrics(y, sums), "model_composed": latency_metrics(y, scale * sums)}
    best = None
    tried = {}
    for cand in candidates:
        names = _expand(cand, types)
        free = [nm for nm in names if nm != "lat:rest"]
        if 3 * (len(free) + 1) > n:
            continue
        T = np.stack([block_terms(net, v, names).sum(axis=0) for net, v in zip(networks, lat)])
        X = T[:, [names.index(nm) for nm in free]]
        if not np.all(np.any(X != 0, axis=0)):  # a feature none of the networks has (fp32_melem of blocks)
            continue
        fixed = T[:, names.index("lat:rest")] if "lat:rest" in names else np.zeros(n)
        lat_cols = np.array([nm == "lat" or nm.startswith("lat:") for nm in free])
        w = _lsq(X, y, lat_cols, fixed)
        loo = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            loo[i] = _predict(_lsq(X[keep], y[keep], lat_cols, fixed[keep]), X[i:i + 1], fixed[i:i + 1])[0]
        score = float(np.mean(np.abs(loo - y) / y))
        tried["+".join(cand)] = round(100 * score, 3)
        # a richer set must beat the best simpler one by a clear margin (0.2 points of MAPE)
        if best is None or score < best[0] - 0.002:
            terms = {nm: float(v) for nm, v in zip(free, w[:-1])}
            if "lat:rest" in names:
                terms["lat:rest"] = 1.0
            best = (score, terms, w, loo, _predict(w, X, fixed))
    if best is None:  # fewer than 6 networks: scale and offset are too many, fit the scale alone
        scale = float(np.mean(y / sums))
        c = {"terms": {"lat": scale}, "offset_ms": 0.0, "n_models": n, "selected_by": "too few networks"}
        return c, {"model_sum": latency_metrics(y, sums), "model_composed": latency_metrics(y, scale * sums)}
    _score, terms, w, loo, fitted = best
    c = {"terms": terms, "offset_ms": float(w[-1]), "n_models": n, "selected_by": "leave-one-out MAPE",
         "candidates_loo_mape": tried}
    metrics = {"model_sum": latency_metrics(y, sums), "model_composed": latency_metrics(y, fitted),
               "model_composed_loo": latency_metrics(y, loo)}
    return c, metrics
