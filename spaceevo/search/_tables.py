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

from spaceevo.datasets import DEVICE_PREDICTORS, LutKey, block_lut, lut_files, parse_stage_config, read_lut
from spaceevo.predictors import (cache_enabled, cache_key, file_digest, invalid, load_arrays, load_predictor,
                                 predictor_path, save_arrays, spaceevo_home, stat_digest)
from spaceevo.space import BlockConfig, Hyperspace, SearchSpace, conv_out_hw, get_hyperspace

log = logging.getLogger(__name__)



class BlockLatencyModel(Protocol):
    """Anything with ``predict_blocks(configs) -> ms`` (a ``LatencyPredictor`` or a stand-in)."""

    def predict_blocks(self, configs: Sequence[BlockConfig]) -> np.ndarray: ...


def cache_dir_default() -> Path:
    """``$SPACEEVO_HOME/qt-cache`` (default ``~/.cache/spaceevo/qt-cache``).

    Returns
    -------
    Path
    """
    return spaceevo_home() / "qt-cache"


class _LazyConfigs:
    """A table's row config strings, decoded from the compiled cache on first use (then an object array)."""

    def __init__(self, blob: np.ndarray, n: int):
        self._blob, self._n, self._arr = blob, n, None

    def _array(self) -> np.ndarray:
        if self._arr is None:
            text = self._blob.tobytes().decode("utf-8")
            self._arr = np.array(text.split("\n") if self._n else [], dtype=object)
            if len(self._arr) != self._n:
                raise ValueError("the compiled look-up-table cache holds a wrong number of config strings")
        return self._arr

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        return self._array()[i]

    def __iter__(self):
        return iter(self._array())

    def __array__(self, dtype=None, copy=None):
        a = self._array()
        return a if dtype is None else a.astype(dtype)


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
        files = lut_files(lut_dir, hyperspace)
        key = _compiled_key(hyper, files, predictor, fixed_predictor, latency) \
            if cache_dir is not None and cache_enabled() else None
        cpath = Path(cache_dir) / f"tables-{hyper.name}-{key[:20]}.npz" if key else None
        if cpath is not None:
            arrays = load_arrays(cpath, key, required=_COMPILED)
            if arrays is not None:
                try:
                    return cls._from_compiled(hyper, files, arrays)
                except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
                    invalid(cpath, f"{type(exc).__name__}: {exc}")
        out = cls._read(hyper, files, predictor, fixed_predictor, cache_dir, latency)
        if cpath is not None:
            save_arrays(cpath, key, out._compiled())
            log.info("compiled the %s look-up tables into %s", hyper.name, cpath)
        return out

    @classmethod
    def _read(cls, hyper: Hyperspace, files: dict, predictor: BlockLatencyModel | None,
              fixed_predictor: BlockLatencyModel | None, cache_dir: str | Path | None, latency: str) -> "QTTables":
        """Parse the CSV tables (pandas) and compute row and fixed-stage latencies."""
        hyperspace = hyper.name
        use_pred = predictor is not None and latency != "table"
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

    # -- compiled cache --------------------------------------------------------------------------
    def _compiled(self) -> dict[str, np.ndarray]:
        """Every table's columns concatenated (in key order), config strings as UTF-8 bytes, fixed stages."""
        keys = sorted(self.tables)
        tabs = [self.tables[k] for k in keys]
        rows = np.array([0] + [len(t.loss) for t in tabs], dtype=np.int64).cumsum()
        blobs = ["\n".join(str(c) for c in t.configs).encode("utf-8") for t in tabs]
        out = {"keys": np.array(keys, dtype=np.int64).reshape(-1, 3), "rows": rows,
               "cfg_bytes": np.array([0] + [len(b) for b in blobs], dtype=np.int64).cumsum(),
               "configs": np.frombuffer(b"".join(blobs), dtype=np.uint8),
               "starts": np.array([t.starts for t in tabs], dtype=np.int64).reshape(len(tabs), -1),
               "counts": np.array([t.counts for t in tabs], dtype=np.int64).reshape(len(tabs), -1),
               "resolutions": np.array(self.resolutions, dtype=np.int64), "fixed_ms": self.fixed_ms,
               "fe": np.array([(r, w, v) for r, d in self.final_expand_ms.items() for w, v in d.items()],
                              dtype=np.float64).reshape(-1, 3),
               "latency_source": np.array(self.latency_source), "fixed_source": np.array(self.fixed_source)}
        for col, dtype in _COLUMNS:
            out[col] = np.concatenate([getattr(t, col) for t in tabs]).astype(dtype) if tabs else np.zeros(0, dtype)
        return out

    @classmethod
    def _from_compiled(cls, hyper: Hyperspace, files: dict, a: dict[str, np.ndarray]) -> "QTTables":
        """Rebuild from the compiled arrays (NumPy only); a file that does not fit raises ``ValueError``."""
        by_key = {(k.stage, k.block, k.window): (k, p) for k, p in files.items()}
        rows, cfg_bytes, blob = a["rows"], a["cfg_bytes"], a["configs"]
        n_tab = len(a["keys"])
        if rows.shape != (n_tab + 1,) or cfg_bytes.shape != (n_tab + 1,) or a["starts"].shape != a["counts"].shape \
                or len(a["starts"]) != n_tab or int(rows[-1]) != len(a["loss"]) or int(cfg_bytes[-1]) != len(blob):
            raise ValueError("inconsistent table offsets")
        res_list = tuple(int(r) for r in a["resolutions"])
        if res_list != tuple(hyper.lut_resolutions) or a["starts"].shape[1:] != (len(res_list),):
            raise ValueError("resolutions differ from the hyperspace's")
        tables = {}
        for i, (s_, b_, w_) in enumerate(a["keys"].tolist()):
            key, path = by_key[(s_, b_, w_)]
            lo, hi = int(rows[i]), int(rows[i + 1])
            cols = {col: a[col][lo:hi] for col, _d in _COLUMNS}
            tables[(s_, b_, w_)] = StageTable(
                key, path, _LazyConfigs(blob[int(cfg_bytes[i]):int(cfg_bytes[i + 1])], hi - lo), cols["cin"],
                cols["hw"], cols["resolution"], cols["last_width"], cols["n_blocks"], cols["loss"],
                cols["latency_ms"], cols["tail_ms"], a["starts"][i], a["counts"][i])
        final_expand: dict[int, dict[int, float]] = {int(r): {} for r in res_list}
        for r, w, v in a["fe"].tolist():
            final_expand[int(r)][int(w)] = float(v)
        root = next(iter(files.values())).parent
        return cls(hyper, root, res_list, tables, np.asarray(a["fixed_ms"], dtype=np.float64), final_expand,
                   str(a["latency_source"]), str(a["fixed_source"]))


