"""Per-device latency predictors: features, estimators, the saved bundle, the registry and the fast path.

Names are imported on first use (PEP 562), so that ``import spaceevo.predictors`` and a table-only query
(``spaceevo.predictors._query``) load NumPy alone; pandas, scikit-learn and LightGBM load with the first
name that needs them (``LatencyPredictor``, ``load_predictor``, ``train_predictor``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._cache import spaceevo_home
from ._registry import builtin_dir, list_predictors, predictor_path, user_dir

# name -> private module that defines it; loaded on first access
_LAZY = {
    **dict.fromkeys(("FORMAT_VERSION", "LatencyPredictor", "PredictorFileError", "dataset_digest", "train_predictor"),
                    "._bundle"),
    **dict.fromkeys(("NNMETER_RF_SETTINGS", "LGBMLatencyRegressor", "LookupLatencyRegressor", "RFLatencyRegressor",
                     "get_estimator", "list_estimators", "nnmeter_rf_params", "register_estimator"), "._estimators"),
    **dict.fromkeys(("cross_validate_units", "holdout_units"), "._evaluate"),
    "SubnetLatencyTable": "._fast",
    **dict.fromkeys(("FEATURE_NAMES", "block_features", "configs_from_frame", "feature_schema"), "._features"),
    "latency_metrics": "._metrics",
    **dict.fromkeys(("KernelLatencyPredictor", "train_kernel_predictor"), "._kernel_predictor"),
    **dict.fromkeys(("KERNEL_FEATURE_NAMES", "kernel_features"), "._kernel_features"),
    **dict.fromkeys(("measure_model", "measure_models", "validate_models"), "._kernel_validate"),
    **dict.fromkeys(("TARGETS", "auto_target", "reference_ms", "with_target"), "._target"),
    **dict.fromkeys(("install_predictor", "load_predictor"), "._registry"),
}

__all__ = sorted({*_LAZY, "builtin_dir", "list_predictors", "predictor_path", "spaceevo_home", "user_dir"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the built-in predictors' "spaceevo-lut" estimator registers itself on import: every heavy name sees it
    importlib.import_module(".spaceevo_builtin", __name__)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
