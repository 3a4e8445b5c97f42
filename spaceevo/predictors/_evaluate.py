"""Unit-level evaluation of a predictor: k-fold cross-validation and held-out splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._bundle import LatencyPredictor, block_rows
from ._features import configs_from_frame
from ._metrics import latency_metrics
from ._target import reference_ms, with_target


def _blocks(df: pd.DataFrame, target: str, reference: float | None) -> tuple[pd.DataFrame, float | None]:
    blocks = block_rows(df).reset_index(drop=True)
    if target == "norm_ms" and reference is None:
        reference = reference_ms(blocks)
    return with_target(blocks, target, reference), reference


def _fit_predict(train: pd.DataFrame, test: pd.DataFrame, estimator: str, estimator_params: dict | None,
                 target: str, reference: float | None = None) -> np.ndarray:
    """Predictions for ``test`` of a predictor fitted on ``train`` (NaN for block types absent from train)."""
    model = LatencyPredictor(estimator=estimator, estimator_params=estimator_params, target=target,
                             reference_ms=reference).fit(train)
    out = np.full(len(test), np.nan)
    known = test["type"].isin(set(model.models)).to_numpy()
    if known.any():
        out[known] = model.predict_blocks(configs_from_frame(test[known]))
    return out


def _summary(blocks: pd.DataFrame, y: np.ndarray, pred: np.ndarray) -> dict:
    ok = ~np.isnan(pred)
    types = blocks["type"].to_numpy()
    by_type = {t: latency_metrics(y[ok & (types == t)], pred[ok & (types == t)]) for t in sorted(set(types))}
    return {"overall": latency_metrics(y[ok], pred[ok]), "by_type": by_type}


def cross_validate_units(df: pd.DataFrame, estimator: str = "lgbm", folds: int = 5, seed: int = 0,
                         estimator_params: dict | None = None, target: str = "median_ms",
                         reference: float | None = None) -> dict:
    """K-fold out-of-fold predictions of block rows: overall and per-type metrics, and the rows.

    ``reference`` scales ``norm_ms`` (the table's own reference time when None).

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).
    estimator : str
        A registered estimator.
    folds : int
    seed : int
    estimator_params : dict, optional
    target : str
        One of ``TARGETS``.
    reference : float, optional

    Returns
    -------
    dict
        ``overall`` and ``by_type`` metrics (``latency_metrics``) and ``rows`` (with ``predicted_ms``).

    Raises
    ------
    ValueError
        ``folds`` < 2 or more than the block rows.
    """
    blocks, reference = _blocks(df, target, reference)
    if folds < 2 or len(blocks) < folds:
        raise ValueError(f"folds={folds} must be >= 2 and <= the number of block rows ({len(blocks)})")
    fold = np.random.default_rng(seed).permutation(len(blocks)) % folds
    pred = np.full(len(blocks), np.nan)
    y = blocks[target].to_numpy(dtype=np.float64)
    for f in range(folds):
        test = fold == f
        pred[test] = _fit_predict(blocks[~test], blocks[test], estimator, estimator_params, target, reference)
    return {**_summary(blocks, y, pred), "rows": blocks.assign(predicted_ms=pred)}


def holdout_units(df: pd.DataFrame, estimator: str = "lgbm", test_size: float = 0.2, seed: int = 0,
                  estimator_params: dict | None = None, target: str = "median_ms",
                  reference: float | None = None) -> dict:
    """Train on a random split, score the held-out block rows (overall metrics, as ``latency_metrics``).

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).
    estimator : str
    test_size : float
        Share of the block rows held out, in (0, 1).
    seed : int
    estimator_params : dict, optional
    target : str
    reference : float, optional

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        ``test_size`` outside (0, 1).
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size={test_size!r} must be in (0, 1)")
    blocks, reference = _blocks(df, target, reference)
    test = np.random.default_rng(seed).random(len(blocks)) < test_size
    pred = _fit_predict(blocks[~test], blocks[test], estimator, estimator_params, target, reference)
    y = blocks.loc[test, target].to_numpy(dtype=np.float64)
    ok = ~np.isnan(pred)
    return latency_metrics(y[ok], pred[ok])
