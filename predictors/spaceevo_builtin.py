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

from ._estimators import _LatencyRegressor, register_estimator

log = logging.getLogger(__name__)

LICENCE = "MIT (SpaceEvo public release, microsoft/Moonlit)"
ESTIMATOR = "spaceevo-lut"
# Columns of the feature matrix (both feature schema versions start with these): config, then sizes.
_CONFIG_COLS = 7  # hw, cin, cout, k, e, stride, act_id
_SIZE_COLS = 13  # ... macs, params, in_size, out_size, hidden, hidden_size
_ALIGN_COLS = 15  # channel counts modulo 4/8/16/32/64 after the size columns
_V1_COLS = _SIZE_COLS + _ALIGN_COLS  # feature schema v1; v2 appends work/traffic columns
_DOMAIN_COLS = (0, 1, 2, 3, 4)  # hw, cin, cout, k, e: the box of the training configs per stride
# Monotone (+1) in every column that grows with the work: hw cin cout k e . . macs params in out hidden hsize
_MONOTONE_V1 = (1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1)
# schema-2 extras (dense_macs, dw_macs, act_elems, n_layers, has_se, out_hw) when present
_MONOTONE_V2 = (1, 1, 1, 1, 0, 1)


@register_estimator(ESTIMATOR)
class SpaceEvoLutRegressor(_LatencyRegressor):
    """Exact look-up of the recovered blocks plus a monotone LightGBM (log latency) for the rest.

    The model sees the configuration and size columns only (no alignment moduli unless ``alignment``: the
    tables hold widths on a multiple-of-8/16 grid, so moduli make unseen widths arbitrary, and on the 20%
    row hold-out they did not help), with ``monotone_constraints``
    +1 on hw, cin, cout, k, e and every size column. ``predict_source`` is True for look-up hits;
    ``predict_extrapolated`` is True outside the box of the training configurations (per stride) and for
    every row of a model marked ``synthetic_`` (trained on extrapolated values, not on table values).
    """

    def __init__(self, n_estimators: int = 400, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 5, monotone: bool = True, alignment: bool = False, random_state: int = 0):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.monotone = monotone
        self.alignment = alignment
        self.random_state = random_state

    @staticmethod
    def _keys(X: np.ndarray) -> list[bytes]:
        return [row.tobytes() for row in np.round(X[:, :_CONFIG_COLS], 4)]

    def _model_X(self, X: np.ndarray) -> np.ndarray:
        extra = X[:, _V1_COLS:]
        mods = X[:, _SIZE_COLS:_V1_COLS] if self.alignment else X[:, :0]
        return np.hstack([X[:, :_SIZE_COLS], extra, mods])

    def fit(self, X, y) -> "SpaceEvoLutRegressor":
        """Store the blocks as an exact table and fit the monotone model on ``log(y)``."""
        import lightgbm as lgb

        self._check_positive_ints("n_estimators", "num_leaves", "min_child_samples")
        X, ly = self._check_fit(X, y)
        if X.shape[1] < _V1_COLS:
            raise ValueError(f"X has {X.shape[1]} columns; SpaceEvoLutRegressor needs the block feature layout of "
                             f"spaceevo.predictors.block_features (at least {_V1_COLS} columns)")
        groups: dict[bytes, list[float]] = {}
        rows: dict[bytes, np.ndarray] = {}
        for key, row, v in zip(self._keys(X), X, ly):
            groups.setdefault(key, []).append(float(v))
            rows.setdefault(key, row[:_CONFIG_COLS])
        # log(ms) to 7 decimals (1e-7 relative), as saved: a loaded predictor answers exactly like the fitted one
        self.table_ = {k: round(float(np.mean(v)), 7) for k, v in groups.items()}
        self.table_rows_ = np.array([rows[k] for k in self.table_])
        self.domain_ = {}
        for s in np.unique(X[:, 5]):
            m = X[:, 5] == s
            cols = list(_DOMAIN_COLS)
            self.domain_[float(s)] = [X[m][:, cols].min(axis=0).tolist(), X[m][:, cols].max(axis=0).tolist()]
        self.synthetic_ = False
        Z = self._model_X(X)
        self._base_ = float(np.mean(ly))
        n = len(ly)
        if n < 2 or np.ptp(ly) == 0:
            self.booster_ = None
            return self
        n_v2 = X.shape[1] - _V1_COLS
        mono = list(_MONOTONE_V1) + list(_MONOTONE_V2)[:n_v2] + [0] * (Z.shape[1] - _SIZE_COLS - n_v2)
        params = {"objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_child_samples": min(self.min_child_samples, max(1, n // 2)), "min_data_in_bin": 1,
                  "seed": self.random_state, "verbosity": -1, "num_threads": 1, "deterministic": True,
                  "force_row_wise": True}
        if self.monotone:
            params.update(monotone_constraints=mono, monotone_constraints_method="advanced")
        data = lgb.Dataset(Z, ly - self._base_, params={"min_data_in_bin": 1, "verbosity": -1})
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        return self

    def _model_log(self, X: np.ndarray) -> np.ndarray:
        ly = np.full(len(X), self._base_)
        if self.booster_ is not None and len(X):
            ly = ly + self.booster_.predict(self._model_X(X), num_threads=1)
        return ly

    def predict_model(self, X) -> np.ndarray:
        """The model's latency (ms), ignoring the table."""
        return np.exp(self._model_log(self._check_predict(X)))

    def predict_source(self, X) -> np.ndarray:
        """Per row: True where the value comes from the table (a recovered block)."""
        X = self._check_predict(X)
        if self.synthetic_:
            return np.zeros(len(X), bool)
        return np.array([k in self.table_ for k in self._keys(X)], dtype=bool)

    def predict_extrapolated(self, X) -> np.ndarray:
        """Per row: True outside the box (hw, cin, cout, k, e per stride) of the training configs."""
        X = self._check_predict(X)
        if self.synthetic_:
            return np.ones(len(X), bool)
        out = np.ones(len(X), bool)
        for s, (lo, hi) in self.domain_.items():
            m = X[:, 5] == s
            v = X[m][:, list(_DOMAIN_COLS)]
            out[m] = ~((v >= np.asarray(lo) - 1e-9) & (v <= np.asarray(hi) + 1e-9)).all(axis=1)
        return out

    def predict(self, X) -> np.ndarray:
        """Table value where the block was recovered, the monotone model elsewhere (ms)."""
        X = self._check_predict(X)
        ly = self._model_log(X)
        if not self.synthetic_:
            for i, k in enumerate(self._keys(X)):
                v = self.table_.get(k)
                if v is not None:
                    ly[i] = v
        return np.exp(ly)

    def _state(self) -> dict:
        rows = self.table_rows_
        return {"base": self._base_, "synthetic": bool(self.synthetic_), "domain": {str(k): v for k, v in
                                                                                   self.domain_.items()},
                "table_configs": np.round(rows, 4).tolist(),
                "table_log_ms": [round(v, 7) for v in self.table_.values()],
                "model": None if self.booster_ is None else self.booster_.model_to_string()}

    def _load_state(self, state: dict) -> None:
        import lightgbm as lgb

        self._base_ = float(state["base"])
        self.synthetic_ = bool(state["synthetic"])
        self.domain_ = {float(k): v for k, v in state["domain"].items()}
        rows = np.asarray(state["table_configs"], dtype=np.float64).reshape(-1, _CONFIG_COLS)
        self.table_rows_ = rows
        self.table_ = dict(zip(self._keys(rows), (float(v) for v in state["table_log_ms"])))
        self.booster_ = None if state["model"] is None else lgb.Booster(model_str=state["model"])


def describe_blocks(pred, configs) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Latency (ms), source (``table``/``model``, or the predictor's own words) and extrapolated flag per block."""
    from ._features import block_features

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
    """``pred.predict_subnet`` with every block's ``source`` and ``extrapolated`` flag (see module docstring)."""
    from spaceevo.space import SearchSpace

    out = pred.predict_subnet(space, subnet)
    sp = space if isinstance(space, SearchSpace) else SearchSpace.parse(space)
    sn = sp.parse_subnet(subnet) if isinstance(subnet, str) else subnet
    _lat, src, extra = describe_blocks(pred, [b.config for b in sp.blocks(sn)])
    for b, s, x in zip(out["blocks"], src, extra):
        b["source"], b["extrapolated"] = s, bool(x)
    out["n_extrapolated"] = int(np.sum(extra))
    out["extrapolated_ms"] = float(sum(b["latency_ms"] for b in out["blocks"] if b["extrapolated"]))
    return out


def fit_lut_predictor(df: pd.DataFrame, device: str, synthetic_types=(), source: str | None = None,
                      estimator_params: dict | None = None):
    """A ``LatencyPredictor`` with ``spaceevo-lut`` models (feature schema 1, readable by every version)."""
    from ._bundle import LatencyPredictor

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
    """
    from spaceevo.datasets.lut_import import DEVICES, SOURCE, fixed_blocks_frame, recover_block_latencies

    from ._registry import builtin_dir

    out = Path(out_dir) if out_dir is not None else builtin_dir()
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for hyper in hyperspaces:
        rec = (recoveries or {}).get(hyper) or recover_block_latencies(lut_dir, hyper)
        df = rec.to_frame(trusted_only=True)
        if hyper == "onnxw" and fixed_csv is not None:
            df = pd.concat([df, fixed_blocks_frame(fixed_csv)], ignore_index=True)
        device = DEVICES[hyper]
        extra = _fixed_by_mac_rate(df, hyper, seed)
        if len(extra):
            df = pd.concat([df, extra], ignore_index=True)
        synthetic = sorted(set(extra["type"])) if len(extra) else []
        if db is not None:
            from spaceevo.datasets.lut_import import write_store

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
    from spaceevo.datasets.lut_import import LutRecovery
    from spaceevo.space import BlockConfig, SearchSpace, get_hyperspace

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
    """Monotone on average in hw/cin/cout/k/e; unseen middle values vs. linear interpolation (15%)."""
    from spaceevo.space import BlockConfig, get_hyperspace

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
