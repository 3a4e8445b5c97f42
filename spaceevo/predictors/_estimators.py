"""Latency regressors with the scikit-learn API, fitted on log latency, serialisable to JSON (no pickle).

``LGBMLatencyRegressor`` (default), ``RFLatencyRegressor`` (nn-Meter's RandomForest settings, the
baseline) and ``LookupLatencyRegressor`` (exact measured values, a model for unseen configs).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from spaceevo.registry import Registry

# the message predates the shared idiom; the command line prints it, so it stays as it was
_ESTIMATORS: Registry[type] = Registry("estimator", error="estimator={name!r} is not one of {names}")

# nn-Meter's tuned RandomForest settings per kernel kind (max_depth, n_estimators, max_features).
NNMETER_RF_SETTINGS: dict[str, dict] = {
    "conv": {"max_depth": 70, "n_estimators": 320, "max_features": 6},
    "dwconv": {"max_depth": 50, "n_estimators": 240, "max_features": 6},
    "fc": {"max_depth": 50, "n_estimators": 370, "max_features": 2},
    "other": {"max_depth": 50, "n_estimators": 370, "max_features": 1.0},
}
# Which nn-Meter kernel kind a block behaves like: its dominant op.
_BLOCK_KIND = {
    "LogitsBlock": "fc",
    "MobileNetV1DualBlock": "dwconv", "MobileNetV2Block": "dwconv", "MobileNetV2ResBlock": "dwconv",
    "MobileNetV3ResBlock": "dwconv", "MobileNetV2K3ResBlock": "dwconv", "MobileNetV3K3ResBlock": "dwconv",
    "FirstConvBlock": "conv", "FinalExpandBlock": "conv", "FeatureMixBlock": "conv", "ResNetBlock": "conv",
    "ResNetSEBlock": "conv", "FusedMBConvResBlock": "conv", "FusedMBConvSEResBlock": "conv",
}


# LightGBM settings tuned on this project's block data (5-fold on ~500 onnxw blocks at r160, INT8, 1 thread):
# a log-linear base on the work and traffic features (log latency ~ sum of w * log(1 + feature)) carries the
# trend, and slow, shallow boosting fits the residual (hardware effects: alignment, kernel choice).
LGBM_BASE_FEATURES: tuple[str, ...] = ("dense_macs", "dw_macs", "act_elems", "in_size", "out_size", "params",
                                       "n_layers")
# A split must reduce the squared log error by MIN_SPLIT_GAIN: boosting stops once the trees would only
# fit the noise floor (a type with a few rows used to keep 2,000 trees of 1e-4 leaves: 16 MB for 300 blocks).
TUNED_LGBM: dict = {"n_estimators": 2000, "learning_rate": 0.02, "num_leaves": 15, "min_child_samples": 3,
                    "min_split_gain": 1e-5}


def tuned_lgbm_params(feature_names) -> dict:
    """The tuned LightGBM settings for a feature schema (the log-linear base where its features exist)."""
    names = list(feature_names)
    if not all(f in names for f in LGBM_BASE_FEATURES):
        return {}
    return {**TUNED_LGBM, "base_columns": [names.index(f) for f in LGBM_BASE_FEATURES]}


def nnmeter_rf_params(unit_type: str) -> dict:
    """nn-Meter's RandomForest settings for a unit type (conv, dwconv, fc or other).

    Parameters
    ----------
    unit_type : str
        A block type or kernel name.

    Returns
    -------
    dict
    """
    return dict(NNMETER_RF_SETTINGS[_BLOCK_KIND.get(unit_type, unit_type if unit_type in NNMETER_RF_SETTINGS
                                                     else "other")])


def register_estimator(name: str) -> Callable[[type], type]:
    """Decorator: register an estimator class under ``name`` (used by ``train_predictor(estimator=name)``).

    Parameters
    ----------
    name : str

    Returns
    -------
    callable
        The decorator; it sets ``cls.estimator_name`` and returns the class.
    """
    def deco(cls: type) -> type:
        cls.estimator_name = name
        return _ESTIMATORS.register(name, cls)
    return deco


def list_estimators(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered estimators, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns; only matching names are listed.

    Returns
    -------
    list of str
    """
    return _ESTIMATORS.names(filter)


