"""Accuracy metrics of latency predictions: RMSE, MAPE, +-5% / +-10% accuracy, Kendall tau."""

from __future__ import annotations

import numpy as np


def latency_metrics(measured, predicted) -> dict:
    """RMSE (ms), MAPE (%), share within +-5% and +-10% (%), Kendall tau and n.

    Parameters
    ----------
    measured, predicted : array-like
        Latencies (ms) of the same units.

    Returns
    -------
    dict
        ``rmse_ms``, ``mape``, ``acc_5pct``, ``acc_10pct``, ``kendall_tau``, ``n``.
    """
    y = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"measured and predicted must have the same shape, got {y.shape} and {p.shape}")
    if len(y) == 0:
        return {"n": 0, "rmse_ms": float("nan"), "mape": float("nan"), "acc_5pct": float("nan"),
                "acc_10pct": float("nan"), "kendall_tau": float("nan")}
    rel = np.abs(p - y) / y
    tau = float("nan")
    if len(y) > 1:
        from scipy.stats import kendalltau

        tau = float(kendalltau(y, p).statistic)
    return {"n": int(len(y)), "rmse_ms": float(np.sqrt(np.mean((p - y) ** 2))), "mape": float(100 * rel.mean()),
            "acc_5pct": float(100 * np.mean(rel <= 0.05)), "acc_10pct": float(100 * np.mean(rel <= 0.10)),
            "kendall_tau": tau}
