"""Recover per-block INT8 latencies from the public SpaceEvo look-up tables by least squares (SPACEEVO.md s.5)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spaceevo.space import BlockConfig, get_hyperspace

from .block_lut import LutKey, lut_files, read_lut, row_blocks

log = logging.getLogger(__name__)

DEVICES = {"onnxw": "vnni-ort-int8", "mobilew": "pixel4-tflite-int8"}
BACKENDS = {"onnxw": "onnxruntime", "mobilew": "tflite"}
SOURCE = "microsoft/Moonlit SpaceEvo block look-up tables (MIT licence)"


@dataclass
class LutRecovery:
    """Per-block latencies recovered from one hyperspace's tables, with the fit's diagnostics."""

    hyperspace: str
    blocks: list[BlockConfig]
    latency_ms: np.ndarray
    rows: pd.DataFrame
    report: dict = field(default_factory=dict)

    unidentifiable: np.ndarray | None = None

    def to_frame(self, trusted_only: bool = False) -> pd.DataFrame:
        """The recovered blocks in the collector's dataset columns (median_ms = recovered latency).

        ``trusted_only`` drops blocks the rows do not determine uniquely and blocks recovered as <= 0 ms.
        """
        device = DEVICES[self.hyperspace]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        recs = []
        bad = self.unidentifiable if self.unidentifiable is not None else np.zeros(len(self.blocks), bool)
        for cfg, ms, b in zip(self.blocks, self.latency_ms, bad):
            if trusted_only and (b or not ms > 0):
                continue
            d = cfg.as_dict()
            recs.append({"kind": "block", **d, "config": json.dumps(d, sort_keys=True), "key": cfg.to_string(),
                         "device": device, "backend": BACKENDS[self.hyperspace], "dtype": "int8", "threads": 1,
                         "median_ms": float(ms), "mean_ms": float(ms), "std_ms": 0.0, "min_ms": float(ms),
                         "p90_ms": float(ms), "cv": 0.0, "n": 1, "status": "ok", "error": None,
                         "fingerprint_id": f"{device}:{SOURCE}", "created_at": now})
        return pd.DataFrame(recs)


def _load_rows(lut_dir: str | Path, hyperspace: str) -> tuple[pd.DataFrame, list[list[BlockConfig]]]:
    hyper = get_hyperspace(hyperspace)
    frames, row_cfgs = [], []
    for key, path in lut_files(lut_dir, hyperspace).items():
        df = read_lut(path)
        df["stage"], df["block"], df["window"] = key.stage, key.block, key.window
        for cfg, cin, hw in zip(df["config"], df["cin"], df["hw"]):
            row_cfgs.append(row_blocks(hyper, key, cfg, int(cin), int(hw)))
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    rows["resolution"] = [int(hw) * hyper.total_stride_before(f"stage{s}") for hw, s in zip(rows["hw"], rows["stage"])]
    rows["n_blocks"] = [len(b) for b in row_cfgs]
    return rows, row_cfgs


def recover_block_latencies(lut_dir: str | Path, hyperspace: str) -> LutRecovery:
    """Least squares (scipy ``lsqr``) of per-block latencies over all tables of ``hyperspace`` pooled."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import lsqr

    rows, row_cfgs = _load_rows(lut_dir, hyperspace)
    index: dict[BlockConfig, int] = {}
    ri, ci = [], []
    for r, cfgs in enumerate(row_cfgs):
        for c in cfgs:
            ri.append(r)
            ci.append(index.setdefault(c, len(index)))
    blocks = list(index)
    A = sp.csr_matrix((np.ones(len(ri)), (ri, ci)), shape=(len(rows), len(blocks)))
    A.sum_duplicates()
    y = rows["latency_ms"].to_numpy(float)
    x = lsqr(A, y, atol=1e-12, btol=1e-12, iter_lim=20000)[0]
    x = np.maximum(x, 0.0)
    pred = A @ x
    rel = np.abs(pred - y) / np.maximum(y, 1e-9)
    rows["recovered_ms"] = pred
    # rank deficiency: per connected component of the block co-occurrence graph, dense rank of its columns
    adj = (A.T @ A).tocsr()
    n_comp, labels = connected_components(adj, directed=False)
    deficiency, unident = 0, np.zeros(len(blocks), bool)
    csc = A.tocsc()
    for comp in range(n_comp):
        cols = np.flatnonzero(labels == comp)
        sub = csc[:, cols]
        used = np.unique(sub.nonzero()[0])
        dense = sub[used].toarray()
        rank = np.linalg.matrix_rank(dense)
        d = len(cols) - rank
        if d:
            deficiency += d
            _u, _s, vt = np.linalg.svd(dense)
            null = vt[rank:]
            unident[cols[np.abs(null).max(axis=0) > 1e-8]] = True
    report = {"hyperspace": hyperspace, "device": DEVICES[hyperspace], "files": int(rows[["stage", "block", "window"]]
              .drop_duplicates().shape[0]), "rows": int(len(rows)), "distinct_blocks": len(blocks),
              "components": int(n_comp), "rank_deficiency": int(deficiency),
              "unidentifiable_blocks": int(unident.sum()),
              "max_abs_residual_ms": float(np.abs(pred - y).max()), "max_rel_residual": float(rel.max()),
              "rows_within_0.5pct": float((rel <= 0.005).mean())}
    log.info("recovered %s: %s", hyperspace, report)
    return LutRecovery(hyperspace, blocks, x, rows, report, unident)


def fixed_blocks_frame(path: str | Path) -> pd.DataFrame:
    """``vnni_fixed_blocks.csv`` (measured fixed blocks) in the collector's dataset columns."""
    raw = pd.read_csv(path)
    cfgs = [BlockConfig(str(r.block), int(r.hw), int(r.cin), int(r.cout), int(r.kernel_size),
                        0.0 if pd.isna(r.expand_ratio) else float(r.expand_ratio), int(r.stride), str(r.activation))
            for r in raw.itertuples(index=False)]
    rec = LutRecovery("onnxw", cfgs, raw["latency_ms"].to_numpy(float), raw)
    return rec.to_frame()


def stage_tables(lut_dir: str | Path, hyperspace: str) -> dict[LutKey, pd.DataFrame]:
    """Per (stage, block, window) table the rows' loss, latency_ms, resolution and block count (Q-T input)."""
    hyper = get_hyperspace(hyperspace)
    out = {}
    for key, path in lut_files(lut_dir, hyperspace).items():
        df = read_lut(path)
        df["resolution"] = df["hw"] * hyper.total_stride_before(f"stage{key.stage}")
        df["n_blocks"] = df["config"].str.count("_") + 1
        out[key] = df[["config", "cin", "hw", "resolution", "n_blocks", "loss", "latency_ms"]]
    return out


__all__ = ["DEVICES", "SOURCE", "LutRecovery", "fixed_blocks_frame", "recover_block_latencies", "stage_tables"]