def get_estimator(name: str) -> type:
    """The estimator class called ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    type
        A scikit-learn regressor class.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid estimators.
    """
    return _ESTIMATORS.get(name)


def create_estimator(name: str, **params) -> "BaseEstimator":
    """An unfitted estimator ``name`` with ``params``.

    Parameters
    ----------
    name : str
    **params
        Constructor parameters.

    Returns
    -------
    BaseEstimator
    """
    return get_estimator(name)(**params)


def estimator_from_state(state: dict) -> "BaseEstimator":
    """Rebuild a fitted estimator from ``to_state()`` output."""
    name = state.get("estimator")
    return get_estimator(name).from_state(state)


def _log_target(y: np.ndarray) -> np.ndarray:
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latency targets y must be finite and > 0 ms (the model fits log latency)")
    return np.log(y)


class _LatencyRegressor(RegressorMixin, BaseEstimator):
    """Shared plumbing: validation of X/y, log target, JSON state."""

    estimator_name = ""

    def _check_positive_ints(self, *names: str) -> None:
        """Raise scikit-learn's style of error when a hyper-parameter is not an int >= 1."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be an int >= 1. "
                                 f"Got {value!r} instead.")

    def _check_fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        return X, _log_target(np.asarray(y, dtype=np.float64))

    def _check_predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def to_state(self) -> dict:
        """JSON-able state of the fitted estimator."""
        check_is_fitted(self)
        return {"estimator": self.estimator_name, "params": self.get_params(), "n_features_in": self.n_features_in_,
                **self._state()}

    @classmethod
    def from_state(cls, state: dict) -> "_LatencyRegressor":
        """Rebuild the fitted estimator from :meth:`to_state` output."""
        est = cls(**state["params"])
        est.n_features_in_ = int(state["n_features_in"])
        est._load_state(state)
        return est


@register_estimator("lgbm")
class LGBMLatencyRegressor(_LatencyRegressor):
    """LightGBM gradient-boosted trees on log latency; saved as LightGBM's text model.

    ``base_columns``: columns of X for a log-linear base model (ridge regression of log latency on
    ``log(1 + X[:, base_columns])``, penalty ``base_alpha``) fitted first; the trees then fit its residual.
    None: a constant base (the mean log latency).

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, min_split_gain
        LightGBM's parameters.
    random_state : int
    base_columns : list of int, optional
    base_alpha : float
    """

    def __init__(self, n_estimators: int = 600, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 2, subsample: float = 1.0, colsample_bytree: float = 1.0,
                 random_state: int = 0, base_columns: list[int] | None = None, base_alpha: float = 1e-3,
                 min_split_gain: float = 0.0):
        self.base_columns = base_columns
        self.min_split_gain = min_split_gain
        self.base_alpha = base_alpha
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state

    def fit(self, X, y) -> "LGBMLatencyRegressor":
        """Fit on ``log(y)``."""
        import lightgbm as lgb

        self._check_positive_ints("n_estimators", "num_leaves", "min_child_samples")
        X, ly = self._check_fit(X, y)
        if not isinstance(self.min_split_gain, (int, float)) or not self.min_split_gain >= 0:
            raise ValueError(f"The 'min_split_gain' parameter of LGBMLatencyRegressor must be a float >= 0. Got "
                             f"{self.min_split_gain!r} instead.")
        cols = self.base_columns
        if cols is not None and (not all(isinstance(c, (int, np.integer)) and 0 <= c < X.shape[1] for c in cols)
                                 or not isinstance(self.base_alpha, (int, float)) or self.base_alpha < 0):
            raise ValueError(f"The 'base_columns' parameter of LGBMLatencyRegressor must be a list of column indexes "
                             f"< {X.shape[1]} (and base_alpha >= 0). Got {cols!r} instead.")
        n = len(ly)
        self._fit_base(X, ly)
        base = self._base_of(X)
        params = {"objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_child_samples": min(self.min_child_samples, max(1, n // 2)), "min_data_in_bin": 1,
                  "bagging_fraction": self.subsample, "bagging_freq": 1 if self.subsample < 1 else 0,
                  "feature_fraction": self.colsample_bytree, "seed": self.random_state, "verbosity": -1,
                  "num_threads": 1, "deterministic": True, "force_row_wise": True,
                  "min_gain_to_split": self.min_split_gain}
        if n < 2 or np.ptp(ly - base) == 0:
            self.booster_ = None
        else:
            data = lgb.Dataset(X, ly - base, params={"min_data_in_bin": 1, "verbosity": -1})
            self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms."""
        X = self._check_predict(X)
        ly = self._base_of(X)
        if self.booster_ is not None:
            ly = ly + self.booster_.predict(X, num_threads=1)
        return np.exp(ly)

    def _fit_base(self, X: np.ndarray, ly: np.ndarray) -> None:
        self._base_ = float(np.mean(ly))
        self.base_coef_ = None
        if self.base_columns is None or len(ly) < 3:
            return
        A = np.log1p(np.maximum(X[:, list(self.base_columns)], 0.0))
        mu = A.mean(axis=0)
        Ac = A - mu
        w = np.linalg.solve(Ac.T @ Ac + self.base_alpha * np.eye(A.shape[1]), Ac.T @ (ly - self._base_))
        self.base_coef_ = w
        self._base_ = float(self._base_ - mu @ w)

    def _base_of(self, X: np.ndarray) -> np.ndarray:
        out = np.full(len(X), self._base_)
        if getattr(self, "base_coef_", None) is not None:
            # a row-wise sum (not a BLAS product, whose blocking depends on the batch): every row's value is
            # the same whether it is predicted alone or among thousands (compiled tables rely on it)
            out = out + (np.log1p(np.maximum(X[:, list(self.base_columns)], 0.0)) * self.base_coef_).sum(axis=1)
        return out

    def _state(self) -> dict:
        return {"base": self._base_, "base_coef": None if self.base_coef_ is None else self.base_coef_.tolist(),
                "model": None if self.booster_ is None else self.booster_.model_to_string()}

    def _load_state(self, state: dict) -> None:
        import lightgbm as lgb

        self._base_ = float(state["base"])
        coef = state.get("base_coef")
        self.base_coef_ = None if coef is None else np.asarray(coef, dtype=np.float64)
        self.booster_ = None if state["model"] is None else lgb.Booster(model_str=state["model"])


