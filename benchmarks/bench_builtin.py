"""Accuracy of the LUT-recovered predictors: row reproduction, 20% held-out rows, sanity on unseen configs.

Usage: python benchmarks/bench_builtin.py [--lut-dir DIR] [--hyperspace onnxw|mobilew] [--skip-heldout]

- recovery: bounded relative least squares over all rows; rows reproduced within 0.5%, worst row.
- heldout (row level): 20% of the rows (seeded) are held out; the blocks are recovered from the other 80%
  only, the predictor is trained on the blocks they identify, and each held-out row's stage latency is the
  sum of its blocks: the recovered value where the 80% identify the block, the model's otherwise.
  ``model_only`` repeats it with the model alone (no table) for every block.
- sanity (the shipped predictor): fraction of non-decreasing steps in hw, cin, cout, k, e around random
  blocks, and the deviation of unseen middle values (hw 26 = resolution 208; width c+8) from the linear
  interpolation of their measured neighbours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spaceevo.datasets import DEVICE_PREDICTORS, lut_import
from spaceevo.predictors import load_predictor
from spaceevo.predictors.spaceevo_builtin import fit_lut_predictor, sanity_report
from spaceevo.space import BlockConfig

DEFAULT_LUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "spaceevo" / "block_lut"


def _row_sums(lat: np.ndarray, lengths: list[int]) -> np.ndarray:
    ends = np.cumsum(lengths)
    return np.add.reduceat(lat, ends - np.asarray(lengths)) if len(lat) else np.zeros(0)


def heldout(rec: lut_import.LutRecovery, seed: int = 0, frac: float = 0.2, estimator_params: dict | None = None,
            sanity_hyper: str | None = None) -> dict:
    """Row-level hold-out (see module docstring); returns the share of held-out rows within +-5%."""
    rows, cfgs = rec.rows, rec.row_blocks
    rng = np.random.default_rng(seed)
    test = rng.random(len(rows)) < frac
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    A, blocks = lut_import._design(cfgs, tr)
    x, unident, diag = lut_import.solve_blocks(A, rows["latency_ms"].to_numpy(float)[tr])
    part = lut_import.LutRecovery(rec.hyperspace, blocks, x, rows.iloc[tr], {}, unident)
    pred = fit_lut_predictor(part.to_frame(trusted_only=True), DEVICE_PREDICTORS[rec.hyperspace],
                             estimator_params=estimator_params)
    flat = [c for r in te for c in cfgs[r]]
    lengths = [len(cfgs[r]) for r in te]
    y = rows["latency_ms"].to_numpy(float)[te]
    lat, src = pred.predict_blocks(flat, return_source=True)
    out = {"rows_train": int(len(tr)), "rows_heldout": int(len(te)), "train_rank_deficiency": diag["rank_deficiency"],
           "heldout_blocks_from_table": float(np.mean(src == "lookup"))}
    table_row = _row_sums((src == "lookup").astype(float), lengths) == np.asarray(lengths)
    for name, values in (("table_then_model", lat), ("model_only", _model_only(pred, flat))):
        rel = np.abs(_row_sums(values, lengths) - y) / y
        out[name] = {"within_5pct": float((rel <= 0.05).mean()), "mape": float(rel.mean() * 100),
                     "p95_rel_error": float(np.quantile(rel, 0.95)),
                     "within_5pct_rows_all_table": float((rel[table_row] <= 0.05).mean()) if table_row.any() else None,
                     "within_5pct_rows_needing_model": float((rel[~table_row] <= 0.05).mean())
                     if (~table_row).any() else None}
    out["rows_all_blocks_from_table"] = float(table_row.mean())
    if sanity_hyper:
        out["sanity_of_heldout_model"] = sanity_report(pred, sanity_hyper, n=100)
    return out


def _model_only(pred, configs: list[BlockConfig]) -> np.ndarray:
    from spaceevo.predictors import block_features

    X = block_features(configs, pred.feature_version)
    types = np.array([c.type for c in configs], dtype=object)
    out = np.zeros(len(configs))
    for t in set(types.tolist()):
        m = types == t
        out[m] = pred.models[t].predict_model(X[m])
    return out


def resolution_interp(pred, hyper: str) -> dict:
    """Published subnets at resolutions 160..224: non-decreasing, and 176/208 vs. the mean of their neighbours."""
    import yaml

    data = yaml.safe_load((DEFAULT_LUT.parent / "search_result.yaml").read_text())
    spaces = data["specific_supernet_encoding_dict"]
    out = {}
    for name, (sp, sub) in data["specific_subnet_encoding_dict"].items():
        if not spaces[sp].startswith(hyper):
            continue
        base = sub.rsplit("_r", 1)[0]
        v = [pred.predict_subnet(spaces[sp], f"{base}_r{r}")["latency_ms"] for r in (160, 176, 192, 208, 224)]
        out[name] = {"latency_ms": [round(x, 3) for x in v], "non_decreasing": bool(np.all(np.diff(v) > 0)),
                     "r176_vs_linear": v[1] / ((v[0] + v[2]) / 2) - 1, "r208_vs_linear": v[3] / ((v[2] + v[4]) / 2) - 1}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lut-dir", default=str(DEFAULT_LUT))
    ap.add_argument("--hyperspace", default="onnxw", choices=["onnxw", "mobilew"])
    ap.add_argument("--skip-heldout", action="store_true")
    a = ap.parse_args()
    pred = load_predictor(DEVICE_PREDICTORS[a.hyperspace])
    out = {"sanity": sanity_report(pred, a.hyperspace), "resolution_interp": resolution_interp(pred, a.hyperspace)}
    print(json.dumps(out, indent=1), flush=True)
    if not a.skip_heldout:
        rec = lut_import.recover_block_latencies(Path(a.lut_dir), a.hyperspace)
        out["recovery"] = rec.report
        out["heldout"] = heldout(rec)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
