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

from .block_lut import DEVICE_PREDICTORS, LutKey, lut_files, read_lut, row_blocks
from .store import COLUMNS, LatencyStore

log = logging.getLogger(__name__)

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
    row_blocks: list | None = None
    n_rows: np.ndarray | None = None

    def to_frame(self, trusted_only: bool = False) -> pd.DataFrame:
        """The recovered blocks in the collector's dataset columns (median_ms = recovered latency).

        ``trusted_only`` drops blocks the rows do not determine uniquely and blocks recovered as <= 0 ms.
        """
        device = DEVICE_PREDICTORS[self.hyperspace]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        recs = []
        bad = self.unidentifiable if self.unidentifiable is not None else np.zeros(len(self.blocks), bool)
        counts = self.n_rows if self.n_rows is not None else np.ones(len(self.blocks), int)
        for cfg, ms, b, n in zip(self.blocks, self.latency_ms, bad, counts):
            if trusted_only and (b or not ms > 0):
                continue
            d = cfg.as_dict()
            recs.append({"kind": "block", **d, "macs": int(cfg.macs), "config": json.dumps(d, sort_keys=True),
                         "key": cfg.to_string(), "device": device, "backend": BACKENDS[self.hyperspace],
                         "dtype": "int8", "threads": 1, "median_ms": float(ms), "mean_ms": float(ms), "std_ms": 0.0,
                         "min_ms": float(ms), "p90_ms": float(ms), "cv": 0.0, "n": int(n), "attempts": None,
                         "loops": None, "status": "ok", "error": None, "fingerprint_id": fingerprint_id(device),
                         "seed": None, "created_at": now, "identifiable": not bool(b)})
        return pd.DataFrame(recs)


def fingerprint_id(device: str) -> str:
    """Fingerprint id of the rows recovered from the SpaceEvo tables for ``device``.

    Parameters
    ----------
    device : str

    Returns
    -------
    str
    """
    return f"{device}:spaceevo-lut"


def write_store(df: pd.DataFrame, db: str | Path, trusted_only: bool = True) -> int:
    """Write recovered blocks (``LutRecovery.to_frame()``) to a latency store; returns the rows written.

    The source (tables, licence, method) is recorded as the rows' fingerprint. ``trusted_only`` skips blocks
    the tables do not determine (``identifiable`` False) and blocks recovered as 0 ms. ``n`` of a row is the
    number of table rows that contain the block. Rows already there (same key, device, dtype) are replaced.

    Parameters
    ----------
    df : pandas.DataFrame
    db : str or Path
    trusted_only : bool

    Returns
    -------
    int
    """
    if trusted_only and "identifiable" in df.columns:
        df = df[df["identifiable"].astype(bool) & (df["median_ms"] > 0)]
    cols = [c for c in COLUMNS if c != "id"]
    with LatencyStore(db) as store:
        for fp in sorted(set(df["fingerprint_id"])):
            device = fp.split(":", 1)[0]
            hyper = {v: k for k, v in DEVICE_PREDICTORS.items()}.get(device)
            store.add_fingerprint(fp, {"backend": BACKENDS.get(hyper, ""), "device": device, "source": SOURCE,
                                       "method": "per-block latencies recovered by bounded least squares from "
                                                 "the SpaceEvo block look-up tables (n = table rows per block)"})
        rows = [[None if (isinstance(v, float) and np.isnan(v)) else (v.item() if hasattr(v, "item") else v)
                 for v in r] for r in df.reindex(columns=cols).itertuples(index=False)]
        sql = f"INSERT OR REPLACE INTO measurements ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        with store.conn:
            store.conn.executemany(sql, rows)
    return len(rows)


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


