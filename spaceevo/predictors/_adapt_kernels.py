"""Few-shot transfer of *kernel* predictors: a new device's predictor of any ONNX model from other devices'.

The same fit as for blocks (``_adapt``: source ranking and ensemble, per-type calibration in log space,
optional boosted correction, chosen by cross-validation), on kernel rows: the unit types are kernel types
(``conv-bn-act``, ``dwconv``, ...), the features ``KERNEL_FEATURE_NAMES``. Kernel types that no source
models are answered by the adapted predictor's fallback (time per MAC and per output element), fitted on
the measured kernels as ``train --kind kernel`` fits it.

The composition term (kernel timed alone -> in a network) has a dozen terms on a full profile (a scale per
kernel type, the per-kernel overhead, the quantise / de-quantise traffic) and cannot be fitted on a few
whole models. Two candidates are compared by leave-one-out error on the measured models: the chosen best
source's composition with all its coefficients rescaled by one factor (the structure of "what a kernel
alone pays" transfers, its size in ms does not), and the composition ``train`` would fit on these models
(with fewer than six, one scale of the plain sum).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd

from ._adapt import (ADAPT_METHODS, MAX_SOURCES, AdaptSource, choose_method, choose_sources, fit_transfer,
                     kernel_unit_arrays, source_log_predictions)
from ._bundle import FORMAT, FORMAT_VERSION, dataset_digest
from ._kernel_features import kernel_feature_schema
from ._composition import compose, fit_composition
from ._kernel_predictor import UNIT_KIND, KernelLatencyPredictor, _config
from ._metrics import latency_metrics
from ._target import auto_target, check_target, reference_ms, with_target


def shared_kernel_types(sources: Sequence[AdaptSource]) -> set[str]:
    """The kernel types every source has a model of."""
    return set.intersection(*(set(s.predictor.models) for s in sources)) if sources else set()


def adapt_kernel_predictor(sources: Sequence[AdaptSource], rows: pd.DataFrame, device: str, dtype: str = "int8",
                           backend: str = "ort", method: str = "auto", max_sources: int = MAX_SOURCES,
                           fingerprint: dict | None = None, rules: dict | None = None, info: dict | None = None,
                           target: str = "auto") -> KernelLatencyPredictor:
    """A kernel predictor of a new device from kernel ``sources`` and the kernels and models measured on it.

    Parameters
    ----------
    sources : sequence of AdaptSource
        Kernel predictors of other devices; the best (an ensemble of up to ``max_sources``) is chosen on the
        measured kernels of the types they all model.
    rows : DataFrame
        The new device's store rows: ``kind='kernel'`` (the fit) and ``onnx-model`` rows (composition term).
    device, dtype, backend : str
        The new predictor's device id, dtype and backend (the backend picks the default fusion rules).
    method : str
        ``auto`` or one of ``scale``, ``linear``, ``per-type``, ``boost`` (as :func:`adapt_predictor`).
    rules : dict, optional
        The new device's fusion rules (default: the shipped ones of ``backend`` and ``dtype``).
    info : dict, optional
        More facts for the manifest's ``adaptation``.
    target : str
        One of ``TARGETS`` or ``auto`` (``auto_target`` of the rows).

    Returns
    -------
    KernelLatencyPredictor
        An ordinary kernel predictor (estimator ``transfer``; ``save`` writes the same file as ``train --kind
        kernel``), whose manifest's ``adaptation`` names the sources, the method and the units.

    Raises
    ------
    ValueError
        No sources, a source that is not a kernel predictor, no measured kernel of a type the sources model,
        an unknown method or target.
    """
    started = time.perf_counter()
    if method not in ADAPT_METHODS:
        raise ValueError(f"method={method!r} is not one of {list(ADAPT_METHODS)}")
    if not sources:
        raise ValueError("no source predictors to adapt from")
    wrong = [s.name for s in sources if s.kind != UNIT_KIND]
    if wrong:
        raise ValueError(f"sources {wrong} are block predictors; kernel units need kernel predictors")
    kernels = KernelLatencyPredictor.kernel_rows(rows)
    if kernels.empty:
        raise ValueError("no ok kernel rows measured on the new device to adapt from")
    target = auto_target(kernels) if target == "auto" else check_target(target)
    ref = reference_ms(kernels) if target == "norm_ms" else None
    kernels = with_target(kernels, target, ref).reset_index(drop=True)
    shared = shared_kernel_types(sources)
    fit_rows = kernels[kernels["type"].isin(shared)].reset_index(drop=True)
    if fit_rows.empty:
        raise ValueError(f"none of the measured kernel types {sorted(set(kernels['type']))} has a model in every "
                         f"source (shared types: {sorted(shared)})")
    types, X = kernel_unit_arrays([(str(t), _config(c)) for t, c in zip(fit_rows["type"], fit_rows["config"])])
    y = fit_rows[target].to_numpy(dtype=np.float64)
    ly = np.log(y)
    S = source_log_predictions(sources, types, X)
    chosen, weights, ranking = choose_sources([s.name for s in sources], types, S, ly, max_sources)
    use = [sources[j] for j in chosen]
    z = S[:, chosen] @ weights
    picked, scores = choose_method(types, z, X, ly) if method == "auto" else (method, {})
    models = fit_transfer(use, weights, types, X, y, picked, sorted(shared_kernel_types(use)))

    pred = KernelLatencyPredictor(device=device, dtype=dtype, backend=backend, estimator="transfer", target=target,
                                  reference_ms=ref, rules=rules, fingerprint=fingerprint,
                                  source="adapted from " + ", ".join(s.name for s in use))
    pred.models = models
    pred.fallback = pred._fit_fallback(kernels)
    whole = KernelLatencyPredictor.model_rows(rows)
    metrics: dict = {"unit_train": latency_metrics(y, models_predict(pred, types, X))}
    if len(whole):
        pred.composition, comp_metrics = transfer_composition(pred, with_target(whole, target, ref), use[0])
        metrics.update(comp_metrics)
    missing = sorted(set(kernels["type"]) - set(models))
    warnings = [] if len(whole) else ["no whole-model rows (onnx-model): model predictions are the plain sum of "
                                      "the adapted kernels (no composition term)"]
    if missing:
        warnings.append(f"measured kernel types no source models (estimated by the flagged fallback): {missing}")
    adaptation = {"sources": [{**s.describe(), "weight": float(w)} for s, w in zip(use, weights)],
                  "source_ranking": ranking, "method": picked, "method_cv_log_rmse": scores,
                  "n_units": int(len(kernels)), "n_units_fitted": int(len(fit_rows)), "n_subnets": int(len(whole)),
                  "units": kernels["key"].tolist() if "key" in kernels.columns else [],
                  "subnets": [_config(c).get("name") for c in whole["config"]], **(info or {})}
    adaptation["fit_seconds"] = round(time.perf_counter() - started, 3)
    pred._manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "unit_kind": UNIT_KIND, "device": device,
        "dtype": dtype, "backend": backend, "estimator": "transfer", "estimator_params": {}, "target": target,
        "reference_ms": ref, "fusion_rules": pred.rules, "fingerprint": dict(fingerprint or {}),
        "source": pred.source, "feature_schema": kernel_feature_schema(),
        "dataset": {"digest": dataset_digest(rows), "n_kernel_rows": int(len(kernels)),
                    "n_model_rows": int(len(whole)), "kernel_types": sorted(models),
                    "training_models": adaptation["subnets"]},
        "metrics": metrics, "composition": pred.composition, "fallback": pred.fallback,
        "kernel_types_missing": missing, "warnings": warnings, "adaptation": adaptation,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return pred


def models_predict(pred: KernelLatencyPredictor, types: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The adapted type models' predictions (ms) of feature rows of ``types``."""
    out = np.zeros(len(types))
    for t in sorted(set(types.tolist())):
        m = types == t
        out[m] = pred.models[t].predict(X[m])
    return out


