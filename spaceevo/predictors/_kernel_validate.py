"""Whole ONNX models measured with the collector's protocol, and a kernel predictor checked against them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spaceevo.latency import MODEL_ROUNDS, OnnxModelUnit, load_onnx, model_entries

from ._metrics import latency_metrics
from ._target import with_target
from ._validate import _measure_units, make_backend


def measure_models(models: str | Path | Sequence[str | Path], backend: str = "ort", dtype: str = "int8",
                   threads: int = 1, rounds: int = 1, repeats: int | None = None, statistic: str = "median_ms",
                   reference: float | None = None, db: str | Path | None = None, progress: bool = True,
                   seed: int = 0, with_reference: bool = False,
                   input_shape: Sequence[int] | None = None) -> dict[str, dict]:
    """Measure ONNX models whole (a zoo folder, a folder of ``*.onnx`` or files): ``{name: row}``.

    Each row holds the store's statistics plus ``ms`` (the ``statistic``; ``norm_ms`` scales the measured
    ratio by ``reference``), the model's family, seed and path. With ``db`` a rerun reuses the rows.

    Parameters
    ----------
    models : str, Path or sequence of them
    backend : str
    dtype : str
    threads : int
    rounds : int
        Fresh sessions per model.
    repeats : int, optional
        Timed samples per round (default: the backend's).
    statistic : str
        What ``ms`` is (one of ``TARGETS``).
    reference : float, optional
        The reference block's latency (``norm_ms``).
    db : str or Path, optional
        Keep the rows in this store; a rerun reuses them.
    progress : bool
    seed : int
    with_reference : bool
        Time the reference block beside every sample.
    input_shape : sequence of int, optional
        For models with a symbolic input.

    Returns
    -------
    dict
        ``{name: row}``.
    """
    entries = model_entries(models)
    units = [OnnxModelUnit(e["path"], e["name"], e.get("family"), e.get("seed"), input_shape) for e in entries]
    be = make_backend(backend, threads, repeats, rounds, reference=statistic == "norm_ms" or with_reference)
    be.seed = seed
    df = with_target(_measure_units(list(dict.fromkeys(units)), be, dtype, db, None, progress, rounds), statistic,
                     reference)
    by_key = {k: r for k, r in zip(df["key"], df.to_dict("records"))}
    out = {}
    for u, e in zip(units, entries):
        row = by_key.get(u.key)
        if row is None:
            raise RuntimeError(f"model {e['path']} could not be measured (see the store's error column)")
        out[u.name] = {**{k: row.get(k) for k in ("median_ms", "min_ms", "mean_ms", "p90_ms", "cv", "round_cv",
                                                  "ratio", "ref_min_ms", "rounds", "n")},
                       "ms": float(row[statistic]), "statistic": statistic, "family": e.get("family"),
                       "seed": e.get("seed"), "path": e["path"]}
    return out


def measure_model(model: str | Path, backend: str = "ort", dtype: str = "int8", threads: int = 1,
                  rounds: int = MODEL_ROUNDS,
                  repeats: int | None = None, reference: bool = True, progress: bool = False,
                  input_shape: Sequence[int] | None = None) -> dict:
    """Time one ONNX model whole with the collector's protocol (rounds spread, reference beside each sample).

    Parameters
    ----------
    model : ONNX file (FP32; quantised by the collector for ``dtype='int8'``).
    backend, dtype, threads, rounds, repeats, reference : the collector's protocol.
    input_shape : static input shape for a model whose input dimensions are symbolic.

    Returns
    -------
    dict with the timing statistics (median_ms, min_ms, mean_ms, p90_ms, cv, ratio, ...).
    """
    load_onnx(model, input_shape)  # bad input fails here with the file's name and the fix
    rows = measure_models([model], backend, dtype, threads, rounds, repeats, progress=progress,
                          statistic="median_ms", with_reference=reference, input_shape=input_shape)
    row = next(iter(rows.values()))
    return {"model": str(model), "backend": backend, "dtype": dtype, "threads": threads, "rounds": rounds,
            "reference": reference, **{k: v for k, v in row.items() if k not in ("ms", "statistic")}}


def validate_models(pred: Any, models: str | Path | Sequence[str | Path], backend: str = "ort", dtype: str = "int8",
                    threads: int = 1, rounds: int = 1, repeats: int | None = None, db: str | Path | None = None,
                    progress: bool = True, measured: dict[str, float] | None = None, seed: int = 0) -> dict:
    """Measure every model whole and compare with a kernel predictor: the subnet validation's keys, per family.

    Parameters
    ----------
    pred : a ``KernelLatencyPredictor``.
    models : a zoo folder (its manifest gives families and seeds), a folder of ``*.onnx`` or files.
    rounds, repeats, threads : the collector's protocol for the whole models.
    db : keep the measurements in this latency store (a rerun reuses them).
    measured : ``{model name: ms}`` in the predictor's statistic, skipping the measurement.

    Returns
    -------
    dict with ``samples``, ``acc_10pct``, ``acc_5pct``, ``mape``, ``kendall_tau``, ``rmse_ms``,
    ``without_composition``, ``per_family`` and per-model ``rows``; models the predictor was trained on
    are left out and listed in ``excluded``.

    Raises
    ------
    ValueError when fewer than two models remain.
    """
    trained = set(pred.manifest.get("dataset", {}).get("training_models") or [])
    entries = model_entries(models)
    excluded = [e["name"] for e in entries if e["name"] in trained]
    entries = [e for e in entries if e["name"] not in trained]
    if len(entries) < 2:
        raise ValueError(f"{len(entries)} model(s) left to validate on (the predictor was trained on {len(excluded)} "
                         "of them): generate a validation zoo with another --seed")
    if measured is None:
        rows = measure_models([e["path"] for e in entries], backend, dtype, threads, rounds, repeats, pred.target,
                              pred.reference_ms, db, progress, seed)
        by_path = {r["path"]: r["ms"] for r in rows.values()}
        measured = {e["name"]: by_path[e["path"]] for e in entries}
    out_rows = []
    for e in entries:
        p = pred.predict_model(e["path"])
        y = float(measured[e["name"]])
        out_rows.append({"model": e["name"], "family": e.get("family"), "seed": e.get("seed"), "measured_ms": y,
                         "predicted_ms": p["latency_ms"], "kernels_sum_ms": p["kernels_sum_ms"],
                         "rel_error": (p["latency_ms"] - y) / y, "kernels": len(p["kernels"]),
                         "fallback_kernels": sum(k["source"] == "fallback" for k in p["kernels"]),
                         "unsupported": p["unsupported"]})
    y = np.array([r["measured_ms"] for r in out_rows])
    m = latency_metrics(y, np.array([r["predicted_ms"] for r in out_rows]))
    raw = latency_metrics(y, np.array([r["kernels_sum_ms"] for r in out_rows]))
    fam: dict[str, list[dict]] = defaultdict(list)
    for r in out_rows:
        fam[str(r["family"])].append(r)
    per_family = {f: latency_metrics(np.array([r["measured_ms"] for r in rs]),
                                     np.array([r["predicted_ms"] for r in rs])) for f, rs in sorted(fam.items())}
    return {"predictor_device": pred.device, "backend": backend, "dtype": dtype, "threads": threads,
            "rounds": rounds, "statistic": pred.target, "samples": len(out_rows), "acc_10pct": m["acc_10pct"],
            "acc_5pct": m["acc_5pct"], "mape": m["mape"], "rmse_ms": m["rmse_ms"], "kendall_tau": m["kendall_tau"],
            "with_composition": m, "without_composition": raw, "per_family": per_family,
            "composition": pred.composition, "predictor_warnings": pred.warnings, "excluded": excluded,
            "rows": out_rows}
