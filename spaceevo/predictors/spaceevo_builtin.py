"""Build the built-in ``vnni-ort-int8`` and ``pixel4-tflite-int8`` predictors from the public SpaceEvo tables.

The per-block latencies recovered from the look-up tables (``spaceevo.datasets.lut_import``) are kept as an
exact table; a monotone LightGBM model on log latency answers every other configuration. Each block of a
prediction says where its value comes from: ``table`` (recovered from the published tables), ``model``
(a configuration the tables never contain) and ``extrapolated`` (outside every table: e.g. stage0, or
Pixel 4's fixed blocks, which the tables do not cover and which come from a MACs x ms/MAC rate).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spaceevo.datasets import (DEVICE_PREDICTORS, SOURCE, LutRecovery, fixed_blocks_frame, recover_block_latencies,
                               write_store)
from spaceevo.space import BlockConfig, SearchSpace, as_search_space, get_hyperspace

from ._bundle import LatencyPredictor
from ._features import block_features
from ._lut_estimator import ESTIMATOR, SpaceEvoLutRegressor
from ._registry import builtin_dir

log = logging.getLogger(__name__)

LICENCE = "MIT (SpaceEvo public release, microsoft/Moonlit)"
def describe_blocks(pred, configs) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Latency (ms), source (``table``/``model``, or the predictor's own words) and extrapolated flag per block.

    Parameters
    ----------
    pred : LatencyPredictor
    configs : sequence of BlockConfig

    Returns
    -------
    (numpy.ndarray, list of str, numpy.ndarray)
    """
    configs = list(configs)
    lat, src = pred.predict_blocks(configs, return_source=True)
    src = np.asarray(src, dtype=object)
    extra = np.zeros(len(configs), bool)
    X = block_features(configs, getattr(pred, "feature_version", 1)) if configs else None
    types = np.array([c.type for c in configs], dtype=object)
    for t in set(types.tolist()):
        model = pred.models.get(t)
        m = types == t
        if hasattr(model, "predict_extrapolated"):
            extra[m] = model.predict_extrapolated(X[m])
            src[m] = np.where(src[m] == "lookup", "table", "model")
    return lat, [str(s) for s in src], extra


def predict_subnet_blocks(pred, space, subnet) -> dict:
    """``pred.predict_subnet`` with every block's ``source`` and ``extrapolated`` flag (see module docstring).

    Parameters
    ----------
    pred : LatencyPredictor
    space : SearchSpace or str
    subnet : Subnet or str

    Returns
    -------
    dict
        ``predict_subnet``'s dict plus ``n_extrapolated`` and ``extrapolated_ms``.
    """
    out = pred.predict_subnet(space, subnet)
    sp = as_search_space(space)
    sn = sp.parse_subnet(subnet) if isinstance(subnet, str) else subnet
    _lat, src, extra = describe_blocks(pred, [b.config for b in sp.blocks(sn)])
    for b, s, x in zip(out["blocks"], src, extra):
        b["source"], b["extrapolated"] = s, bool(x)
    out["n_extrapolated"] = int(np.sum(extra))
    out["extrapolated_ms"] = float(sum(b["latency_ms"] for b in out["blocks"] if b["extrapolated"]))
    return out


def fit_lut_predictor(df: pd.DataFrame, device: str, synthetic_types=(), source: str | None = None,
                      estimator_params: dict | None = None):
    """A ``LatencyPredictor`` with ``spaceevo-lut`` models (feature schema 1, readable by every version).

    Parameters
    ----------
    df : pandas.DataFrame
        Recovered (and extrapolated) block rows.
    device : str
    synthetic_types : iterable of str
        Block types whose rows are extrapolated, not table values (their predictions are flagged).
    source : str, optional
    estimator_params : dict, optional

    Returns
    -------
    LatencyPredictor
    """
    pred = LatencyPredictor(device=device, dtype="int8", estimator=ESTIMATOR, estimator_params=estimator_params,
                            source=source)
    pred.feature_version = 1
    pred.fit(df)
    for t in synthetic_types:
        pred.models[t].synthetic_ = True
    return pred