class _ArrayForest:
    """A fitted forest as plain arrays (from sklearn trees), evaluated with numpy; JSON round-trips exactly."""

    def __init__(self, trees: list[dict]):
        self.trees = [{k: np.asarray(v) for k, v in t.items()} for t in trees]

    @classmethod
    def from_sklearn(cls, forest) -> "_ArrayForest":
        trees = []
        for est in forest.estimators_:
            t = est.tree_
            trees.append({"left": t.children_left.astype(np.int32), "right": t.children_right.astype(np.int32),
                          "feature": t.feature.astype(np.int32), "threshold": t.threshold.astype(np.float64),
                          "value": t.value[:, 0, 0].astype(np.float64)})
        return cls(trees)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = X.astype(np.float32).astype(np.float64)  # sklearn compares float32 features
        rows = np.arange(len(X))
        total = np.zeros(len(X))
        for t in self.trees:
            node = np.zeros(len(X), dtype=np.int64)
            left, right, feat, thr = t["left"], t["right"], t["feature"], t["threshold"]
            active = left[node] >= 0
            while active.any():
                idx = np.nonzero(active)[0]
                nd = node[idx]
                go_left = X[rows[idx], feat[nd]] <= thr[nd]
                node[idx] = np.where(go_left, left[nd], right[nd])
                active[idx] = left[node[idx]] >= 0
            total += t["value"][node]
        return total / len(self.trees)

    def to_lists(self) -> list[dict]:
        return [{k: v.tolist() for k, v in t.items()} for t in self.trees]


