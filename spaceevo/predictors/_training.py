"""Training a predictor on store rows, with k-fold and held-out unit metrics in its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from spaceevo.datasets import read_rows

from ._bundle import LatencyPredictor, block_rows
from ._evaluate import cross_validate_units, holdout_units
from ._target import auto_target, check_target, reference_ms


def train_predictor(df: pd.DataFrame, device: str, dtype: str = "int8", estimator: str = "lgbm",
                    fingerprint: dict | None = None, source: str | None = None, estimator_params: dict | None = None,
                    cv_folds: int = 5, seed: int = 0, target: str = "median_ms") -> LatencyPredictor:
    """Train a predictor on the store's rows of one device and dtype; k-fold unit metrics go in the manifest.

    ``target`` is the timing statistic learned (``median_ms`` by default; ``min_ms`` is the least
    disturbed run; ``norm_ms``, the latency relative to the reference block timed beside it, is the
    steadiest on a shared machine and needs a table profiled with the reference on).

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).
    device : str
        Only this device's rows are used.
    dtype : str
    estimator : str
        A registered estimator (``list_estimators``).
    fingerprint : dict, optional
    source : str, optional
        Where the rows came from (recorded in the manifest).
    estimator_params : dict, optional
    cv_folds : int
        k of the k-fold unit metrics (< 2 skips them).
    seed : int
    target : str
        One of ``TARGETS``.

    Returns
    -------
    LatencyPredictor

    Raises
    ------
    ValueError
        No rows of ``device`` and ``dtype``, an unknown estimator or target.
    """
    check_target(target)
    if "device" in df.columns and device is not None:
        df = df[df["device"] == device]
    if "dtype" in df.columns:
        df = df[df["dtype"] == dtype]
    if df.empty:
        raise ValueError(f"no measurements for device={device!r} dtype={dtype!r}")
    ref = reference_ms(block_rows(df)) if target == "norm_ms" else None
    cv = cross_validate_units(df, estimator=estimator, folds=cv_folds, seed=seed, estimator_params=estimator_params,
                              target=target, reference=ref) if cv_folds >= 2 else None
    pred = LatencyPredictor(device=device, dtype=dtype, estimator=estimator, estimator_params=estimator_params,
                            fingerprint=fingerprint, source=source, target=target, reference_ms=ref).fit(df)
    if cv is not None:
        pred._manifest["metrics"]["unit_cv"] = cv["overall"]
        pred._manifest["metrics"]["unit_cv_by_type"] = cv["by_type"]
        pred._manifest["metrics"]["unit_holdout"] = holdout_units(df, estimator=estimator, seed=seed,
                                                                  estimator_params=estimator_params, target=target,
                                                                  reference=ref)
    return pred


def only_device(df: pd.DataFrame, db: str | Path, dtype: str) -> str:
    """The one device of the rows, or an error listing the devices to choose from.

    Parameters
    ----------
    df : pandas.DataFrame
    db : str or Path
        Where the rows came from (for the message).
    dtype : str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        The rows hold no device or several.
    """
    devices = sorted(set(df["device"].dropna().astype(str))) if "device" in df.columns else []
    if len(devices) != 1:
        found = f"devices {devices}" if devices else "no device"
        raise ValueError(f"--device is needed: {db} holds {found} with {dtype} rows; pass --device ID")
    return devices[0]


def training_rows(db: str | Path, device: str | None = None, dtype: str = "int8",
                  models_db: Sequence[str | Path] = (),
                  note: Callable[[str], object] | None = None) -> tuple[pd.DataFrame, str]:
    """The rows ``spaceevo train`` learns from: one device's ``dtype`` rows of a store, plus more whole models.

    Parameters
    ----------
    db : str or Path
        A latency store, or its CSV / Parquet export (``read_rows``).
    device : str, optional
        Default: the store's only device with ``dtype`` rows (``note`` says which).
    dtype : str
    models_db : sequence of str or Path
        More stores whose whole-model rows (``kind == 'model'``) are added.
    note : callable, optional
        Receives a line about choices made for the caller (the device picked).

    Returns
    -------
    (pandas.DataFrame, str)
        The rows and the device.

    Raises
    ------
    FileNotFoundError
        A store does not exist.
    ValueError
        No rows of ``device`` and ``dtype``, or several devices and no ``device``.
    """
    df = read_rows(db, device=device, dtype=dtype)
    if device is None:
        device = only_device(df, db, dtype)
        df = df[df["device"] == device]
        if note is not None:
            note(f"training on device {device!r} (the only device with {dtype} rows in {db})\n")
    if df.empty:
        raise ValueError(f"no measurements for --device {device!r} --dtype {dtype!r} in {db}")
    for extra in models_db or []:
        more = read_rows(extra, device=device, dtype=dtype)
        df = pd.concat([df, more[more["kind"] == "model"]], ignore_index=True)
    return df, device


def train_from_store(db: str | Path, device: str | None = None, dtype: str = "int8", estimator: str = "lgbm",
                     folds: int = 5, seed: int = 0, target: str = "auto", models_db: Sequence[str | Path] = (),
                     note: Callable[[str], object] | None = None) -> LatencyPredictor:
    """``train_predictor`` on a latency store or its export (what ``spaceevo train`` runs).

    Parameters
    ----------
    db : str or Path
        A latency store, or its CSV / Parquet export (``read_rows``).
    device : str, optional
        Default: the store's only device with ``dtype`` rows (``note`` says which).
    dtype : str
    estimator : str
    folds : int
        k of the k-fold unit metrics (0 skips them).
    seed : int
    target : str
        One of ``TARGETS``, or ``auto`` (``auto_target`` of the rows).
    models_db : sequence of str or Path
        More stores whose whole-subnet rows (``kind == 'model'``) join the composition term's data.
    note : callable, optional
        Receives a line about choices made for the caller (the device picked).

    Returns
    -------
    LatencyPredictor
        With the store's fingerprint ids and ``source`` in its manifest.

    Raises
    ------
    FileNotFoundError
        A store does not exist.
    ValueError
        No rows of ``device`` and ``dtype``, several devices and no ``device``, or a bad estimator or target.
    """
    df, device = training_rows(db, device, dtype, models_db, note)
    if target == "auto":
        target = auto_target(df)
    fp = None
    if "fingerprint_id" in df.columns:
        fp = {"fingerprint_ids": sorted(set(df["fingerprint_id"].dropna().astype(str)))}
    return train_predictor(df, device=device, dtype=dtype, estimator=estimator, fingerprint=fp, source=str(db),
                           cv_folds=folds, seed=seed, target=target)

