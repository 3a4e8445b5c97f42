"""The ``spaceevo-lut`` estimator of the built-in predictors: exact look-up plus a monotone LightGBM.

Registered on import; ``LatencyPredictor`` imports this module, so every loaded predictor can use it.
"""

from __future__ import annotations

import numpy as np

from ._estimators import _LatencyRegressor, register_estimator

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


__all__ = ["ESTIMATOR", "SpaceEvoLutRegressor"]
