"""Scoring a trained predictor on stored rows, with a predicted-vs-measured scatter plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from spaceevo.plotting import pyplot, save_figure

from ._bundle import LatencyPredictor, block_rows
from ._evaluate import cross_validate_units
from ._features import configs_from_frame
from ._metrics import latency_metrics
from ._target import with_target


def evaluate_on_rows(pred: LatencyPredictor, df: pd.DataFrame, folds: int = 5, plot: str | Path | None = None,
                     seed: int = 0) -> dict:
    """Unit-level and model-level metrics of ``pred`` on ``df`` (plus k-fold retraining), JSON-ready.

    Parameters
    ----------
    pred : LatencyPredictor
    df : pandas.DataFrame
        Store rows of the predictor's device and dtype (blocks and, if any, whole subnets).
    folds : int
        k of the k-fold retraining on ``df`` (0 skips it).
    plot : str or Path, optional
        Where the predicted-vs-measured scatter PNG goes.
    seed : int

    Returns
    -------
    dict
        ``metrics`` per level, and ``plot`` when written.
    """
    if "status" in df.columns:
        df = df[df["status"].fillna("ok") == "ok"]
    df = with_target(df, pred.target, pred.reference_ms)
    blocks = block_rows(df)
    blocks = blocks[blocks["type"].isin(set(pred.models))]
    metrics: dict = {}
    points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if len(blocks):
        y = blocks[pred.target].to_numpy(dtype=np.float64)
        p = pred.predict_blocks(configs_from_frame(blocks))
        metrics["unit"] = latency_metrics(y, p)
        points["blocks"] = (y, p)
    models = df[df["kind"] == "model"] if "kind" in df.columns else df.iloc[:0]
    if len(models):
        cfgs = [json.loads(c) if isinstance(c, str) else c for c in models["config"]]
        y = models[pred.target].to_numpy(dtype=np.float64)
        outs = [pred.predict_subnet(c["space"], c["subnet"]) for c in cfgs]
        sums = np.array([o["blocks_sum_ms"] for o in outs])
        composed = np.array([o["latency_ms"] for o in outs])
        metrics["model_sum"] = latency_metrics(y, sums)
        metrics["model_composed"] = latency_metrics(y, composed)
        points["subnets"] = (y, composed)
    if folds >= 2 and len(blocks) >= folds:
        metrics["unit_cv"] = cross_validate_units(df, estimator=pred.estimator, folds=folds, seed=seed,
                                                  estimator_params=pred.estimator_params,
                                                  target=pred.target, reference=pred.reference_ms)["overall"]
    out = {"device": pred.device, "dtype": pred.dtype, "estimator": pred.estimator, "target": pred.target,
           "metrics": metrics,
           "plot": None}
    if plot is not None and points:
        out["plot"] = str(scatter_plot(points, plot, title=f"{pred.device} {pred.dtype} ({pred.estimator})"))
    return out


def scatter_plot(points: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """Write a log-log predicted-vs-measured scatter with the +-10% band."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4.5), squeeze=False)
    for ax, (name, (y, p)) in zip(axes[0], points.items()):
        ax.scatter(y, p, s=8, alpha=0.6)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        xs = np.geomspace(lo, hi, 50)
        ax.plot(xs, xs, "k-", lw=1)
        ax.plot(xs, xs * 1.1, "k--", lw=0.6)
        ax.plot(xs, xs * 0.9, "k--", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(f"{title}: {name}")
    return save_figure(fig, path, dpi=100)
