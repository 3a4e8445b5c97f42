"""Per-device latency predictors: features, estimators, the saved bundle, the registry and the fast path.

Names are imported on first use (PEP 562), so that ``import spaceevo.predictors`` and a table-only query
(``compiled_subnet_table``, ``predict_block_cached``) load NumPy alone; pandas, scikit-learn and LightGBM load
with the first name that needs them (``LatencyPredictor``, ``train_predictor``, ...). ``load_predictor``
imports the model stack only when it loads a file.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._cache import (
    CacheWarning,
    cache_dir,
    cache_enabled,
    cache_key,
    file_digest,
    invalid,
    load_arrays,
    save_arrays,
    spaceevo_home,
    stat_digest,
)
from ._registry import (
    builtin_dir,
    describe_predictors,
    install_predictor,
    list_predictors,
    load_predictor,
    predictor_path,
    user_dir,
)

# name -> private module that defines it; loaded on first access
_LAZY = {
    **dict.fromkeys(("ADAPT_METHODS", "ADAPT_STRATEGIES", "AdaptSource", "adapt_predictor", "kernel_unit_arrays",
                     "select_units"), "._adapt"),
    "adapt_kernel_predictor": "._adapt_kernels",
    "run_adapt": "._adapt_run",
    "TransferLatencyRegressor": "._transfer",
    **dict.fromkeys(("FORMAT_VERSION", "LatencyPredictor", "PredictorFileError", "block_rows", "dataset_digest"),
                    "._bundle"),
    **dict.fromkeys(("only_device", "train_from_store", "train_predictor", "training_rows"), "._training"),
    **dict.fromkeys(("NNMETER_RF_SETTINGS", "LGBMLatencyRegressor", "LookupLatencyRegressor", "RFLatencyRegressor",
                     "create_estimator", "get_estimator", "list_estimators", "nnmeter_rf_params",
                     "register_estimator"), "._estimators"),
    **dict.fromkeys(("cross_validate_units", "holdout_units"), "._evaluate"),
    "SubnetLatencyTable": "._fast",
    **dict.fromkeys(("FEATURE_NAMES", "block_features", "configs_from_frame", "feature_schema"), "._features"),
    "latency_metrics": "._metrics",
    **dict.fromkeys(("KernelLatencyPredictor", "train_kernel_predictor"), "._kernel_predictor"),
    **dict.fromkeys(("KERNEL_FEATURE_NAMES", "kernel_features"), "._kernel_features"),
    **dict.fromkeys(("measure_model", "measure_models", "validate_models"), "._kernel_validate"),
    **dict.fromkeys(("TARGETS", "auto_target", "reference_ms", "uses_reference", "with_target"), "._target"),
    **dict.fromkeys(("compose", "terms_of"), "._composition"),
    **dict.fromkeys(("CompiledLookup", "CompiledSubnetTable", "compiled_lookup", "compiled_subnet_table",
                     "predict_block_cached", "predict_subnet_cached", "predict_subnets_cached"), "._query"),
    "evaluate_on_rows": "._report",
    **dict.fromkeys(("measure_subnets", "profile_sample", "remeasure_subnets", "sample_subnets",
                     "validate_predictor"), "._validate"),
    **dict.fromkeys(("build_spaceevo", "describe_blocks", "fit_lut_predictor", "predict_subnet_blocks",
                     "sanity_report"), ".spaceevo_builtin"),
}
# modules that stay light (NumPy and the space layer): loading them must not pull in the model stack
_LIGHT = {"._composition", "._query"}

__all__ = sorted({*_LAZY, "CacheWarning", "builtin_dir", "cache_dir", "cache_enabled", "cache_key",
                  "describe_predictors", "file_digest", "install_predictor", "invalid", "list_predictors",
                  "load_arrays", "load_predictor", "predictor_path", "save_arrays", "spaceevo_home", "stat_digest",
                  "user_dir"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module not in _LIGHT:
        # the built-in predictors' "spaceevo-lut" estimator registers itself on import: every heavy name sees it
        importlib.import_module("._lut_estimator", __name__)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