def _lat_only(c: dict) -> dict:
    return {**c, "terms": {k: v for k, v in c["terms"].items() if k == "lat" or k.startswith("lat:")}, "offset_ms": 0.0}


def _rescaled(c: dict, a: float, b: float) -> dict:
    """``c`` with its latency terms times ``a`` and its additive terms (overheads, traffic, offset) times ``b``."""
    terms = {k: float(v) * (a if k == "lat" or k.startswith("lat:") else b) for k, v in c["terms"].items()}
    return {**c, "terms": terms, "offset_ms": float(c.get("offset_ms", 0.0)) * b}


def _two_factors(L: np.ndarray, A: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``y ~ a L + b A`` by least squares in relative error, ``a >= 0``."""
    M = np.column_stack([L, A]) / y[:, None]
    (a, b), *_ = np.linalg.lstsq(M, np.ones(len(y)), rcond=None)
    if a < 0:
        a, b = 0.0, float(np.sum(A / y) / np.sum((A / y) ** 2))
    return float(a), float(b)


def transfer_composition(pred: KernelLatencyPredictor, whole: pd.DataFrame, source: AdaptSource) -> tuple[dict, dict]:
    """The adapted predictor's composition term and its metrics, from the measured whole models.

    Candidates, compared by leave-one-out MAPE on the models (the simplest wins a tie; with one model, the
    first): the source's composition rescaled by one factor (the geometric mean of measured over composed);
    the same with one factor for its latency terms and another for its additive ones (per-kernel overhead,
    quantise traffic, offset; from three models); the composition fitted on the models alone (``train``'s).
    """
    networks, lats, y = pred.composition_data(whole)
    n = len(y)
    if n == 0:
        return pred.composition, {}
    src_c = source.predictor.composition
    own, own_metrics = fit_composition(networks, lats, y)
    sums = np.array([float(np.sum(v)) for v in lats])
    composed = np.array([compose(src_c, net, lat) for net, lat in zip(networks, lats)])
    L = np.array([compose(_lat_only(src_c), net, lat) for net, lat in zip(networks, lats)])
    A = composed - L
    metrics = {"model_sum": latency_metrics(y, sums)}
    fits = {}  # name -> (fit on rows -> (a, b), predictions of fit)
    if np.all(composed > 0):
        def one(idx):
            g = float(np.exp(np.mean(np.log(y[idx] / composed[idx]))))
            return g, g
        fits["rescaled"] = one
    if n >= 3 and np.ptp(A / np.maximum(L, 1e-12)) > 0:
        fits["rescaled-2"] = lambda idx: _two_factors(L[idx], A[idx], y[idx])
    scores = {}
    if n >= 2:
        ratio = y / sums  # the own fit's leave-one-out when it is one scale (fewer than six models)
        own_loo = own_metrics.get("model_composed_loo") or latency_metrics(y, sums * (ratio.sum() - ratio) / (n - 1))
        scores["own"] = float(own_loo["mape"])
        loos = {}
        for name, fit in fits.items():
            loo = np.empty(n)
            for i in range(n):
                a, b = fit(np.arange(n) != i)
                loo[i] = a * L[i] + b * A[i]
            loos[name] = loo
            scores[name] = float(latency_metrics(y, loo)["mape"]) if np.all(loo > 0) else float("inf")
        order = ("rescaled", "own", "rescaled-2")  # simplest first: it wins a tie
        best = min(scores, key=lambda k: (round(scores[k], 6), order.index(k)))
        if best == "own":
            return {**own, "candidates_loo_mape": {**own.get("candidates_loo_mape", {}),
                                                   **{k: round(v, 3) for k, v in scores.items() if k != "own"}}}, \
                {**own_metrics, "model_composed_loo": own_loo}
        metrics["model_composed_loo"] = latency_metrics(y, loos[best])
    elif fits:
        best = "rescaled"
    else:
        return own, own_metrics
    a, b = fits[best](np.arange(n))
    metrics["model_composed"] = latency_metrics(y, a * L + b * A)
    c = _rescaled(src_c, a, b)
    c.update({"n_models": n, "selected_by": f"the composition of source {source.name!r}, {best}"
              + (" (leave-one-out MAPE)" if n >= 2 else ""), "source_factors": {"lat": a, "additive": b},
              "candidates_loo_mape": {k: round(v, 3) for k, v in scores.items()}})
    return c, metrics
