"""Build the built-in ``vnni-ort-int8`` and ``pixel4-tflite-int8`` predictors from the public SpaceEvo tables."""

from __future__ import annotations

import logging
from pathlib import Path

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
        pred = train_predictor(df, device=device, estimator=estimator, source=SOURCE, cv_folds=0, seed=seed)
        pred._manifest["licence"] = LICENCE
        pred._manifest["lut_recovery"] = rec.report
        path = pred.save(out / f"{device}.json.gz")
        reports[device] = {**rec.report, "path": str(path), "size_bytes": path.stat().st_size,
                           "unit_train": pred.manifest["metrics"]["unit_train"]}
    return reports


__all__ = ["LICENCE", "build_spaceevo"]
