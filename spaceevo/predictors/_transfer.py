"""A unit type's latency on a new device from other devices' models: the ``transfer`` estimator.

The model of one unit type (a block type, or a kernel type) of a new device is the log-prediction of one
or more *source* models of the same type (other devices' predictors), calibrated in log space and
optionally corrected by a small boosted model::

    z(x)          = sum_i w_i * log source_i(x)                    (the sources' consensus, log ms)
    log y(x)      = alpha + beta * (z(x) - z_mean) + booster(x, z(x), type)

``alpha``/``beta`` are fitted on the few units measured on the new device by ridge regression towards a
prior (the calibration shared by all types), so a type with one or two measured units moves only part of
the way from the shared calibration and a type with none keeps it. The source models are stored inside
the state (their own ``to_state``), so the saved predictor is an ordinary bundle: no pickles, and the
loader needs nothing but this estimator's registration.

A source may have been trained on an older feature schema whose names are a prefix of the current one
(version 1 of ``_features``): it reads the first ``n_features`` columns of X. A source without a model of
this block type may lend the model of its nearest type (``proxy_type``, e.g. the SE variant of the same
block, see ``PROXY_TYPES``): the block's config is rebuilt from X's config columns with that type, and the
calibration learns the difference.
"""

from __future__ import annotations

import numpy as np

from spaceevo.space import ACTIVATIONS, BlockConfig

from ._estimators import _LatencyRegressor, estimator_from_state, register_estimator
from ._features import FEATURE_NAMES_BY_VERSION, block_features

# a block type -> the type whose model stands in for it when a source lacks it (same structure, +-SE or k=3)
PROXY_TYPES: dict[str, str] = {
    "FusedMBConvResBlock": "FusedMBConvSEResBlock", "FusedMBConvSEResBlock": "FusedMBConvResBlock",
    "ResNetBlock": "ResNetSEBlock", "ResNetSEBlock": "ResNetBlock",
    "MobileNetV2ResBlock": "MobileNetV2K3ResBlock", "MobileNetV2K3ResBlock": "MobileNetV2ResBlock",
    "MobileNetV3ResBlock": "MobileNetV3K3ResBlock", "MobileNetV3K3ResBlock": "MobileNetV3ResBlock",
}


def proxy_features(X: np.ndarray, proxy_type: str, n_features: int) -> np.ndarray:
    """Features (the first ``n_features``) of the rows' block configs rebuilt as blocks of ``proxy_type``.

    X's first seven columns are the config (hw, cin, cout, k, e, stride, act index) in every feature schema.
    """
    version = next(v for v, names in sorted(FEATURE_NAMES_BY_VERSION.items()) if len(names) == n_features)
    configs = [BlockConfig(proxy_type, int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]), int(r[5]),
                           ACTIVATIONS[int(r[6])]) for r in np.asarray(X)]
    return block_features(configs, version)


def ridge_calibration(z: np.ndarray, ly: np.ndarray, z_mean: float, prior: tuple[float, float],
                      lambdas: tuple[float, float], z_var: float | None = None) -> tuple[float, float]:
    """``(alpha, beta)`` minimising ``sum (ly - alpha - beta (z - z_mean))^2 + la (alpha - a0)^2 + lb (beta - b0)^2``.

    Parameters
    ----------
    z, ly : ndarray
        Source log-predictions and measured log latencies of the units of one type.
    z_mean : float
        Centre of ``z`` (shared by all types, so the intercepts are comparable).
    prior : (float, float)
        ``(a0, b0)``: the calibration to shrink towards.
    lambdas : (float, float)
        ``(la, lb)``: penalties in units of rows (``la = 2``: two rows move the intercept half way); the
        slope's penalty is ``lb * n * z_var``, so rows close together (little leverage) barely move it.
    z_var : float, optional
        The spread of ``z`` over all units of the predictor (default: over these rows).

    Returns
    -------
    (float, float)
    """
    z = np.asarray(z, dtype=np.float64) - z_mean
    ly = np.asarray(ly, dtype=np.float64)
    a0, b0 = prior
    la, lb = lambdas
    if len(z) == 0:
        return float(a0), float(b0)
    A = np.column_stack([np.ones(len(z)), z])
    var = float(np.var(z)) if z_var is None else float(z_var)
    P = np.diag([la, lb * max(var, 1e-6) * len(z) + 1e-9])
    w = np.linalg.solve(A.T @ A + P, A.T @ ly + P @ np.array([a0, b0]))
    return float(w[0]), float(w[1])


