"""Unit-level evaluation of a predictor: k-fold cross-validation and held-out splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._metrics import latency_metrics


def cross_validate_units(df: pd.DataFrame, estimator: str = "lgbm", folds: int = 5, seed: int = 0,
                         estimator_params: dict | None = None) -> dict:
    """K-fold out-of-fold predictions of block rows: overall and per-type metrics, and the rows."""
    from ._bundle import LatencyPredictor

    blocks = LatencyPredictor._block_rows(df).reset_index(drop=True)
    if folds < 2 or len(blocks) < folds:
        raise ValueError(f"folds={folds} must be >= 2 and <= the number of block rows ({len(blocks)})")
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(blocks)) % folds
    pred = np.full(len(blocks), np.nan)
    y = blocks["median_ms"].to_numpy(dtype=np.float64)
    for f in range(folds):
        train = blocks[fold != f]
        test = blocks[fold == f]
        model = LatencyPredictor(estimator=estimator, estimator_params=estimator_params).fit(train)
        known = test["type"].isin(set(model.models)).to_numpy()
        if known.any():
            from ._features import configs_from_frame

            pred[np.nonzero(fold == f)[0][known]] = model.predict_blocks(configs_from_frame(test[known]))
    ok = ~np.isnan(pred)
    by_type = {t: latency_metrics(y[ok & (blocks["type"] == t).to_numpy()], pred[ok & (blocks["type"] == t).to_numpy()])
               for t in sorted(blocks["type"].unique())}
    return {"overall": latency_metrics(y[ok], pred[ok]), "by_type": by_type,
            "rows": blocks.assign(predicted_ms=pred)}


def holdout_units(df: pd.DataFrame, estimator: str = "lgbm", test_size: float = 0.2, seed: int = 0) -> dict:
    """Train on a random split, score the held-out block rows."""
    from ._bundle import LatencyPredictor
    from ._features import configs_from_frame

    blocks = LatencyPredictor._block_rows(df).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    test = rng.random(len(blocks)) < test_size
    model = LatencyPredictor(estimator=estimator).fit(blocks[~test])
    tb = blocks[test & blocks["type"].isin(set(model.models)).to_numpy()]
    return latency_metrics(tb["median_ms"].to_numpy(), model.predict_blocks(configs_from_frame(tb)))