def _design(row_cfgs: list[list[BlockConfig]], rows_idx: np.ndarray | None = None):
    """Sparse row x block incidence matrix (block counts per row) and the block list, in first-seen order."""
    import scipy.sparse as sp

    index: dict[BlockConfig, int] = {}
    ri, ci = [], []
    rows_idx = np.arange(len(row_cfgs)) if rows_idx is None else np.asarray(rows_idx)
    for r, i in enumerate(rows_idx):
        for c in row_cfgs[int(i)]:
            ri.append(r)
            ci.append(index.setdefault(c, len(index)))
    A = sp.csr_matrix((np.ones(len(ri)), (ri, ci)), shape=(len(rows_idx), len(index)))
    A.sum_duplicates()
    return A, list(index)


def solve_blocks(A, y: np.ndarray, small: int = 40) -> tuple[np.ndarray, np.ndarray, dict]:
    """Non-negative per-block latencies ``x`` with ``A @ x ~ y`` in relative error, and which are identifiable.

    The incidence graph splits into connected components (blocks that share rows); each is solved on its own
    by bounded least squares (``scipy.optimize.lsq_linear``, bounds (0, inf)) with rows weighted by 1/latency,
    so the fit minimises relative error. A block is unidentifiable when the null space of its component's
    columns touches it (eigen-decomposition of the component's Gram matrix): its value is one split among
    many that reproduce the rows equally well.

    Parameters
    ----------
    A : scipy.sparse matrix
        Rows x blocks incidence (block counts per row).
    y : numpy.ndarray
        Row latencies (ms).
    small : int
        Components up to this many blocks are solved densely (minimum-norm least squares first).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, dict)
        Latencies, an unidentifiable mask, diagnostics.
    """
    import scipy.sparse as sp
    from scipy.optimize import lsq_linear
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import lsqr

    A = sp.csr_matrix(A)
    n_rows, n_cols = A.shape
    x = np.zeros(n_cols)
    unident = np.zeros(n_cols, bool)
    n_comp, labels = connected_components((A.T @ A).tocsr(), directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_comp + 1))
    csc = A.tocsc()
    row_of = np.full(n_rows, -1)
    coo = A.tocoo()
    row_of[coo.row] = labels[coo.col]
    row_order = np.argsort(row_of, kind="stable")
    row_bounds = np.searchsorted(row_of[row_order], np.arange(n_comp + 1))
    deficiency = 0
    for comp in range(n_comp):
        cols = order[bounds[comp]:bounds[comp + 1]]
        used = row_order[row_bounds[comp]:row_bounds[comp + 1]]
        if len(used) == 0:
            unident[cols] = True
            deficiency += len(cols)
            continue
        sub = csc[:, cols][used]
        w = 1.0 / np.maximum(y[used], 1e-9)
        wsub = sp.diags(w) @ sub
        ones = np.ones(len(used))
        if len(cols) <= small:
            dense = sub.toarray()
            sol = np.linalg.lstsq(dense * w[:, None], ones, rcond=None)[0]  # minimum norm: even splits
            if sol.min() < 0:
                sol = lsq_linear(dense * w[:, None], ones, bounds=(0, np.inf), method="bvls").x
            gram = dense.T @ dense
        else:
            sol = lsqr(wsub, ones, atol=1e-14, btol=1e-14, iter_lim=50_000)[0]
            if sol.min() < 0:
                sol = lsq_linear(wsub, ones, bounds=(0, np.inf), method="trf", lsmr_tol="auto", tol=1e-13,
                                 max_iter=2000).x
            gram = (sub.T @ sub).toarray()
        x[cols] = sol
        ev, vec = np.linalg.eigh(gram)
        null = ev <= max(ev.max(), 1.0) * 1e-10
        if null.any():
            deficiency += int(null.sum())
            unident[cols[np.abs(vec[:, null]).max(axis=1) > 1e-6]] = True
    return x, unident, {"components": int(n_comp), "rank_deficiency": int(deficiency)}