@register_estimator("transfer")
class TransferLatencyRegressor(_LatencyRegressor):
    """Latency of one unit type from source models of other devices, calibrated on a few measured units.

    Parameters
    ----------
    sources : list of dict
        Each ``{"state": <source estimator state>, "n_features": int, "weight": float, "name": str}`` and
        optionally ``"proxy_type"`` (the state is that type's model); the log-predictions' weights sum to 1.
    z_mean : float
        Centre of the consensus log-prediction (shared by the types of one predictor).
    prior_alpha, prior_beta : float
        The calibration this type shrinks towards (``log y = prior_alpha + prior_beta (z - z_mean)``).
    lambda_alpha, lambda_beta : float
        Ridge penalties towards the prior (see :func:`ridge_calibration`); ``inf`` keeps the prior.
    type_index : int
        This type's index among the predictor's types (a feature of the shared boosted correction).
    """

    def __init__(self, sources: list | None = None, z_mean: float = 0.0, prior_alpha: float = 0.0,
                 prior_beta: float = 1.0, lambda_alpha: float = 2.0, lambda_beta: float = 4.0, type_index: int = 0):
        self.sources = sources
        self.z_mean = z_mean
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.lambda_alpha = lambda_alpha
        self.lambda_beta = lambda_beta
        self.type_index = type_index

    # -- the sources -------------------------------------------------------------------------------
    def _models(self) -> list:
        if getattr(self, "_source_models", None) is None:
            if not self.sources:
                raise ValueError("TransferLatencyRegressor needs at least one source model (sources=[...])")
            self._source_models = [estimator_from_state(s["state"]) for s in self.sources]
        return self._source_models

    def source_log(self, X: np.ndarray) -> np.ndarray:
        """The sources' consensus log-prediction ``z`` of the rows of X (log ms)."""
        X = np.asarray(X, dtype=np.float64)
        z = np.zeros(len(X))
        for s, m in zip(self.sources, self._models()):
            k = int(s["n_features"])
            if X.shape[1] < k:
                raise ValueError(f"source {s.get('name')!r} reads {k} features, X has {X.shape[1]}")
            Xs = proxy_features(X, s["proxy_type"], k) if s.get("proxy_type") else X[:, :k]
            z += float(s["weight"]) * np.log(m.predict(Xs))
        return z

    # -- scikit-learn API ----------------------------------------------------------------------------
    def fit(self, X, y) -> "TransferLatencyRegressor":
        """Fit this type's calibration on its measured units (ridge towards the prior); no boosted correction."""
        X, ly = self._check_fit(X, y)
        self._models()
        z = self.source_log(X)
        la = float(self.lambda_alpha)
        lb = float(self.lambda_beta)
        if np.isinf(la) and np.isinf(lb):
            self.alpha_, self.beta_ = float(self.prior_alpha), float(self.prior_beta)
        else:
            self.alpha_, self.beta_ = ridge_calibration(z, ly, self.z_mean, (self.prior_alpha, self.prior_beta),
                                                        (min(la, 1e12), min(lb, 1e12)))
        self.booster_ = None
        return self

    def fit_prior(self, n_features: int) -> "TransferLatencyRegressor":
        """'Fit' a type with no measured unit: the prior calibration, for rows of ``n_features`` features."""
        self._models()
        self.n_features_in_ = int(n_features)
        self.alpha_, self.beta_ = float(self.prior_alpha), float(self.prior_beta)
        self.booster_ = None
        return self

    def calibrated_log(self, X: np.ndarray) -> np.ndarray:
        """``alpha + beta (z - z_mean)``: the calibrated log-prediction without the boosted correction."""
        return self.alpha_ + self.beta_ * (self.source_log(X) - self.z_mean)

    def booster_features(self, X: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """Columns of the boosted correction: X, the consensus ``z`` and the type index."""
        z = self.source_log(X) if z is None else z
        return np.column_stack([X, z, np.full(len(X), float(self.type_index))])

    def set_booster(self, booster) -> "TransferLatencyRegressor":
        """Attach a fitted LightGBM booster (trained on ``booster_features``, residual of ``calibrated_log``)."""
        self.booster_ = booster
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted latency in ms."""
        X = self._check_predict(X)
        z = self.source_log(X)
        ly = self.alpha_ + self.beta_ * (z - self.z_mean)
        if self.booster_ is not None:
            ly = ly + self.booster_.predict(self.booster_features(X, z), num_threads=1)
        return np.exp(ly)

    # -- JSON state --------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"alpha": self.alpha_, "beta": self.beta_,
                "booster": None if self.booster_ is None else self.booster_.model_to_string()}

    def _load_state(self, state: dict) -> None:
        self.alpha_ = float(state["alpha"])
        self.beta_ = float(state["beta"])
        if state.get("booster") is None:
            self.booster_ = None
        else:
            import lightgbm as lgb

            self.booster_ = lgb.Booster(model_str=state["booster"])
