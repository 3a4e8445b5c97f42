"""The latency regressors: scikit-learn conformance, log target, JSON state, nn-Meter settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from spaceevo.predictors import (
    LGBMLatencyRegressor,
    LookupLatencyRegressor,
    RFLatencyRegressor,
    get_estimator,
    list_estimators,
    nnmeter_rf_params,
)
from spaceevo.predictors import block_features
from spaceevo.predictors._estimators import estimator_from_state
from spaceevo.space import SearchSpace


@parametrize_with_checks([LGBMLatencyRegressor(n_estimators=20), RFLatencyRegressor(n_estimators=10),
                          LookupLatencyRegressor(fallback_params={"n_estimators": 20})])
def test_sklearn_conformance(estimator, check):
    check(estimator)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4)) * 10
    y = np.exp(0.3 * X[:, 0] + 0.1 * X[:, 1]) * 0.05
    return X, y


def _block_data(n=200, seed=0):
    """Real block features (every estimator must take them) and a latency that grows with MACs."""
    sp = SearchSpace.parse("onnxw-151122-023231")
    configs = list(dict.fromkeys(b.config for s in sp.sample(40, seed=seed) for b in sp.blocks(s)))[:n]
    X = block_features(configs)
    y = 0.02 + np.array([c.macs for c in configs]) * 2e-8 * (1 + 0.1 * np.sin(np.arange(len(configs))))
    return X, y


def _new_estimator(name, X, y):
    """A fresh estimator; "transfer" (adapted predictors) also needs a source: another device's model."""
    if name != "transfer":
        return get_estimator(name)()
    other_device = LGBMLatencyRegressor(n_estimators=200).fit(X, 1.7 * y ** 0.9)
    return get_estimator(name)(sources=[{"state": other_device.to_state(), "n_features": X.shape[1],
                                         "weight": 1.0, "name": "other-device"}])


@pytest.mark.parametrize("name", list_estimators())
def test_fits_relative_error_and_round_trips_json(name):
    X, y = _block_data()
    est = _new_estimator(name, X, y).fit(X, y)
    pred = est.predict(X)
    assert np.median(np.abs(pred / y - 1)) < 0.05
    state = json.loads(json.dumps(est.to_state()))
    again = estimator_from_state(state)
    np.testing.assert_array_equal(again.predict(X), pred)


@pytest.mark.parametrize("name", list_estimators())
def test_rejects_non_positive_latency(name):
    X, y = _data(20)
    y[3] = 0.0
    with pytest.raises(ValueError, match="must be finite and > 0 ms"):
        get_estimator(name)().fit(X, y)


def test_lookup_returns_measured_values_and_falls_back():
    X, y = _data(50)
    est = LookupLatencyRegressor().fit(X, y)
    np.testing.assert_allclose(est.predict(X), y, rtol=1e-12)
    assert est.predict_source(X).all()
    X_new = X[:5] + 0.123
    assert not est.predict_source(X_new).any()
    np.testing.assert_allclose(est.predict(X_new), est.fallback_.predict(X_new))


def test_nnmeter_settings_table():
    assert nnmeter_rf_params("ResNetBlock") == {"max_depth": 70, "n_estimators": 320, "max_features": 6}
    assert nnmeter_rf_params("MobileNetV2ResBlock") == {"max_depth": 50, "n_estimators": 240, "max_features": 6}
    assert nnmeter_rf_params("LogitsBlock") == {"max_depth": 50, "n_estimators": 370, "max_features": 2}
    assert nnmeter_rf_params("add")["n_estimators"] == 370
    assert RFLatencyRegressor().random_state == 10 and RFLatencyRegressor().min_samples_leaf == 1


def test_bad_parameter_and_unknown_estimator():
    X, y = _data(20)
    with pytest.raises(ValueError, match="The 'num_leaves' parameter of LGBMLatencyRegressor must be"):
        LGBMLatencyRegressor(num_leaves=0).fit(X, y)
    with pytest.raises(ValueError, match=r"estimator='xgb' is not one of \['lgbm', 'lut', 'rf'"):
        get_estimator("xgb")


def test_log_linear_base_fits_power_laws_and_round_trips():
    import json

    from spaceevo.predictors._estimators import LGBM_BASE_FEATURES, estimator_from_state, tuned_lgbm_params
    from spaceevo.predictors._features import FEATURE_NAMES, FEATURE_NAMES_BY_VERSION

    rng = np.random.default_rng(0)
    X = rng.uniform(1e3, 1e7, size=(300, 3))
    y = 1e-4 * (1 + X[:, 0]) ** 0.8 * (1 + X[:, 1]) ** 0.2
    est = LGBMLatencyRegressor(n_estimators=5, base_columns=[0, 1]).fit(X[:200], y[:200])
    np.testing.assert_allclose(est.base_coef_, [0.8, 0.2], rtol=1e-3)
    np.testing.assert_allclose(est.predict(X[200:]), y[200:], rtol=0.01)  # extrapolates the trend
    again = estimator_from_state(json.loads(json.dumps(est.to_state())))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    with pytest.raises(ValueError, match="The 'base_columns' parameter of LGBMLatencyRegressor must be"):
        LGBMLatencyRegressor(base_columns=[7]).fit(X, y)
    tuned = tuned_lgbm_params(FEATURE_NAMES)
    assert [FEATURE_NAMES[i] for i in tuned["base_columns"]] == list(LGBM_BASE_FEATURES)
    assert tuned_lgbm_params(FEATURE_NAMES_BY_VERSION[1]) == {}  # version-1 predictors keep their settings
