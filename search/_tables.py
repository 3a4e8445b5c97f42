"""Per-stage (loss, latency, resolution) tables for the Q-T score, from the block look-up tables.

Latency is either the tables' own column or, for every row, the sum of a predictor's block latencies.
Fixed stages (not covered by the tables) always come from a predictor:

* ``fixed_ms[r]``: first_conv (3x3, stride 2, 3 -> smallest width) + stage0 (depth 1, smallest width)
  + feature_mix + logits at resolution ``r``. The smallest configuration is a stated choice: the
  tables do not say which first_conv/stage0 a sample has.
* final_expand: its input is the last width of the stage6 row, so it differs per sample; its latency
  is folded into every stage6 row (``tail_ms``), so a sample's latency stays one gather per stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from spaceevo.datasets.block_lut import LutKey, lut_files, parse_stage_config, read_lut
from spaceevo.space import BlockConfig, Hyperspace, SearchSpace, conv_out_hw, get_hyperspace

log = logging.getLogger(__name__)

#: built-in predictor of each hyperspace's device (fixed-stage latency when ``latency='table'``)
DEVICE_PREDICTORS = {"onnxw": "vnni-ort-int8", "mobilew": "pixel4-tflite-int8"}


class BlockLatencyModel(Protocol):
    """Anything with ``predict_blocks(configs) -> ms`` (a ``LatencyPredictor`` or a stand-in)."""

    def predict_blocks(self, configs: Sequence[BlockConfig]) -> np.ndarray: ...


def cache_dir_default() -> Path:
    """``$SPACEEVO_HOME/qt-cache`` (default ``~/.cache/spaceevo/qt-cache``)."""
    home = os.environ.get("SPACEEVO_HOME") or Path.home() / ".cache" / "spaceevo"
    return Path(home) / "qt-cache"


@dataclass
class StageTable:
    """Rows of one (stage, block, window) table, sorted by resolution, with per-resolution offsets."""

    key: LutKey
    path: Path
    configs: np.ndarray
    cin: np.ndarray
    hw: np.ndarray
    resolution: np.ndarray
    last_width: np.ndarray
    n_blocks: np.ndarray
    loss: np.ndarray
    latency_ms: np.ndarray
    tail_ms: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        self.total_ms = self.latency_ms + self.tail_ms
        n = len(self.counts)
        self.res_min = np.array([self.total_ms[a:a + c].min() if c else np.inf
                                 for a, c in zip(self.starts, self.counts)]) if n else np.zeros(0)
        self.res_max = np.array([self.total_ms[a:a + c].max() if c else -np.inf
                                 for a, c in zip(self.starts, self.counts)]) if n else np.zeros(0)


@dataclass
class QTTables:
    """All stage tables of one hyperspace plus fixed-stage latencies per resolution."""

    hyperspace: Hyperspace
    lut_dir: Path
    resolutions: tuple[int, ...]
    tables: dict[tuple[int, int, int], StageTable]
    fixed_ms: np.ndarray
    final_expand_ms: dict[int, dict[int, float]]
    latency_source: str
    fixed_source: str
    meta: dict = field(default_factory=dict)

    # -- access --------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        """File names of tables the hyperspace needs but the directory lacks."""
        h = self.hyperspace
        out = []
        for s, stage in enumerate(h.stages, start=1):
            for b in range(len(h.block_choices)):
                for w in range(stage.n_windows):
                    if (s, b, w) not in self.tables:
                        out.append(LutKey(h.name, s, b, w).filename)
        return out

    def require_complete(self) -> None:
        """Raise ``FileNotFoundError`` naming the first missing table files (evolution may visit any)."""
        miss = self.missing()
        if miss:
            raise FileNotFoundError(f"look-up-table directory {str(self.lut_dir)!r} lacks {len(miss)} stage "
                                    f"file(s) of {self.hyperspace.name}: {', '.join(miss[:5])}"
                                    + (" ..." if len(miss) > 5 else ""))

    def space_tables(self, space: SearchSpace) -> list[StageTable]:
        """The six stage tables of ``space``; a missing file raises an error naming it."""
        if space.hyperspace.name != self.hyperspace.name:
            raise ValueError(f"space {space} belongs to hyperspace {space.hyperspace.name!r} but these tables are "
                             f"for {self.hyperspace.name!r}")
        out = []
        for s, (b, w) in enumerate(zip(space.block_types, space.windows), start=1):
            t = self.tables.get((s, b, w))
            if t is None:
                name = LutKey(self.hyperspace.name, s, b, w).filename
                raise FileNotFoundError(f"look-up table {name} (stage{s}, block {b} "
                                        f"{self.hyperspace.block_choices[b].type}, window {w}) needed by {space} "
                                        f"is missing in {str(self.lut_dir)!r}")
            out.append(t)
        return out

    def latency_range(self, space: SearchSpace) -> tuple[float, float]:
        """(fastest, slowest) latency of a subnet assembled from table rows, over resolutions (ms)."""
        tabs = self.space_tables(space)
        lo = self.fixed_ms + sum(t.res_min for t in tabs)
        hi = self.fixed_ms + sum(t.res_max for t in tabs)
        ok = np.isfinite(lo) & np.isfinite(hi)
        return float(lo[ok].min()), float(hi[ok].max())

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def load(cls, lut_dir: str | Path, hyperspace: str, predictor: BlockLatencyModel | None = None,
             fixed_predictor: BlockLatencyModel | None = None, cache_dir: str | Path | None = None,
             latency: str = "auto") -> "QTTables":
        """Read the tables of ``hyperspace``; ``predictor`` recomputes every row's latency.

        ``latency`` is ``'table'`` (use the tables' column), ``'predictor'`` (needs ``predictor``) or
        ``'auto'`` (predictor when given). Fixed stages come from ``fixed_predictor``, else ``predictor``,
        else the built-in predictor of the hyperspace's device. ``cache_dir`` caches recomputed latencies.
        """
        hyper = get_hyperspace(hyperspace)
        if latency not in ("auto", "table", "predictor"):
            raise ValueError(f"latency={latency!r} is not one of 'table', 'predictor' (or 'auto')")
        if latency == "predictor" and predictor is None:
            raise ValueError("latency='predictor' needs a predictor (--predictor NAME_OR_FILE)")
        use_pred = predictor is not None and latency != "table"
        files = lut_files(lut_dir, hyperspace)
        root = next(iter(files.values())).parent
        res_list = tuple(hyper.lut_resolutions)
        raw = {}
        for key, path in files.items():
            if key.stage < 1 or key.stage > len(hyper.stages):
                continue
            df = read_lut(path)
            stride = hyper.total_stride_before(f"stage{key.stage}")
            res = (df["hw"].to_numpy(int) * stride)
            order = np.argsort(res, kind="stable")
            df = df.iloc[order].reset_index(drop=True)
            raw[key] = (path, df, res[order])
        if use_pred:
            lat = _predictor_latencies(hyper, raw, predictor, cache_dir)
            source = f"predictor:{_name(predictor)}"
        else:
            lat = {k: df["latency_ms"].to_numpy(float) for k, (_p, df, _r) in raw.items()}
            source = "table"
        if fixed_predictor is None:
            fixed_predictor = predictor if use_pred else None
        if fixed_predictor is None:
            from spaceevo.predictors import load_predictor

            fixed_predictor = load_predictor(DEVICE_PREDICTORS[hyperspace])
        fixed, final_expand = _fixed_latencies(hyper, res_list, fixed_predictor)
        tables = {}
        for key, (path, df, res) in raw.items():
            parsed = [parse_stage_config(c) for c in df["config"]]
            last_w = np.array([p[-1][1] for p in parsed], dtype=np.int64)
            ridx = np.searchsorted(np.asarray(res_list), res)
            bad = (ridx >= len(res_list)) | (np.asarray(res_list)[np.minimum(ridx, len(res_list) - 1)] != res)
            if bad.any():
                raise ValueError(f"{path}: resolution {int(res[bad][0])} of a row is not in the {hyper.name} "
                                 f"look-up-table resolutions {list(res_list)}")
            counts = np.bincount(ridx, minlength=len(res_list)).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            tail = np.zeros(len(df))
            if key.stage == len(hyper.stages):
                tail = np.array([final_expand[int(r)][int(w)] for r, w in zip(res, last_w)])
            tables[(key.stage, key.block, key.window)] = StageTable(
                key, path, df["config"].to_numpy(object), df["cin"].to_numpy(np.int64), df["hw"].to_numpy(np.int64),
                res.astype(np.int64), last_w, np.array([len(p) for p in parsed], dtype=np.int64),
                df["loss"].to_numpy(float), np.asarray(lat[key], float), tail, starts, counts)
        return cls(hyper, root, res_list, tables, fixed, final_expand, source, _name(fixed_predictor))


def _name(pred: object) -> str:
    dev = getattr(pred, "device", None)
    return str(dev) if dev else type(pred).__name__


def _fixed_blocks(hyper: Hyperspace, res: int) -> tuple[list[BlockConfig], int]:
    """first_conv + stage0 (smallest) + feature_mix + logits at ``res``, and the stage6 output side."""
    fc, s0 = hyper.first_conv_block, hyper.stage0_block
    w_fc, w_s0 = min(hyper.first_conv.widths), min(hyper.stage0.widths)
    hw = conv_out_hw(res, 3, hyper.first_conv.stride)
    blocks = [BlockConfig(fc.type, res, hyper.in_channels, w_fc, fc.kernel_sizes[0], 0.0, hyper.first_conv.stride,
                          fc.act),
              BlockConfig(s0.type, hw, w_fc, w_s0, s0.kernel_sizes[0], float(s0.expand_ratios[0]),
                          hyper.stage0.stride, s0.act)]
    hw6 = res // hyper.total_stride_before(hyper.stages[-1].name) // hyper.stages[-1].stride
    blocks.append(BlockConfig("FeatureMixBlock", hw6, hyper.final_expand_width, hyper.feature_mix_width, 1, 0.0, 1,
                              hyper.head_act))
    blocks.append(BlockConfig("LogitsBlock", 1, hyper.feature_mix_width, hyper.n_classes, 1, 0.0, 1, "relu"))
    return blocks, hw6


def _fixed_latencies(hyper: Hyperspace, res_list: Sequence[int], pred: BlockLatencyModel
                     ) -> tuple[np.ndarray, dict[int, dict[int, float]]]:
    cfgs, spans, fe_keys = [], [], []
    for r in res_list:
        blocks, hw6 = _fixed_blocks(hyper, r)
        spans.append((len(cfgs), len(cfgs) + len(blocks)))
        cfgs += blocks
        for w in hyper.stages[-1].widths:
            fe_keys.append((r, w))
            cfgs.append(BlockConfig("FinalExpandBlock", hw6, w, hyper.final_expand_width, 1, 0.0, 1, hyper.head_act))
    y = np.asarray(pred.predict_blocks(cfgs), float)
    fixed = np.array([y[a:b].sum() for a, b in spans])
    final_expand: dict[int, dict[int, float]] = {int(r): {} for r in res_list}
    fe_idx = [i for i, c in enumerate(cfgs) if c.type == "FinalExpandBlock"]
    for (r, w), i in zip(fe_keys, fe_idx):
        final_expand[int(r)][int(w)] = float(y[i])
    return fixed, final_expand


def _cache_key(hyper: Hyperspace, raw: dict, pred: object) -> str | None:
    man = getattr(pred, "manifest", None)
    if not isinstance(man, dict):
        return None
    h = hashlib.sha256(json.dumps(man, sort_keys=True, default=str).encode())
    h.update(hyper.name.encode())
    for key, (path, _df, _r) in sorted(raw.items(), key=lambda kv: kv[1][0].name):
        st = path.stat()
        h.update(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _predictor_latencies(hyper: Hyperspace, raw: dict, pred: BlockLatencyModel,
                         cache_dir: str | Path | None) -> dict[LutKey, np.ndarray]:
    """Every row's latency as the sum of ``pred``'s block latencies; all distinct blocks in one call."""
    keys = sorted(raw, key=lambda k: (k.stage, k.block, k.window))
    ckey = _cache_key(hyper, raw, pred) if cache_dir is not None else None
    cpath = Path(cache_dir) / f"{hyper.name}-{ckey}.npz" if ckey else None
    if cpath is not None and cpath.is_file():
        data = np.load(cpath)
        if all(k.filename in data for k in keys):
            log.info("row latencies from cache %s", cpath)
            return {k: data[k.filename] for k in keys}
    index: dict[tuple, int] = {}
    row_ids: dict[LutKey, list[list[int]]] = {}
    for key in keys:
        _path, df, _res = raw[key]
        stage, choice = hyper.stages[key.stage - 1], hyper.block_choices[key.block]
        ids = []
        for cfg, cin, hw in zip(df["config"], df["cin"].to_numpy(int), df["hw"].to_numpy(int)):
            row = []
            c, h = int(cin), int(hw)
            for i, (k, w, e) in enumerate(parse_stage_config(cfg)):
                s = stage.stride if i == 0 else 1
                row.append(index.setdefault((choice.type, h, c, w, k, e, s, choice.act), len(index)))
                h, c = conv_out_hw(h, k, s), w
            ids.append(row)
        row_ids[key] = ids
    configs = [BlockConfig(*t) for t in index]
    log.info("predicting %d distinct blocks of %d tables", len(configs), len(keys))
    y = np.asarray(pred.predict_blocks(configs), float)
    out = {k: np.array([y[r].sum() for r in ids]) for k, ids in row_ids.items()}
    if cpath is not None:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpath.with_suffix(".tmp.npz")
        np.savez(tmp, **{k.filename: v for k, v in out.items()})
        os.replace(tmp, cpath)
    return out
