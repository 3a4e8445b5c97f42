"""Accuracy of the LUT-recovered predictors: row reproduction, 20% held-out rows, sanity on unseen configs.

Usage: python benchmarks/bench_builtin.py [--lut-dir DIR] [--hyperspace onnxw|mobilew]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spaceevo.datasets import lut_import
from spaceevo.predictors import LatencyPredictor, load_predictor
from spaceevo.space import BlockConfig, get_hyperspace

DEFAULT_LUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "spaceevo" / "block_lut"


def heldout(lut_dir: Path, hyper: str, seed: int = 0) -> dict:
    """Recover on 80% of the rows, train, predict the other 20% rows' stage latency."""
    rec = lut_import.recover_block_latencies(lut_dir, hyper)
    rows = rec.rows
    rng = np.random.default_rng(seed)
    test = rng.random(len(rows)) < 0.2
    # recompute per-block latencies from training rows only
    import scipy.sparse as sp
    from scipy.sparse.linalg import lsqr

    _rows, cfgs = lut_import._load_rows(lut_dir, hyper)
    index: dict = {}
    ri, ci = [], []
    for r in np.flatnonzero(~test):
        for c in cfgs[r]:
            ri.append(r)
            ci.append(index.setdefault(c, len(index)))
    tr = np.flatnonzero(~test)
    pos = {r: i for i, r in enumerate(tr)}
    A = sp.csr_matrix((np.ones(len(ri)), ([pos[r] for r in ri], ci)), shape=(len(tr), len(index)))
    x = np.maximum(lsqr(A, rows["latency_ms"].to_numpy()[tr], atol=1e-12, btol=1e-12, iter_lim=20000)[0], 0)
    part = lut_import.LutRecovery(hyper, list(index), x, rows.iloc[tr])
    df = part.to_frame(trusted_only=True)
    pred = LatencyPredictor(device=lut_import.DEVICES[hyper], estimator="lgbm").fit(df)
    flat = [c for r in np.flatnonzero(test) for c in cfgs[r]]
    lat = pred.predict_blocks(flat)
    sums, i = [], 0
    for r in np.flatnonzero(test):
        n = len(cfgs[r])
        sums.append(lat[i:i + n].sum())
        i += n
    y = rows["latency_ms"].to_numpy()[test]
    rel = np.abs(np.array(sums) - y) / y
    return {"recovery": rec.report, "heldout_rows": int(test.sum()), "within_5pct": float((rel <= 0.05).mean()),
            "mape": float(rel.mean() * 100)}


def sanity(device: str, hyper: str) -> dict:
    """Monotone on average in hw/cin/cout/k/e; unseen middle value within 15% of linear interpolation."""
    pred = load_predictor(device)
    h = get_hyperspace(hyper)
    rng = np.random.default_rng(0)
    mono, interp = {f: [] for f in ("hw", "cin", "cout", "k", "e")}, []
    for _ in range(200):
        ch = h.block_choices[rng.integers(len(h.block_choices))]
        k = int(rng.choice(ch.kernel_sizes))
        e = float(rng.choice(ch.expand_ratios))
        c = int(rng.choice([32, 48, 64, 96, 128]))
        base = dict(type=ch.type, hw=28, cin=c, cout=c, k=k, e=e, stride=1, act=ch.act)
        grids = {"hw": [14, 20, 26, 28, 32], "cin": [c, c + 16, c + 32], "cout": [c, c + 16, c + 32],
                 "k": list(ch.kernel_sizes), "e": list(ch.expand_ratios)}
        for f, vals in grids.items():
            if len(vals) < 2:
                continue
            lat = pred.predict_blocks([BlockConfig(**{**base, f: v}) for v in vals])
            mono[f].append(float(np.mean(np.diff(lat) >= -1e-9)))
        # resolution 208 (hw 26) vs. neighbours 24/28 (from 192/224), width c+8 vs. c and c+16
        for f, (lo, mid, hi) in {"hw": (24, 26, 28), "cout": (c, c + 8, c + 16)}.items():
            lat = pred.predict_blocks([BlockConfig(**{**base, f: v}) for v in (lo, mid, hi)])
            lin = (lat[0] + lat[2]) / 2
            interp.append(abs(lat[1] - lin) / lin)
    return {"monotone_fraction": {f: float(np.mean(v)) for f, v in mono.items() if v},
            "interp_within_15pct": float(np.mean(np.array(interp) <= 0.15)), "interp_mean_dev": float(np.mean(interp))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lut-dir", default=str(DEFAULT_LUT))
    ap.add_argument("--hyperspace", default="onnxw", choices=["onnxw", "mobilew"])
    a = ap.parse_args()
    out = {"sanity": sanity(lut_import.DEVICES[a.hyperspace], a.hyperspace),
           "heldout": heldout(Path(a.lut_dir), a.hyperspace)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
