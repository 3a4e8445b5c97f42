"""Build the built-in ``vnni-ort-int8`` and ``pixel4-tflite-int8`` predictors from the public SpaceEvo tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from spaceevo.datasets.lut_import import DEVICES, SOURCE, fixed_blocks_frame, recover_block_latencies

from ._bundle import train_predictor
from ._registry import builtin_dir

log = logging.getLogger(__name__)

LICENCE = "MIT (SpaceEvo public release, microsoft/Moonlit)"


def build_spaceevo(lut_dir: str | Path, fixed_csv: str | Path | None = None, out_dir: str | Path | None = None,
                   hyperspaces: tuple[str, ...] = ("onnxw", "mobilew"), estimator: str = "lgbm",
                   seed: int = 0) -> dict:
    """Recover per-block latencies, train one predictor per hyperspace, save ``<device>.json.gz``; return reports."""
    out = Path(out_dir) if out_dir is not None else builtin_dir()
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for hyper in hyperspaces:
        rec = recover_block_latencies(lut_dir, hyper)
        df = rec.to_frame(trusted_only=True)
        if hyper == "onnxw" and fixed_csv is not None:
            df = pd.concat([df, fixed_blocks_frame(fixed_csv)], ignore_index=True)
        device = DEVICES[hyper]
        extra = _fixed_by_mac_rate(df, hyper, seed)
        if len(extra):
            df = pd.concat([df, extra], ignore_index=True)
        pred = train_predictor(df, device=device, estimator=estimator, source=SOURCE, cv_folds=0, seed=seed)
        pred._manifest["licence"] = LICENCE
        pred._manifest["lut_recovery"] = rec.report
        pred._manifest["extrapolated_types"] = sorted(set(extra["type"])) if len(extra) else []
        path = pred.save(out / f"{device}.json.gz")
        reports[device] = {**rec.report, "path": str(path), "size_bytes": path.stat().st_size,
                           "unit_train": pred.manifest["metrics"]["unit_train"]}
    return reports


def _fixed_by_mac_rate(df: pd.DataFrame, hyper: str, seed: int) -> pd.DataFrame:
    """Rows for block types no table covers (e.g. Pixel 4's fixed blocks): MACs x the tables' median ms/MAC.

    A coarse extrapolation, flagged in the manifest (``extrapolated_types``): these blocks have no measurement.
    """
    from spaceevo.datasets.lut_import import LutRecovery
    from spaceevo.space import SearchSpace, get_hyperspace

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
    from spaceevo.space import BlockConfig

    macs = df.apply(lambda r: BlockConfig(r["type"], int(r["hw"]), int(r["cin"]), int(r["cout"]), int(r["k"]),
                                          float(r["e"]), int(r["stride"]), r["act"]).macs, axis=1).to_numpy(float)
    rate = float(np.median(df["median_ms"].to_numpy(float) / np.maximum(macs, 1.0)))
    blocks = list(cfgs)
    lat = np.array([max(c.macs, 1) * rate for c in blocks])
    log.info("%s: %d blocks of types %s extrapolated at %.3g ms/MMAC", hyper, len(blocks),
             sorted({c.type for c in blocks}), rate * 1e6)
    return LutRecovery(hyper, blocks, lat, df.iloc[:0]).to_frame()


__all__ = ["LICENCE", "build_spaceevo"]
