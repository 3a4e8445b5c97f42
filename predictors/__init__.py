"""Per-device latency predictors: features, estimators, the saved bundle, the registry and the fast path."""

from ._bundle import FORMAT_VERSION, LatencyPredictor, PredictorFileError, dataset_digest, train_predictor
from ._estimators import (
    NNMETER_RF_SETTINGS,
    LGBMLatencyRegressor,
    LookupLatencyRegressor,
    RFLatencyRegressor,
    get_estimator,
    list_estimators,
    nnmeter_rf_params,
    register_estimator,
)
from ._evaluate import cross_validate_units, holdout_units
from ._fast import SubnetLatencyTable
from ._features import FEATURE_NAMES, block_features, configs_from_frame, feature_schema
from ._metrics import latency_metrics
from . import spaceevo_builtin  # noqa: F401  (registers the "spaceevo-lut" estimator of the built-ins)
from ._target import TARGETS, auto_target, reference_ms, with_target
from ._registry import builtin_dir, install_predictor, list_predictors, load_predictor, predictor_path, user_dir

__all__ = [
    "FEATURE_NAMES", "FORMAT_VERSION", "NNMETER_RF_SETTINGS", "LGBMLatencyRegressor", "LatencyPredictor",
    "LookupLatencyRegressor", "PredictorFileError", "RFLatencyRegressor", "SubnetLatencyTable", "block_features",
    "builtin_dir", "configs_from_frame", "cross_validate_units", "dataset_digest", "feature_schema", "get_estimator",
    "holdout_units", "install_predictor", "latency_metrics", "list_estimators", "list_predictors", "load_predictor",
    "nnmeter_rf_params", "predictor_path", "register_estimator", "train_predictor", "user_dir",
    "TARGETS", "auto_target", "reference_ms", "with_target",
]