def _residual_report(rows: pd.DataFrame, pred: np.ndarray) -> dict:
    y = rows["latency_ms"].to_numpy(float)
    rel = np.abs(pred - y) / np.maximum(y, 1e-9)
    worst = int(np.argmax(rel))
    w = rows.iloc[worst]
    return {"max_abs_residual_ms": float(np.abs(pred - y).max()), "max_rel_residual": float(rel.max()),
            "rows_within_0.5pct": float((rel <= 0.005).mean()), "rows_over_0.5pct": int((rel > 0.005).sum()),
            "worst_row": {"file": f"stage{w['stage']}_{w['block']}_{w['window']}.csv", "config": str(w["config"]),
                          "cin": int(w["cin"]), "hw": int(w["hw"]), "latency_ms": float(w["latency_ms"]),
                          "recovered_ms": float(pred[worst]), "rel_error": float(rel[worst])}}


def recover_block_latencies(lut_dir: str | Path, hyperspace: str) -> LutRecovery:
    """Bounded, relative-error least squares of per-block latencies over all tables of ``hyperspace`` pooled.

    Parameters
    ----------
    lut_dir : str or Path
    hyperspace : str

    Returns
    -------
    LutRecovery
    """
    rows, row_cfgs = _load_rows(lut_dir, hyperspace)
    A, blocks = _design(row_cfgs)
    y = rows["latency_ms"].to_numpy(float)
    x, unident, diag = solve_blocks(A, y)
    pred = A @ x
    rows["recovered_ms"] = pred
    report = {"hyperspace": hyperspace, "device": DEVICE_PREDICTORS[hyperspace],
              "files": int(rows[["stage", "block", "window"]]
              .drop_duplicates().shape[0]), "rows": int(len(rows)), "distinct_blocks": len(blocks), **diag,
              "unidentifiable_blocks": int(unident.sum()), "min_block_ms": float(x.min()),
              **_residual_report(rows, pred)}
    log.info("recovered %s: %s", hyperspace, report)
    return LutRecovery(hyperspace, blocks, x, rows, report, unident, row_cfgs,
                       np.asarray(A.sum(axis=0)).ravel().astype(int))


def fixed_blocks_frame(path: str | Path) -> pd.DataFrame:
    """``vnni_fixed_blocks.csv`` (measured fixed blocks) in the collector's dataset columns.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame
    """
    raw = pd.read_csv(path)
    # the file writes the linear layer as k=0, stride=0; the search space's LogitsBlock is k=1, stride=1
    cfgs = [BlockConfig(str(r.block), int(r.hw), int(r.cin), int(r.cout), max(int(r.kernel_size), 1),
                        0.0 if pd.isna(r.expand_ratio) else float(r.expand_ratio), max(int(r.stride), 1),
                        str(r.activation))
            for r in raw.itertuples(index=False)]
    rec = LutRecovery("onnxw", cfgs, raw["latency_ms"].to_numpy(float), raw)
    return rec.to_frame()


def stage_tables(lut_dir: str | Path, hyperspace: str) -> dict[LutKey, pd.DataFrame]:
    """Per (stage, block, window) table the rows' loss, latency_ms, resolution and block count (Q-T input).

    Parameters
    ----------
    lut_dir : str or Path
    hyperspace : str

    Returns
    -------
    dict of LutKey to pandas.DataFrame
    """
    hyper = get_hyperspace(hyperspace)
    out = {}
    for key, path in lut_files(lut_dir, hyperspace).items():
        df = read_lut(path)
        df["resolution"] = df["hw"] * hyper.total_stride_before(f"stage{key.stage}")
        df["n_blocks"] = df["config"].str.count("_") + 1
        out[key] = df[["config", "cin", "hw", "resolution", "n_blocks", "loss", "latency_ms"]]
    return out


__all__ = ["SOURCE", "LutRecovery", "fingerprint_id", "fixed_blocks_frame", "recover_block_latencies",
           "solve_blocks", "stage_tables", "write_store"]
