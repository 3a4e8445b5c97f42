"""Few-shot transfer of latency predictors to a new device: sources, which units to measure, the fit, the bundle.

A new device's predictor from other devices' predictors (the *sources*) and a few units measured on it:

1. :func:`source_log_predictions`: every source's log-prediction of every candidate unit (a source must have
   a model of each candidate unit type, and the same dtype unless cross-dtype transfer is asked for).
2. :func:`select_units`: which ``budget`` units to measure: per unit type a quota in proportion to the
   type's share of the predicted latency, and inside a type a greedy facility-location cover of the feature
   space (work and traffic features and the sources' consensus prediction; ``strategy='diverse'``),
   optionally weighted towards units where the sources disagree (``'disagree'``); ``'random'`` is the
   baseline.
3. :func:`rank_sources` ranks the sources by how well each, calibrated per type (by one factor below 20
   units), fits the measured units (leave-one-out RMSE of log latency, LitePred-style similarity), and
   forward selection (from 20 units on) keeps an
   ensemble of the best ones while it helps.
4. :func:`fit_transfer`: per unit type a ``transfer`` estimator (``_transfer``): the sources' consensus
   log-prediction calibrated by ``scale`` (one offset), ``linear`` (offset and slope shared by all types),
   ``per-type`` (offset and slope per type, ridge towards the shared one) or ``boost`` (``per-type`` plus
   a small, strongly regularised LightGBM correction on the residual with the calibrated prediction as
   base margin); ``auto`` picks by leave-one-out (k-fold for ``boost``) error on the measured units.
5. :func:`adapt_predictor` writes an ordinary :class:`LatencyPredictor` (composition term from the whole
   subnets, if any, as ``train`` does) whose manifest's ``adaptation`` names the sources, the budget,
   the unit keys, the method and the wall time.

The core works on arrays of unit types and feature rows, so the same code adapts kernel predictors (any
unit kind whose predictor keeps one model per unit type); :func:`unit_arrays` turns block configs into them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import numpy as np
import pandas as pd

from spaceevo.space import BlockConfig

from ._bundle import FORMAT, FORMAT_VERSION, LatencyPredictor, _runtime_versions, dataset_digest
from ._estimators import LGBM_BASE_FEATURES
from ._features import (FEATURE_NAMES_BY_VERSION, FEATURE_SCHEMA_VERSION, block_features, configs_from_frame,
                        feature_schema)
from ._kernel_features import KERNEL_FEATURE_NAMES, kernel_feature_schema, kernel_features
from ._metrics import latency_metrics
from ._target import auto_target, check_target, reference_ms, with_target
from ._transfer import PROXY_TYPES, TransferLatencyRegressor, proxy_features, ridge_calibration

log = logging.getLogger(__name__)

ADAPT_METHODS: tuple[str, ...] = ("auto", "scale", "linear", "per-type", "boost")
ADAPT_STRATEGIES: tuple[str, ...] = ("diverse", "disagree", "random")
# ridge penalties (rows) of a type's offset and slope towards the shared calibration, and of the shared
# slope towards 1 (a source that scales with the target); chosen on the benchmark's ort INT8 1-thread data
LAMBDA_TYPE = (2.0, 4.0)
LAMBDA_SHARED_SLOPE = 1.0
SHRINKAGE = "empirical-bayes"  # or "fixed" (LAMBDA_TYPE[0] rows)
LAMBDA_RANGE = (0.05, 50.0)
NOISE_VAR = 0.1 ** 2  # within-type variance of log latency assumed when too few units share a type
BOOST_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 4, "max_depth": 2,
                "min_data_in_leaf": 5, "lambda_l2": 10.0, "feature_fraction": 0.8, "min_gain_to_split": 1e-4,
                "verbosity": -1, "num_threads": 1, "deterministic": True, "force_row_wise": True, "seed": 0}
BOOST_ROUNDS = 100
BOOST_MIN_UNITS = 20  # fewer measured units: no boosted correction (it would fit the noise)
MAX_SOURCES = 3
ENSEMBLE_MIN_UNITS = 20  # fewer measured units: one source (leave-one-out on fewer is too noisy to combine)


@dataclasses.dataclass
class AdaptSource:
    """A source predictor: its name (registered name or path) and the loaded predictor (block or kernel)."""

    name: str
    predictor: LatencyPredictor

    @property
    def kind(self) -> str:
        """``block`` (a predictor of search-space blocks) or ``kernel`` (of the kernels of ONNX models)."""
        return getattr(self.predictor, "unit_kind", "block")

    @property
    def n_features(self) -> int:
        """How many feature columns its models read (its feature schema's names)."""
        if self.kind == "kernel":
            return len(KERNEL_FEATURE_NAMES)
        return len(FEATURE_NAMES_BY_VERSION[self.predictor.feature_version])

    def describe(self) -> dict:
        """Name, unit kind, device, dtype, target, estimator and file digest (for the manifest)."""
        p = self.predictor
        version = kernel_feature_schema()["version"] if self.kind == "kernel" else p.feature_version
        return {"name": self.name, "unit_kind": self.kind, "device": p.device, "dtype": p.dtype, "target": p.target,
                "estimator": p.estimator, "feature_version": version,
                "digest": None if p.source_digest is None else f"sha256:{p.source_digest}"}


# -- units ----------------------------------------------------------------------------------------------
def unit_arrays(configs: Sequence[BlockConfig]) -> tuple[np.ndarray, np.ndarray]:
    """``(types, X)`` of block configs: the unit type of each row and its features (current schema)."""
    configs = list(configs)
    return np.array([c.type for c in configs], dtype=object), block_features(configs, FEATURE_SCHEMA_VERSION)


def kernel_unit_arrays(kernels: Sequence[tuple[str, dict]]) -> tuple[np.ndarray, np.ndarray]:
    """``(types, X)`` of kernels: the kernel type of each row and its kernel features, in the order given.

    Parameters
    ----------
    kernels : sequence of (str, dict)
        ``(kernel type, config)`` pairs, e.g. ``KernelUnit.type`` and ``KernelUnit.config``.

    Returns
    -------
    tuple of ndarray
        Types (object array) and features ``(n, len(KERNEL_FEATURE_NAMES))``.
    """
    kernels = list(kernels)
    types = np.array([t for t, _ in kernels], dtype=object)
    X = np.zeros((len(kernels), len(KERNEL_FEATURE_NAMES)))
    for t in sorted(set(types.tolist())):
        m = types == t
        X[m] = kernel_features(t, [c for (kt, c) in kernels if kt == t])
    return types, X


# -- sources --------------------------------------------------------------------------------------------
def check_source(source: AdaptSource, dtype: str, unit_types: Sequence[str], cross_dtype: bool = False,
                 kind: str = "block") -> None:
    """Raise ``ValueError`` naming the problem when ``source`` cannot serve a target of ``dtype`` and these types.

    A source must predict units of ``kind``, be of the same dtype (unless ``cross_dtype``), computed on a
    feature schema this spaceevo knows, and have a model of every unit type in ``unit_types`` (or of its
    ``PROXY_TYPES``). A kernel source needs a model of one of the types at least: the kernels of types no
    source models are estimated by the adapted predictor's fallback, fitted on the measured kernels.
    """
    p = source.predictor
    if source.kind != kind:
        raise ValueError(f"source {source.name!r} is a {source.kind} predictor; {kind} units need a {kind} "
                         f"predictor (the kind column of: spaceevo predictors list)")
    if p.dtype != dtype and not cross_dtype:
        raise ValueError(f"source {source.name!r} has dtype={p.dtype!r}, the target dtype={dtype!r}; choose a "
                         f"{dtype} source or pass --cross-dtype to transfer across dtypes")
    if kind == "kernel":
        if not set(unit_types) & set(p.models):
            raise ValueError(f"source {source.name!r} has no model of any kernel type of the candidate units "
                             f"{sorted(set(unit_types))} (its types: {sorted(p.models)})")
        return
    if p.feature_version not in FEATURE_NAMES_BY_VERSION:
        raise ValueError(f"source {source.name!r} has feature schema version {p.feature_version!r}; this spaceevo "
                         f"computes versions {sorted(FEATURE_NAMES_BY_VERSION)}")
    missing = sorted(t for t in set(unit_types) - set(p.models) if PROXY_TYPES.get(t) not in p.models)
    if missing:
        raise ValueError(f"source {source.name!r} has no model of the unit types {missing} of the candidate units "
                         f"(its types: {sorted(p.models)})")


def model_of(source: AdaptSource, unit_type: str) -> tuple[object, str | None]:
    """The source's model of ``unit_type`` and the proxy type it stands for (None: its own model)."""
    models = source.predictor.models
    if unit_type in models:
        return models[unit_type], None
    proxy = PROXY_TYPES.get(unit_type)
    if proxy in models:
        return models[proxy], proxy
    raise ValueError(f"source {source.name!r} has no model of {unit_type!r} (nor of a proxy type)")


def source_log_predictions(sources: Sequence[AdaptSource], types: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``(n_units, n_sources)`` log-predictions (log ms) of each source for each unit."""
    out = np.zeros((len(types), len(sources)))
    for j, s in enumerate(sources):
        k = s.n_features
        for t in sorted(set(types.tolist())):
            m = types == t
            model, proxy = model_of(s, t)
            out[m, j] = np.log(model.predict(proxy_features(X[m], proxy, k) if proxy else X[m][:, :k]))
    return out


# -- which units to measure -----------------------------------------------------------------------------
def _embedding(X: np.ndarray, z: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    names = list(FEATURE_NAMES_BY_VERSION[FEATURE_SCHEMA_VERSION] if names is None else names)
    cols = [names.index(f) for f in LGBM_BASE_FEATURES if f in names and names.index(f) < X.shape[1]]
    A = np.column_stack([np.log1p(np.maximum(X[:, cols], 0.0)), 2.0 * z]) if cols else z[:, None]
    sd = A.std(axis=0)
    return (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _quotas(types: np.ndarray, share: np.ndarray, budget: int) -> dict[str, int]:
    """Units per type in proportion to the type's share of the predicted latency (largest remainder).

    (Forcing one unit on every type first did worse on the benchmark: mean tau over ort INT8 and FP32 at
    N = 10, 20, 50 0.879 against 0.899; a type without units keeps the shared calibration.)
    """
    names = sorted(set(types.tolist()), key=lambda t: -share[types == t].sum())
    count = {t: int((types == t).sum()) for t in names}
    q = {t: 0 for t in names}
    left = budget
    weight = np.array([share[types == t].sum() for t in names])
    while left > 0:
        room = np.array([count[t] - q[t] for t in names])
        if room.sum() == 0:
            break
        want = weight * (sum(q.values()) + left) / weight.sum() - np.array([q[t] for t in names])
        want = np.where(room > 0, want, -np.inf)
        t = names[int(np.argmax(want))]
        q[t] += 1
        left -= 1
    return q


def select_units(types: np.ndarray, X: np.ndarray, source_log: np.ndarray, budget: int, strategy: str = "diverse",
                 seed: int = 0, feature_names: Sequence[str] | None = None) -> np.ndarray:
    """Indices of the ``budget`` units to measure, in the order chosen.

    Parameters
    ----------
    types : ndarray of str
        Unit type of each candidate.
    X : ndarray
        Feature rows of the candidates.
    source_log : ndarray
        ``(n, n_sources)`` source log-predictions (:func:`source_log_predictions`).
    budget : int
        How many to choose (1 <= budget <= n).
    strategy : str
        ``diverse`` (type quotas in proportion to predicted latency; greedy facility-location cover of the
        feature space, larger units weighted up), ``disagree`` (the same, also weighted towards units where the
        sources disagree) or ``random`` (uniform, seeded).
    seed : int
        Seed of ``random`` (and of ties).
    feature_names : sequence of str, optional
        Names of X's columns (default the block features; ``KERNEL_FEATURE_NAMES`` for kernels).

    Returns
    -------
    ndarray of int

    Raises
    ------
    ValueError
        A budget outside 1..n or an unknown strategy.
    """
    n = len(types)
    if strategy not in ADAPT_STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not one of {list(ADAPT_STRATEGIES)}")
    if not isinstance(budget, (int, np.integer)) or not 1 <= budget <= n:
        raise ValueError(f"budget={budget!r} must be between 1 and the {n} candidate units")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return rng.choice(n, size=int(budget), replace=False)
    S = np.asarray(source_log, dtype=np.float64).reshape(n, -1)
    z = S.mean(axis=1)
    if S.shape[1] > 1 and strategy == "disagree":  # the sources' spread after removing each one's overall offset
        D = S - np.median(S - z[:, None], axis=0)
        u = D.std(axis=1)
        weight = 1.0 + u / max(float(np.median(u)), 1e-9)
    else:
        weight = np.ones(n)
    E = _embedding(X, z, feature_names)
    demand = weight * np.sqrt(np.exp(z - z.max()))  # cover units that matter: large and disputed ones
    chosen: list[int] = []
    for t, q in _quotas(types, np.exp(z), int(budget)).items():
        idx = np.nonzero(types == t)[0]
        if q:
            chosen.extend(idx[_cover(E[idx], demand[idx], q, rng)].tolist())
    return np.array(chosen, dtype=int)


def _cover(E: np.ndarray, demand: np.ndarray, q: int, rng: np.random.Generator) -> list[int]:
    """Greedy facility location: ``q`` rows minimising the demand-weighted distance of every row to its nearest."""
    D = np.sqrt(np.maximum(((E[:, None, :] - E[None, :, :]) ** 2).sum(axis=2), 0.0))
    near = np.full(len(E), np.inf)
    picked: list[int] = []
    jitter = 1e-9 * rng.random(len(E))
    for _ in range(min(q, len(E))):
        cost = (demand[:, None] * np.minimum(near[:, None], D)).sum(axis=0) + jitter
        cost[picked] = np.inf
        j = int(np.argmin(cost))
        picked.append(j)
        near = np.minimum(near, D[:, j])
    return picked


# -- the fit --------------------------------------------------------------------------------------------
def _shared_calibration(z: np.ndarray, ly: np.ndarray, z_mean: float, method: str) -> tuple[float, float]:
    """The calibration shared by all types: one offset (``scale``), else offset and slope (ridge towards 1).

    (A slope pooled within types, immune to the types' offsets, did worse on the benchmark at N <= 20.)
    """
    offset = float(np.mean(ly - z)) + z_mean
    if method == "scale" or len(z) < 3:
        return offset, 1.0
    return ridge_calibration(z, ly, z_mean, (offset, 1.0), (0.0, LAMBDA_SHARED_SLOPE))


def type_shrinkage(types: np.ndarray, residual: np.ndarray, noise_var: float = NOISE_VAR) -> float:
    """Ridge penalty (in rows) of a type's offset: within-type over between-type variance (empirical Bayes).

    ``residual``: log residuals of the shared calibration. Types that differ a lot from the shared
    calibration (large between-type variance) get a weak penalty, sources that fit every type alike a strong
    one. The within-type variance is pooled over the types with two units or more (``noise_var`` when none).
    """
    names = sorted(set(types.tolist()))
    n = np.array([(types == t).sum() for t in names], dtype=float)
    means = np.array([residual[types == t].mean() for t in names])
    within = [residual[types == t] - m for t, m in zip(names, means) if (types == t).sum() >= 2]
    dof = sum(len(w) - 1 for w in within)
    s2 = float(sum((w ** 2).sum() for w in within) / dof) if dof >= 3 else noise_var
    s2 = max(s2, 1e-4)
    if len(names) < 2:
        return LAMBDA_TYPE[0]
    tau2 = float(np.var(means, ddof=1) - np.mean(s2 / n))
    return float(np.clip(s2 / max(tau2, 1e-6), LAMBDA_RANGE[0], LAMBDA_RANGE[1]))


def _calibrate(types: np.ndarray, z: np.ndarray, ly: np.ndarray, z_mean: float, method: str,
               all_types: Sequence[str]) -> dict[str, tuple[float, float, tuple[float, float]]]:
    """Per type ``(alpha, beta, prior)`` of a method (the booster is fitted separately)."""
    a0, b0 = _shared_calibration(z, ly, z_mean, method)
    z_var = float(np.var(z))
    la = LAMBDA_TYPE[0]
    if method in ("per-type", "boost") and SHRINKAGE == "empirical-bayes":
        la = type_shrinkage(types, ly - a0 - b0 * (z - z_mean))
    out = {}
    for t in all_types:
        m = types == t
        if method in ("scale", "linear") or not m.any():
            out[t] = (a0, b0, (a0, b0))
        else:
            out[t] = (*ridge_calibration(z[m], ly[m], z_mean, (a0, b0), (la, LAMBDA_TYPE[1]), z_var), (a0, b0))
    return out


def _boost(F: np.ndarray, residual: np.ndarray, seed: int = 0):
    import lightgbm as lgb

    params = {**BOOST_PARAMS, "seed": seed, "min_data_in_leaf": max(BOOST_PARAMS["min_data_in_leaf"], len(F) // 10)}
    data = lgb.Dataset(F, residual, params={"min_data_in_bin": 1, "verbosity": -1})
    return lgb.train(params, data, num_boost_round=BOOST_ROUNDS)


def _fit_arrays(types: np.ndarray, z: np.ndarray, X: np.ndarray, ly: np.ndarray, z_mean: float, method: str,
                all_types: Sequence[str]):
    """``(calibration per type, booster or None)`` fitted on the rows given."""
    cal = _calibrate(types, z, ly, z_mean, method, all_types)
    booster = None
    if method == "boost" and len(ly) >= BOOST_MIN_UNITS:
        base = np.array([cal[t][0] + cal[t][1] * (zi - z_mean) for t, zi in zip(types, z)])
        booster = _boost(_booster_features(X, z, types, all_types), ly - base)
    return cal, booster


def _booster_features(X: np.ndarray, z: np.ndarray, types: np.ndarray, all_types: Sequence[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(all_types)}
    return np.column_stack([X, z, [float(index[t]) for t in types]])


def _predict_arrays(fit, types: np.ndarray, z: np.ndarray, X: np.ndarray, z_mean: float,
                    all_types: Sequence[str]) -> np.ndarray:
    cal, booster = fit
    out = np.array([cal[t][0] + cal[t][1] * (zi - z_mean) for t, zi in zip(types, z)])
    if booster is not None:
        out = out + booster.predict(_booster_features(X, z, types, all_types), num_threads=1)
    return out


def cv_log_rmse(types: np.ndarray, z: np.ndarray, X: np.ndarray, ly: np.ndarray, method: str,
                all_types: Sequence[str], folds: int | None = None, seed: int = 0) -> float:
    """Cross-validated RMSE of log latency of ``method`` (leave-one-out unless ``folds``)."""
    n = len(ly)
    if n < 2:
        return float("inf")
    z_mean = float(np.mean(z))
    k = n if folds is None else min(folds, n)
    fold = np.arange(n) % k if folds is None else np.random.default_rng(seed).permutation(n) % k
    pred = np.empty(n)
    for f in range(k):
        test = fold == f
        fit = _fit_arrays(types[~test], z[~test], X[~test], ly[~test], z_mean, method, all_types)
        pred[test] = _predict_arrays(fit, types[test], z[test], X[test], z_mean, all_types)
    return float(np.sqrt(np.mean((pred - ly) ** 2)))


def rank_sources(names: Sequence[str], types: np.ndarray, source_log: np.ndarray, ly: np.ndarray,
                 method: str = "per-type") -> list[dict]:
    """Each source's fit to the measured units: leave-one-out log RMSE after calibration by ``method``, and tau.

    Returns one dict per source (``name``, ``loo_log_rmse``, ``kendall_tau``), best first.
    """
    from scipy.stats import kendalltau

    all_types = sorted(set(types.tolist()))
    X0 = np.zeros((len(ly), 0))
    rows = []
    for j, name in enumerate(names):
        z = source_log[:, j]
        tau = float(kendalltau(z, ly).statistic) if len(ly) > 1 else float("nan")
        rows.append({"name": name, "loo_log_rmse": cv_log_rmse(types, z, X0, ly, method, all_types),
                     "kendall_tau": tau})
    return sorted(rows, key=lambda r: (r["loo_log_rmse"], r["name"]))


def choose_sources(names: Sequence[str], types: np.ndarray, source_log: np.ndarray, ly: np.ndarray,
                   max_sources: int = MAX_SOURCES) -> tuple[list[int], np.ndarray, list[dict]]:
    """Forward selection of an ensemble of sources (equal weights of log-predictions) by leave-one-out error.

    Returns the chosen columns, their weights and the ranking of single sources (:func:`rank_sources`).
    """
    # with few units (about one a type) a per-type calibration leaves nothing to test a source on: rank by how
    # well one factor explains them (on the benchmark's ort FP32 target at N = 10: tau 0.83 against 0.69)
    ranking = rank_sources(names, types, source_log, ly, "scale" if len(ly) < ENSEMBLE_MIN_UNITS else "per-type")
    order = [list(names).index(r["name"]) for r in ranking]
    all_types = sorted(set(types.tolist()))
    X0 = np.zeros((len(ly), 0))
    chosen = [order[0]]
    best = ranking[0]["loo_log_rmse"]
    for j in order[1:max(1, len(order))]:
        if len(chosen) >= max_sources or len(ly) < ENSEMBLE_MIN_UNITS:
            break
        trial = chosen + [j]
        score = cv_log_rmse(types, source_log[:, trial].mean(axis=1), X0, ly, "per-type", all_types)
        if score < best * 0.97:  # an extra source must cut the error by a clear margin
            chosen, best = trial, score
    return chosen, np.full(len(chosen), 1.0 / len(chosen)), ranking


def choose_method(types: np.ndarray, z: np.ndarray, X: np.ndarray, ly: np.ndarray) -> tuple[str, dict]:
    """The method with the lowest cross-validated log RMSE on the measured units, and every method's score."""
    all_types = sorted(set(types.tolist()))
    scores = {}
    for method in ADAPT_METHODS[1:]:
        if method == "boost":
            if len(ly) < BOOST_MIN_UNITS:
                continue
            scores[method] = cv_log_rmse(types, z, X, ly, method, all_types, folds=5)
        else:
            scores[method] = cv_log_rmse(types, z, X, ly, method, all_types)
    best = min(scores, key=lambda m: (scores[m], ADAPT_METHODS.index(m)))
    return best, scores


def fit_transfer(sources: Sequence[AdaptSource], weights: Sequence[float], types: np.ndarray, X: np.ndarray,
                 y: np.ndarray, method: str = "per-type", model_types: Sequence[str] | None = None) -> dict:
    """Per unit type a fitted :class:`TransferLatencyRegressor` (``{type: estimator}``).

    ``model_types`` are the types the predictor must answer (default: every type all sources have a model
    of, and the measured units' types); a type with no measured unit gets the shared calibration.
    """
    if method not in ADAPT_METHODS[1:]:
        raise ValueError(f"method={method!r} is not one of {list(ADAPT_METHODS[1:])}")
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("the measured latencies must be at least one finite value > 0 ms")
    shared = set.intersection(*({t for t in {*s.predictor.models, *PROXY_TYPES}
                                 if t in s.predictor.models or PROXY_TYPES.get(t) in s.predictor.models}
                                for s in sources))
    native = set.intersection(*(set(s.predictor.models) for s in sources))
    model_types = sorted((native | set(types.tolist())) if model_types is None else model_types)
    lacking = sorted(set(model_types) - shared)
    if lacking:
        raise ValueError(f"the sources have no model of the unit types {lacking}")
    w = np.asarray(weights, dtype=np.float64)
    z = source_log_predictions(sources, types, X) @ w
    ly = np.log(y)
    z_mean = float(np.mean(z))
    cal, booster = _fit_arrays(types, z, X, ly, z_mean, method, model_types)
    models = {}
    for i, t in enumerate(model_types):
        alpha, beta, prior = cal[t]
        states = []
        for s, wi in zip(sources, w):
            model, proxy = model_of(s, t)
            states.append({"state": model.to_state(), "n_features": s.n_features, "weight": float(wi), "name": s.name,
                           **({"proxy_type": proxy} if proxy else {})})
        est = TransferLatencyRegressor(sources=states, z_mean=z_mean, prior_alpha=alpha, prior_beta=beta,
                                       type_index=i)
        est.fit_prior(X.shape[1])
        est.set_booster(booster)
        models[t] = est
    return models


# -- the bundle -----------------------------------------------------------------------------------------
def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].fillna("ok") == "ok"] if "status" in df.columns else df


def adapt_predictor(sources: Sequence[AdaptSource], rows: pd.DataFrame, device: str, dtype: str = "int8",
                    method: str = "auto", max_sources: int = MAX_SOURCES, fingerprint: dict | None = None,
                    model_types: Sequence[str] | None = None, info: dict | None = None,
                    target: str = "auto") -> LatencyPredictor:
    """A predictor of a new device from ``sources`` and the store rows measured on it (blocks and whole subnets).

    Parameters
    ----------
    sources : sequence of AdaptSource
        Candidate sources; the best (an ensemble of up to ``max_sources``) is chosen on the block rows.
    rows : DataFrame
        The new device's rows in the store's format: ``kind='block'`` units the fit uses, ``kind='model'``
        whole subnets for the composition term (optional).
    device, dtype : str
        The new predictor's device id and dtype.
    method : str
        ``auto`` (chosen by cross-validation on the block rows) or one of ``scale``, ``linear``,
        ``per-type``, ``boost``.
    model_types : sequence of str, optional
        Unit types the predictor must answer (default: every type all chosen sources share).
    info : dict, optional
        More facts for the manifest's ``adaptation`` (budget, unit selection, profiling time, ...).
    target : str
        The timing statistic to learn, one of ``TARGETS`` or ``auto`` (``auto_target`` of the rows).

    Returns
    -------
    LatencyPredictor
        An ordinary predictor (``save`` writes the same bundle as ``spaceevo train``; estimator ``transfer``).

    Raises
    ------
    ValueError
        No sources, no ok block rows, an unknown method or target.
    """
    started = time.perf_counter()
    if method not in ADAPT_METHODS:
        raise ValueError(f"method={method!r} is not one of {list(ADAPT_METHODS)}")
    if not sources:
        raise ValueError("no source predictors to adapt from")
    rows = _ok(rows)
    blocks = rows[rows["kind"] == "block"] if "kind" in rows.columns else rows
    if blocks.empty:
        raise ValueError("no ok block rows measured on the new device to adapt from")
    target = auto_target(rows) if target == "auto" else check_target(target)
    ref = reference_ms(blocks) if target == "norm_ms" else None
    rows = with_target(rows, target, ref)
    blocks = rows[rows["kind"] == "block"] if "kind" in rows.columns else rows
    configs = configs_from_frame(blocks)
    types, X = unit_arrays(configs)
    y = blocks[target].to_numpy(dtype=np.float64)
    ly = np.log(y)
    names = [s.name for s in sources]
    S = source_log_predictions(sources, types, X)
    chosen, weights, ranking = choose_sources(names, types, S, ly, max_sources)
    use = [sources[j] for j in chosen]
    z = S[:, chosen] @ weights
    picked, scores = choose_method(types, z, X, ly) if method == "auto" else (method, {})
    models = fit_transfer(use, weights, types, X, y, picked, model_types)
    pred = LatencyPredictor(device=device, dtype=dtype, estimator="transfer", fingerprint=fingerprint,
                            source="adapted from " + ", ".join(s.name for s in use), target=target,
                            reference_ms=ref)
    pred.models = models
    subnets = rows[rows["kind"] == "model"] if "kind" in rows.columns else rows.iloc[:0]
    if len(subnets):
        pred.fit_composition(subnets)
    unit_pred = pred.predict_blocks(configs)
    adaptation = {"sources": [{**s.describe(), "weight": float(w)} for s, w in zip(use, weights)],
                  "source_ranking": ranking, "method": picked, "method_cv_log_rmse": scores,
                  "n_units": int(len(blocks)), "n_subnets": int(len(subnets)),
                  "units": blocks["key"].tolist() if "key" in blocks.columns else [c.to_string() for c in configs],
                  "subnets": subnets["key"].tolist() if "key" in subnets.columns else [],
                  **(info or {})}
    adaptation["fit_seconds"] = round(time.perf_counter() - started, 3)
    pred._manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "device": device, "dtype": dtype,
        "estimator": "transfer", "estimator_params": {}, "target": target, "reference_ms": ref,
        "fingerprint": dict(fingerprint or {}), "source": pred.source, "runtime": _runtime_versions(),
        "feature_schema": feature_schema(pred.feature_version),
        "dataset": {"digest": dataset_digest(rows), "n_block_rows": int(len(blocks)),
                    "n_model_rows": int(len(subnets)), "block_types": sorted(models)},
        "metrics": {"unit_train": latency_metrics(y, unit_pred), **pred._manifest.get("metrics", {})},
        "composition": pred.composition, "block_types_missing": [], "warnings": [] if len(subnets) else [
            "no whole-subnet rows: subnet predictions are the plain sum of the adapted blocks (no composition term)"],
        "adaptation": adaptation,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return pred


def adaptation_info(pred: LatencyPredictor) -> dict:
    """The manifest's ``adaptation`` section of an adapted predictor (sources, budget, units, time)."""
    man = pred.manifest
    if "adaptation" not in man:
        raise ValueError(f"predictor of device {pred.device!r} was not adapted (its manifest has no 'adaptation')")
    return dict(man["adaptation"])


__all__ = ["AdaptSource", "ADAPT_METHODS", "ADAPT_STRATEGIES", "adapt_predictor", "adaptation_info", "check_source",
           "choose_method", "choose_sources", "cv_log_rmse", "fit_transfer", "rank_sources", "select_units",
           "kernel_unit_arrays", "source_log_predictions", "unit_arrays"]
