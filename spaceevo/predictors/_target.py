"""The timing statistic a predictor learns, read from a measurement table (``norm_ms`` derived from ``ratio``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS: tuple[str, ...] = ("median_ms", "min_ms", "mean_ms", "norm_ms")


def check_target(target: str) -> str:
    """Validate a target name."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is not one of {list(TARGETS)}")
    return target


def reference_ms(df: pd.DataFrame) -> float:
    """The reference block's undisturbed time on this table's device: the median of the rows' fastest reference.

    Each row's ``ref_min_ms`` is the fastest of its ~100 reference samples; their median over many rows is
    the reference's time when the machine runs at full speed, the scale that turns ``ratio`` into ms.

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        No row has a reference timing.
    """
    if "ref_min_ms" not in df.columns:
        raise ValueError("the measurement table has no 'ref_min_ms' column: profile with the reference on "
                         "(spaceevo profile --reference) to learn norm_ms")
    ref = df["ref_min_ms"].dropna().to_numpy(dtype=np.float64)
    if ref.size == 0:
        raise ValueError("no row has a reference timing (ref_min_ms): profile with the reference on "
                         "(spaceevo profile --reference) to learn norm_ms")
    return float(np.median(ref))


def with_target(df: pd.DataFrame, target: str, reference: float | None = None) -> pd.DataFrame:
    """``df`` with the ``target`` column present: ``norm_ms = ratio * reference`` (``reference_ms(df)`` if None).

    ``norm_ms`` is a unit's latency relative to the reference block timed beside it, in the reference's
    undisturbed milliseconds: the machine's changing speed cancels out of it.

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).
    target : str
    reference : float, optional

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValueError
        The rows lack the column (or the ``ratio``) the target needs.
    """
    check_target(target)
    if target != "norm_ms":
        if target not in df.columns:
            raise ValueError(f"measurement table lacks the {target!r} column (the predictor's target)")
        return df
    if "ratio" not in df.columns or df["ratio"].isna().any():
        missing = len(df) if "ratio" not in df.columns else int(df["ratio"].isna().sum())
        raise ValueError(f"target='norm_ms' needs the 'ratio' of every row ({missing} of {len(df)} rows lack it): "
                         "profile with the reference on (spaceevo profile --reference), or use "
                         "target='min_ms'")
    scale = reference_ms(df) if reference is None else float(reference)
    if not scale > 0:
        raise ValueError(f"reference={reference!r} must be a positive time in ms")
    out = df.copy()
    out["norm_ms"] = out["ratio"].to_numpy(dtype=np.float64) * scale
    return out


def uses_reference(target: str) -> bool:
    """Whether learning or measuring ``target`` needs the reference block timed beside every sample.

    ``norm_ms`` is a ratio to it, and ``auto`` picks ``norm_ms`` when the rows have ratios; ``min_ms``,
    ``median_ms`` and ``mean_ms`` are read from the unit's own samples, so timing the reference only costs time.

    Parameters
    ----------
    target : str
        One of ``TARGETS``, or ``auto``.

    Returns
    -------
    bool
    """
    return target in ("auto", "norm_ms")


def auto_target(df: pd.DataFrame) -> str:
    """The steadiest target every ok row supports: ``norm_ms`` (reference on), else ``min_ms``, else ``median_ms``.

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).

    Returns
    -------
    str
        One of ``TARGETS``.
    """
    rows = df[df["status"].fillna("ok") == "ok"] if "status" in df.columns else df
    for target, column in (("norm_ms", "ratio"), ("min_ms", "min_ms")):
        if len(rows) and column in rows.columns and rows[column].notna().all():
            return target
    return "median_ms"