def build_spaceevo(lut_dir: str | Path, fixed_csv: str | Path | None = None, out_dir: str | Path | None = None,
                   hyperspaces: tuple[str, ...] = ("onnxw", "mobilew"), seed: int = 0, db: str | Path | None = None,
                   recoveries: dict | None = None) -> dict:
    """Recover per-block latencies, train one predictor per hyperspace, save ``<device>.json.gz``; return reports.

    ``db``: also write the recovered blocks (and VNNI's measured fixed blocks) to that latency store.

    Parameters
    ----------
    lut_dir : str or Path
        The ``block_lut`` folder (``onnxw/``, ``mobilew/``).
    fixed_csv : str or Path, optional
        ``vnni_fixed_blocks.csv`` (measured fixed blocks of the VNNI CPU).
    out_dir : str or Path, optional
        Where the predictor files go (default: the built-ins' folder).
    hyperspaces : tuple of str
    seed : int
    db : str or Path, optional
    recoveries : dict, optional
        ``{hyperspace: LutRecovery}`` already computed (skips the least squares).

    Returns
    -------
    dict
        Per device: the recovery report, ``path``, ``size_bytes``, ``unit_train`` (and ``db_rows``).
    """
    out = Path(out_dir) if out_dir is not None else builtin_dir()
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for hyper in hyperspaces:
        rec = (recoveries or {}).get(hyper) or recover_block_latencies(lut_dir, hyper)
        df = rec.to_frame(trusted_only=True)
        if hyper == "onnxw" and fixed_csv is not None:
            df = pd.concat([df, fixed_blocks_frame(fixed_csv)], ignore_index=True)
        device = DEVICE_PREDICTORS[hyper]
        extra = _fixed_by_mac_rate(df, hyper, seed)
        if len(extra):
            df = pd.concat([df, extra], ignore_index=True)
        synthetic = sorted(set(extra["type"])) if len(extra) else []
        if db is not None:
            db_rows = write_store(rec.to_frame(), db)
            if hyper == "onnxw" and fixed_csv is not None:
                db_rows += write_store(fixed_blocks_frame(fixed_csv), db)
        pred = fit_lut_predictor(df, device, synthetic, source=SOURCE)
        pred._manifest["licence"] = LICENCE
        pred._manifest["lut_recovery"] = rec.report
        pred._manifest["extrapolated_types"] = synthetic
        pred._manifest["sources"] = {"table": "per-block latency recovered from the SpaceEvo tables (or "
                                              "vnni_fixed_blocks.csv)",
                                     "model": "monotone LightGBM of a configuration the tables never contain",
                                     "extrapolated": "outside every table's configurations (e.g. stage0; "
                                                     "Pixel 4's fixed blocks at a MACs x ms/MAC rate)"}
        path = pred.save(out / f"{device}.json.gz")
        reports[device] = {**rec.report, "path": str(path), "size_bytes": path.stat().st_size,
                           "unit_train": pred.manifest["metrics"]["unit_train"]}
        if db is not None:
            reports[device]["db_rows"] = db_rows
    return reports


def _fixed_by_mac_rate(df: pd.DataFrame, hyper: str, seed: int) -> pd.DataFrame:
    """Rows for block types no table covers (e.g. Pixel 4's fixed blocks): MACs x the tables' median ms/MAC.

    A coarse extrapolation, flagged in the manifest (``extrapolated_types``): these blocks have no measurement.
    """
    known = set(df["type"])
    h = get_hyperspace(hyper)
    digits = "0" * 6
    space = SearchSpace.parse(f"{hyper}-{digits}-{digits}")
    cfgs = {}
    for res in sorted(set(h.resolutions) | set(h.lut_resolutions)):
        for sub in space.sample(60, seed=seed + res):
            sub = space.parse_subnet(str(sub).rsplit("_r", 1)[0] + f"_r{res}")
            for b in space.blocks(sub):
                if b.config.type not in known:
                    cfgs[b.config] = None
    if not cfgs:
        return df.iloc[:0]
    macs = df.apply(lambda r: BlockConfig(r["type"], int(r["hw"]), int(r["cin"]), int(r["cout"]), int(r["k"]),
                                          float(r["e"]), int(r["stride"]), r["act"]).macs, axis=1).to_numpy(float)
    rate = float(np.median(df["median_ms"].to_numpy(float) / np.maximum(macs, 1.0)))
    blocks = list(cfgs)
    lat = np.array([max(c.macs, 1) * rate for c in blocks])
    log.info("%s: %d blocks of types %s extrapolated at %.3g ms/MMAC", hyper, len(blocks),
             sorted({c.type for c in blocks}), rate * 1e6)
    return LutRecovery(hyper, blocks, lat, df.iloc[:0]).to_frame()


