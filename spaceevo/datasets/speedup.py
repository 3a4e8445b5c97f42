"""INT8 / FP32 speed-up per unit and per unit type, from a latency dataset (SPACEEVO.md section 1)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spaceevo.plotting import pyplot, save_figure

_KEYS = ["device", "threads", "kind", "type", "key"]


def int8_speedup(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per unit: fp32_ms / int8_ms for units measured in both dtypes; per type: a summary of that ratio.

    ``df`` holds ok rows in the store's format. A speed-up below 1 means INT8 is slower.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Per unit (``int8_ms``, ``fp32_ms``, ``speedup``) and per type (median, min, max, share slower).
    """
    missing = {"dtype", "median_ms", *_KEYS} - set(df.columns)
    if missing:
        raise ValueError(f"measurements lack columns {sorted(missing)}")
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    wide = ok.pivot_table(index=_KEYS, columns="dtype", values="median_ms", aggfunc="median")
    if "int8" not in wide.columns or "fp32" not in wide.columns:
        raise ValueError("the dataset needs units measured in both int8 and fp32 (profile with --dtype int8 "
                         "--dtype fp32)")
    per_unit = wide.dropna(subset=["int8", "fp32"]).reset_index()
    per_unit = per_unit.rename(columns={"int8": "int8_ms", "fp32": "fp32_ms"})
    per_unit["speedup"] = per_unit["fp32_ms"] / per_unit["int8_ms"]
    if per_unit.empty:
        raise ValueError("no unit was measured in both int8 and fp32 on the same device and threads")
    g = per_unit.groupby(["device", "kind", "type"])["speedup"]
    per_type = pd.DataFrame({
        "units": g.size(), "median_speedup": g.median(), "min_speedup": g.min(), "max_speedup": g.max(),
        "int8_slower_frac": g.apply(lambda s: float((s < 1).mean())),
    }).reset_index().sort_values(["device", "median_speedup"])
    return per_unit[[*_KEYS, "int8_ms", "fp32_ms", "speedup"]], per_type.reset_index(drop=True)


def plot_speedup(per_unit: pd.DataFrame, path: str | Path) -> Path:
    """A PNG box plot of the INT8 speed-up per unit type (log scale, 1x marked).

    Parameters
    ----------
    per_unit : pandas.DataFrame
        The first frame of ``int8_speedup``.
    path : str or Path

    Returns
    -------
    Path
    """
    plt = pyplot()
    order = per_unit.groupby("type")["speedup"].median().sort_values().index.tolist()
    data = [per_unit.loc[per_unit["type"] == t, "speedup"].to_numpy() for t in order]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.5))
    ax.boxplot(data, orientation="horizontal", showfliers=True)
    ax.set_yticks(range(1, len(order) + 1), order)
    ax.axvline(1.0, color="red", linestyle="--", linewidth=1, label="INT8 = FP32")
    ax.set_xscale("log")
    ax.set_xlabel("INT8 speed-up (FP32 latency / INT8 latency)")
    devices = ", ".join(sorted(per_unit["device"].unique()))
    ax.set_title(f"INT8 speed-up per unit type ({devices})")
    ax.legend(loc="lower right")
    return save_figure(fig, path)