_COLUMNS = (("cin", np.int64), ("hw", np.int64), ("resolution", np.int64), ("last_width", np.int64),
            ("n_blocks", np.int64), ("loss", np.float64), ("latency_ms", np.float64), ("tail_ms", np.float64))
_COMPILED = ("keys", "rows", "cfg_bytes", "configs", "starts", "counts", "resolutions", "fixed_ms", "fe",
             "latency_source", "fixed_source", *(c for c, _d in _COLUMNS))


def _predictor_id(pred: object) -> str | None:
    """A predictor's identity for the compiled cache: its file's digest (``None``: not cacheable)."""
    digest = getattr(pred, "source_digest", None)
    return f"file:{digest}" if isinstance(digest, str) and digest else None


def _compiled_key(hyper: Hyperspace, files: dict, predictor: object, fixed_predictor: object,
                  latency: str) -> str | None:
    """Digest of everything the compiled tables come from, or ``None`` when an input has no identity."""
    use_pred = predictor is not None and latency != "table"
    lat_id = _predictor_id(predictor) if use_pred else "table"
    fixed = fixed_predictor if fixed_predictor is not None else (predictor if use_pred else None)
    if fixed is None:
        try:
            fixed_id = f"file:{file_digest(predictor_path(DEVICE_PREDICTORS[hyper.name]))}"
        except (FileNotFoundError, KeyError):
            return None
    else:
        fixed_id = _predictor_id(fixed)
    if lat_id is None or fixed_id is None:
        return None
    code = [Path(__file__).resolve(), Path(block_lut.__file__).resolve()]
    return cache_key("qt-tables", hyper.name, lat_id, fixed_id, stat_digest(files[k] for k in sorted(
        files, key=lambda k: (k.stage, k.block, k.window))), stat_digest(code))


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