def sanity_report(pred, hyper: str, n: int = 200, seed: int = 0) -> dict:
    """Monotone on average in hw/cin/cout/k/e; unseen middle values vs. linear interpolation (15%).

    Parameters
    ----------
    pred : LatencyPredictor
    hyper : str
    n : int
        Random base configurations.
    seed : int

    Returns
    -------
    dict
        ``monotone_fraction`` per field, ``interp_within_15pct``, ``interp_mean_dev``, and per field.
    """
    h = get_hyperspace(hyper)
    rng = np.random.default_rng(seed)
    mono: dict[str, list[float]] = {f: [] for f in ("hw", "cin", "cout", "k", "e")}
    interp: dict[str, list[float]] = {"hw": [], "cout": [], "cin": []}
    for _ in range(n):
        ch = h.block_choices[rng.integers(len(h.block_choices))]
        k = int(rng.choice(ch.kernel_sizes))
        e = float(rng.choice(ch.expand_ratios))
        c = int(rng.choice([32, 48, 64, 96, 128, 192]))
        hw = int(rng.choice([7, 14, 28]))
        base = dict(type=ch.type, hw=hw, cin=c, cout=c, k=k, e=e, stride=1, act=ch.act)
        grids = {"hw": [hw // 2 + 1, hw, hw + hw // 7 + 1, 2 * hw], "cin": [c, c + 16, c + 32, c + 48],
                 "cout": [c, c + 16, c + 32, c + 48], "k": list(ch.kernel_sizes), "e": list(ch.expand_ratios)}
        for f, vals in grids.items():
            if len(vals) < 2:
                continue
            lat = pred.predict_blocks([BlockConfig(**{**base, f: v}) for v in vals])
            mono[f].append(float(np.mean(np.diff(lat) >= -1e-9)))
        # resolution 208 between 192 and 224 (hw x 13/14 between x 12/14 and x 14/14); width c+8 between c, c+16
        hw_lo, hw_mid, hw_hi = hw * 12 // 14, hw * 13 // 14, hw
        for f, (lo, mid, hi) in {"hw": (hw_lo, hw_mid, hw_hi), "cout": (c, c + 8, c + 16),
                                 "cin": (c, c + 8, c + 16)}.items():
            if not lo < mid < hi:
                continue
            lat = pred.predict_blocks([BlockConfig(**{**base, f: v}) for v in (lo, mid, hi)])
            lin = lat[0] + (lat[2] - lat[0]) * (mid - lo) / (hi - lo)
            interp[f].append(abs(lat[1] - lin) / lin)
    allv = np.concatenate([np.asarray(v) for v in interp.values()])
    return {"monotone_fraction": {f: float(np.mean(v)) for f, v in mono.items() if v},
            "interp_within_15pct": float(np.mean(allv <= 0.15)), "interp_mean_dev": float(np.mean(allv)),
            "interp_within_15pct_by_field": {f: float(np.mean(np.asarray(v) <= 0.15)) for f, v in interp.items() if v}}


__all__ = ["ESTIMATOR", "LICENCE", "SpaceEvoLutRegressor", "build_spaceevo", "describe_blocks", "fit_lut_predictor",
           "predict_subnet_blocks", "sanity_report"]