@register_estimator("rf")
class RFLatencyRegressor(_LatencyRegressor):
    """RandomForest on log latency with nn-Meter's settings (see ``nnmeter_rf_params``); trees saved as arrays.

    Parameters
    ----------
    n_estimators, max_depth, max_features, min_samples_leaf, random_state
        scikit-learn's ``RandomForestRegressor`` parameters.
    """

    def __init__(self, n_estimators: int = 370, max_depth: int | None = 50, max_features: int | float = 1.0,
                 min_samples_leaf: int = 1, random_state: int = 10):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X, y) -> "RFLatencyRegressor":
        """Fit on ``log(y)``."""
        from sklearn.ensemble import RandomForestRegressor

        X, ly = self._check_fit(X, y)
        mf = self.max_features
        if isinstance(mf, (int, np.integer)) and not isinstance(mf, bool):
            mf = int(min(mf, X.shape[1]))
        rf = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth, max_features=mf,
                                   min_samples_leaf=self.min_samples_leaf, random_state=self.random_state,
                                   n_jobs=1)
        rf.fit(X, ly)
        self.forest_ = _ArrayForest.from_sklearn(rf)
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms."""
        X = self._check_predict(X)
        return np.exp(self.forest_.predict(X))

    def _state(self) -> dict:
        return {"trees": self.forest_.to_lists()}

    def _load_state(self, state: dict) -> None:
        self.forest_ = _ArrayForest(state["trees"])


@register_estimator("lut")
class LookupLatencyRegressor(_LatencyRegressor):
    """Exact look-up of measured configurations (geometric mean of repeats); a LightGBM model for the rest.

    Parameters
    ----------
    decimals : int
        Feature values are rounded to this many decimals to form the look-up key.
    fallback_params : dict, optional
        Parameters of the ``LGBMLatencyRegressor`` that answers configurations not in the table.
    """

    def __init__(self, decimals: int = 6, fallback_params: dict | None = None):
        self.decimals = decimals
        self.fallback_params = fallback_params

    def _keys(self, X: np.ndarray) -> list[bytes]:
        return [row.tobytes() for row in np.round(X, self.decimals)]

    def fit(self, X, y) -> "LookupLatencyRegressor":
        """Store the measured values and fit the fallback model."""
        X, ly = self._check_fit(X, y)
        groups: dict[bytes, list[float]] = {}
        rows: dict[bytes, np.ndarray] = {}
        for key, row, v in zip(self._keys(X), X, ly):
            groups.setdefault(key, []).append(float(v))
            rows.setdefault(key, row)
        self.table_ = {k: float(np.mean(v)) for k, v in groups.items()}
        self.table_rows_ = np.array([rows[k] for k in self.table_]) if self.table_ else np.zeros((0, X.shape[1]))
        self.fallback_ = LGBMLatencyRegressor(**(self.fallback_params or {})).fit(X, np.exp(ly))
        return self

    def predict_source(self, X) -> np.ndarray:
        """Per row: True where the configuration was measured exactly (a look-up hit)."""
        X = self._check_predict(X)
        return np.array([k in self.table_ for k in self._keys(X)], dtype=bool)

    def predict(self, X) -> np.ndarray:
        """Measured latency where known, the fallback model's prediction elsewhere (ms)."""
        X = self._check_predict(X)
        out = self.fallback_.predict(X)
        for i, k in enumerate(self._keys(X)):
            v = self.table_.get(k)
            if v is not None:
                out[i] = math.exp(v)
        return out

    def _state(self) -> dict:
        return {"rows": self.table_rows_.tolist(), "values": list(self.table_.values()),
                "fallback": self.fallback_.to_state()}

    def _load_state(self, state: dict) -> None:
        rows = np.asarray(state["rows"], dtype=np.float64).reshape(-1, self.n_features_in_)
        self.table_rows_ = rows
        self.table_ = dict(zip(self._keys(rows), (float(v) for v in state["values"])))
        self.fallback_ = LGBMLatencyRegressor.from_state(state["fallback"])
