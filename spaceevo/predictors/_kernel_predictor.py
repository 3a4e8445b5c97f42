"""Kernel-level latency predictor of any ONNX CNN: one estimator per kernel type plus a composition term.

Trained on the collector's kernel rows (``spaceevo profile --models DIR``) with the same estimators,
target (``norm_ms``, ``min_ms``, ...) and file format as the block predictors; the composition term is
learned on whole models (``onnx-model`` rows) exactly as for subnets: a kernel timed alone pays the
session call and the quantise / de-quantise of its input and output, which a network pays once.

A kernel the predictor has no model for (an op the detector cannot map, or a type absent from the
training rows) is estimated by an explicit fallback (the device's median time per MAC and per output
element, from the training rows) and flagged ``source: "fallback"``; it is never dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spaceevo.latency import MODEL_KERNELS, default_rules, detect_kernels, kernel_shapes

from ._bundle import FORMAT, FORMAT_VERSION, PredictorFileError, dataset_digest, write_predictor_file
from ._composition import compose, fit_composition, identity_composition, terms_of
from ._estimators import estimator_from_state, get_estimator, nnmeter_rf_params, tuned_lgbm_params
from ._kernel_features import KERNEL_FEATURE_NAMES, kernel_feature_schema, kernel_features
from ._metrics import latency_metrics
from ._target import check_target, reference_ms, with_target

log = logging.getLogger(__name__)

UNIT_KIND = "kernel"
_NNMETER_KIND = {"conv": "conv", "gconv": "conv", "dwconv": "dwconv", "linear": "fc"}
_ELEMENTWISE = ("act", "eltwise", "layout", "pool", "gpool", "concat-n", "split", "shuffle", "resize", "pad", "bn",
                "softmax")


class _KernelItem:
    """What the composition term reads of a kernel: type, input/output sizes and weights."""

    def __init__(self, ktype: str, config: dict, elems: tuple[int, int, int] | None = None,
                 fp32: bool = False) -> None:
        self.type = ktype
        self.fp32 = bool(fp32)
        in_e, out_e, w = elems if elems is not None else kernel_shapes(ktype, config)
        self.input_shape, self.output_shape, self.params = (int(in_e),), (int(out_e),), int(w)


def _config(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value)


class KernelLatencyPredictor:
    """Latency predictor of one device, backend and dtype for arbitrary ONNX models, kernel by kernel.

    Parameters
    ----------
    device : str
    dtype : str
    backend : str
        The backend the rows were timed with (it picks the default fusion rules).
    estimator : str
        A registered estimator (``list_estimators``).
    estimator_params : dict, optional
    target : str
        One of ``TARGETS``.
    reference_ms : float, optional
        The reference block's latency (``norm_ms`` targets).
    rules : dict, optional
        Fusion rules measured on the device (default: the shipped ones of ``backend`` and ``dtype``).
    fingerprint : dict, optional
    source : str, optional
        Where the rows came from (recorded in the manifest).
    """

    unit_kind = UNIT_KIND

    def __init__(self, device: str = "unknown", dtype: str = "int8", backend: str = "ort", estimator: str = "lgbm",
                 estimator_params: dict | None = None, target: str = "median_ms", reference_ms: float | None = None,
                 rules: dict | None = None, fingerprint: dict | None = None, source: str | None = None) -> None:
        check_target(target)
        get_estimator(estimator)
        self.device, self.dtype, self.backend = device, dtype, backend
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {})
        self.target = target
        self.reference_ms = reference_ms
        self.rules = dict(rules) if rules is not None else default_rules(backend, dtype)
        self.fingerprint = dict(fingerprint or {})
        self.source = source
        self.models: dict = {}
        self.composition = identity_composition()
        self.fallback: dict = {}
        self._manifest: dict = {}
        self.source_digest: str | None = None

    # -- training ------------------------------------------------------------------------------
    def _make(self, ktype: str):
        params = dict(self.estimator_params)
        if self.estimator == "rf":
            params = {**nnmeter_rf_params(_NNMETER_KIND.get(ktype, "other")), **params}
        elif self.estimator == "lgbm":
            params = {**tuned_lgbm_params(KERNEL_FEATURE_NAMES), **params}
        return get_estimator(self.estimator)(**params)

    @staticmethod
    def kernel_rows(df: pd.DataFrame) -> pd.DataFrame:
        """The ok rows of model kernel types."""
        if "status" in df.columns:
            df = df[df["status"].fillna("ok") == "ok"]
        return df[(df["kind"] == "kernel") & df["type"].isin(MODEL_KERNELS)]

    @staticmethod
    def model_rows(df: pd.DataFrame) -> pd.DataFrame:
        """The ok rows of whole ONNX models."""
        if "status" in df.columns:
            df = df[df["status"].fillna("ok") == "ok"]
        return df[(df["kind"] == "model") & (df["type"] == "onnx-model")]

    def _fit_types(self, rows: pd.DataFrame) -> None:
        self.models = {}
        for t, part in rows.groupby("type"):
            X = kernel_features(str(t), [_config(c) for c in part["config"]])
            self.models[str(t)] = self._make(str(t)).fit(X, part[self.target].to_numpy(dtype=np.float64))

    def fit(self, df: pd.DataFrame) -> "KernelLatencyPredictor":
        """Fit one estimator per kernel type on kernel rows; the composition term on ``onnx-model`` rows, if any."""
        rows = self.kernel_rows(df)
        if rows.empty:
            raise ValueError(f"no kernel measurements of model kernel types ({', '.join(MODEL_KERNELS)}) to train "
                             "on: profile them with spaceevo profile --models DIR")
        if self.target == "norm_ms" and self.reference_ms is None:
            self.reference_ms = reference_ms(rows)
        rows = with_target(rows, self.target, self.reference_ms)
        self._fit_types(rows)
        self.fallback = self._fit_fallback(rows)
        pred = np.concatenate([self._predict_type(str(t), [_config(c) for c in part["config"]])
                               for t, part in rows.groupby("type")])
        y_sorted = np.concatenate([part[self.target].to_numpy(dtype=np.float64) for _, part in rows.groupby("type")])
        self.composition = identity_composition()
        metrics: dict = {"unit_train": latency_metrics(y_sorted, pred)}
        warnings: list[str] = []
        models = self.model_rows(df)
        used: list[str] = []
        if len(models):
            models = with_target(models, self.target, self.reference_ms)
            metrics.update(self.fit_composition(models))
            used = [_config(c).get("name") for c in models["config"]]
        else:
            warnings.append("no whole-model rows (onnx-model): model predictions are the plain sum of kernels; "
                            "profile with spaceevo profile --models DIR (it times the models too)")
        missing = sorted(set(MODEL_KERNELS) - set(self.models))
        if missing:
            warnings.append(f"kernel types without a model (estimated by the flagged fallback): {missing}")
        self._manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "unit_kind": UNIT_KIND, "device": self.device,
            "dtype": self.dtype, "backend": self.backend, "estimator": self.estimator,
            "estimator_params": self.estimator_params, "target": self.target, "reference_ms": self.reference_ms,
            "fusion_rules": self.rules, "fingerprint": self.fingerprint, "source": self.source,
            "feature_schema": kernel_feature_schema(),
            "dataset": {"digest": dataset_digest(df), "n_kernel_rows": int(len(rows)), "n_model_rows": int(len(models)),
                        "kernel_types": sorted(self.models), "training_models": used},
            "metrics": metrics, "composition": self.composition, "fallback": self.fallback,
            "kernel_types_missing": missing, "warnings": warnings,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.source_digest = None
        return self

    def _fit_fallback(self, rows: pd.DataFrame) -> dict:
        """Time per MAC (compute kernels) and per output element (the rest), as ratios of sums: the fallback.

        Ratios of sums are set by the large kernels, where a kernel's fixed overhead matters least, so an
        unmapped op with many MACs is not charged the per-call overhead of the small ones for each MAC.
        """
        y = rows[self.target].to_numpy(dtype=np.float64)
        elems = np.array([kernel_shapes(t, _config(c)) for t, c in zip(rows["type"], rows["config"])], dtype=float)
        macs = rows["macs"].to_numpy(dtype=np.float64) if "macs" in rows.columns else np.zeros(len(rows))
        compute = macs > 0
        light = rows["type"].isin(_ELEMENTWISE).to_numpy()
        if not light.any():
            light = np.ones(len(rows), dtype=bool)
        per_mac = float(y[compute].sum() / macs[compute].sum()) if compute.any() else 0.0
        per_elem = float(y[light].sum() / max(elems[light, 1].sum(), 1.0))
        return {"ms_per_mac": per_mac, "ms_per_out_elem": per_elem, "min_ms": float(np.min(y))}

    def composition_data(self, models: pd.DataFrame) -> tuple[list, list, np.ndarray]:
        """Kernel items, predicted kernel latencies and measured ``target`` of the whole-model rows whose files
        exist (their kernels detected again from the stored path): what a composition term is fitted on."""
        networks, lats, ys = [], [], []
        for cfg, ms in zip(models["config"], models[self.target]):
            path = _config(cfg).get("path")
            if not path or not Path(path).is_file():
                log.warning("whole-model row %s: its file is gone; left out of the composition term", path)
                continue
            det = detect_kernels(path, rules=self.rules)
            lat, _src = self.predict_kernels(det.kernels)
            networks.append([_KernelItem(k.type, k.config, k.elems(), k.fp32) for k in det.kernels])
            lats.append(lat)
            ys.append(float(ms))
        return networks, lats, np.asarray(ys, dtype=np.float64)

    def fit_composition(self, models: pd.DataFrame) -> dict:
        """Learn the composition term on whole-model rows (their kernels detected again from the stored path)."""
        networks, lats, ys = self.composition_data(models)
        if not len(ys):
            return {}
        self.composition, metrics = fit_composition(networks, lats, ys)
        return metrics

    # -- queries -------------------------------------------------------------------------------
    def _predict_type(self, ktype: str, configs: Sequence[dict]) -> np.ndarray:
        return self.models[ktype].predict(kernel_features(ktype, configs))

    def _fallback(self, macs: int, out_elems: int) -> float:
        f = self.fallback
        return max(f.get("min_ms", 0.0), macs * f.get("ms_per_mac", 0.0) + out_elems * f.get("ms_per_out_elem", 0.0))

    def predict_kernels(self, kernels: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Latency (ms) and source ('model' or 'fallback') of each detected kernel."""
        if not self.models:
            raise ValueError("this KernelLatencyPredictor is not fitted; call fit(df) or load a saved predictor")
        out = np.zeros(len(kernels))
        src = np.full(len(kernels), "model", dtype=object)
        by_type: dict[str, list[int]] = {}
        for i, k in enumerate(kernels):
            if k.supported and k.type in self.models:
                by_type.setdefault(k.type, []).append(i)
            else:
                out[i] = self._fallback(k.macs, k.elems()[1])
                src[i] = "fallback"
        for t, idx in by_type.items():
            out[idx] = self._predict_type(t, [kernels[i].config for i in idx])
        return out, src.astype(str)

    def detect(self, model: Any, input_shape: Sequence[int] | None = None):
        """The model's kernels under this predictor's fusion rules (``spaceevo.latency.detect_kernels``)."""
        return detect_kernels(model, rules=self.rules, input_shape=tuple(input_shape) if input_shape else None)

    def predict_model(self, model: Any, input_shape: Sequence[int] | None = None, composed: bool = True) -> dict:
        """``latency_ms`` of an ONNX model (path or ModelProto), its ``kernels`` and ``unsupported`` ops.

        Parameters
        ----------
        model : ONNX file path or ``onnx.ModelProto``.
        input_shape : static input shape when the model leaves it symbolic.
        composed : apply the composition term (False: the plain sum of kernels).

        Returns
        -------
        dict with ``latency_ms``, ``kernels_sum_ms``, ``macs``, ``kernels`` (type, config, ops, latency_ms,
        source) and ``unsupported`` (op, count, macs_share, estimate_ms, fallback).
        """
        det = self.detect(model, input_shape)
        lat, src = self.predict_kernels(det.kernels)
        items = [_KernelItem(k.type, k.config, k.elems(), k.fp32) for k in det.kernels]
        total = float(lat.sum())
        est: dict[str, float] = {}
        for k, v in zip(det.kernels, lat):
            if not k.supported:
                est[k.config["op"]] = est.get(k.config["op"], 0.0) + float(v)
        unsupported = [{**u, "estimate_ms": est.get(u["op"], 0.0), "fallback": True} for u in det.unsupported]
        return {"model": det.name, "device": self.device, "dtype": self.dtype, "backend": self.backend,
                "latency_ms": compose(self.composition, items, lat) if composed and items else total,
                "kernels_sum_ms": total, "macs": det.macs, "input_shape": list(det.input_shape),
                "kernels": [{"type": k.type, "config": k.config, "ops": k.ops, "op_types": k.op_types,
                             "macs": k.macs, "fp32": k.fp32, "latency_ms": float(v), "source": str(s)}
                            for k, v, s in zip(det.kernels, lat, src)],
                "unsupported": unsupported, "warnings": self.warnings}

    # -- artefact ------------------------------------------------------------------------------
    @property
    def warnings(self) -> list[str]:
        """What this predictor cannot answer well (manifest ``warnings``)."""
        return list(self._manifest.get("warnings") or [])

    @property
    def manifest(self) -> dict:
        """Device, dtype, fusion rules, feature schema, dataset, metrics, composition, fallback."""
        return dict(self._manifest)

    def to_dict(self) -> dict:
        """The whole predictor as JSON-able data (the block predictors' format, ``unit_kind: kernel``)."""
        if not self.models:
            raise ValueError("this KernelLatencyPredictor is not fitted")
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": self._manifest,
                "composition": self.composition, "models": {t: m.to_state() for t, m in sorted(self.models.items())}}

    def save(self, path: str | Path) -> Path:
        """One JSON file; gzip unless the name ends in ``.json``."""
        return write_predictor_file(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>") -> "KernelLatencyPredictor":
        """Rebuild from :meth:`to_dict` data; bad data raises ``PredictorFileError``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PredictorFileError(f"{origin} is not a spaceevo latency predictor")
        man = data.get("manifest") or {}
        if man.get("unit_kind") != UNIT_KIND:
            raise PredictorFileError(f"{origin} is a block predictor, not a kernel predictor: it predicts subnets "
                                     "of a search space (spaceevo predict SUBNET --space ...)")
        schema = man.get("feature_schema") or {}
        if schema != kernel_feature_schema():
            raise PredictorFileError(f"{origin} was trained with kernel feature schema version "
                                     f"{schema.get('version')} which this spaceevo does not compute; retrain it "
                                     "(spaceevo train --kind kernel)")
        try:
            pred = cls(device=man["device"], dtype=man["dtype"], backend=man.get("backend", "ort"),
                       estimator=man["estimator"], estimator_params=man.get("estimator_params"), target=man["target"],
                       reference_ms=man.get("reference_ms"), rules=man.get("fusion_rules"),
                       fingerprint=man.get("fingerprint"), source=man.get("source"))
            pred.models = {t: estimator_from_state(s) for t, s in data["models"].items()}
            pred.composition = dict(data["composition"])
            terms_of(pred.composition)
            pred.fallback = dict(man.get("fallback") or {})
            pred._manifest = man
        except PredictorFileError:
            raise
        except Exception as exc:
            raise PredictorFileError(f"{origin} is a corrupt spaceevo kernel predictor ({type(exc).__name__}: {exc})") \
                from exc
        if not pred.models:
            raise PredictorFileError(f"{origin} is a corrupt spaceevo kernel predictor (no models)")
        return pred

    @classmethod
    def load(cls, path: str | Path) -> "KernelLatencyPredictor":
        """Load a kernel predictor file (gzip or plain JSON)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"predictor file {str(path)!r} does not exist")
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        try:
            data = json.loads((gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PredictorFileError(f"predictor file {str(path)!r} is corrupt or not a spaceevo predictor "
                                     f"({type(exc).__name__}: {exc})") from exc
        pred = cls.from_dict(data, origin=f"predictor file {str(path)!r}")
        pred.source_digest = digest
        return pred

    def __repr__(self) -> str:
        return (f"KernelLatencyPredictor(device={self.device!r}, backend={self.backend!r}, dtype={self.dtype!r}, "
                f"estimator={self.estimator!r}, types={sorted(self.models)})")


def train_kernel_predictor(df: pd.DataFrame, device: str, dtype: str = "int8", backend: str = "ort",
                           estimator: str = "lgbm", target: str = "median_ms", rules: dict | None = None,
                           fingerprint: dict | None = None, source: str | None = None,
                           estimator_params: dict | None = None, cv_folds: int = 5, seed: int = 0
                           ) -> KernelLatencyPredictor:
    """Train a kernel predictor on a store's rows of one device and dtype; k-fold kernel metrics in the manifest.

    Parameters
    ----------
    df : the store's rows (kernel rows of model kernel types; ``onnx-model`` rows for the composition term).
    device, dtype, backend : whose rows, and whose fusion rules (unless ``rules``, e.g. measured ones).
    estimator : ``lgbm`` (default) or ``rf`` (nn-Meter's random forest settings per kernel kind).
    target : timing statistic learned (``norm_ms`` needs rows profiled with the reference).
    cv_folds : k of the k-fold metrics over kernel rows (0 or 1 to skip).

    Returns
    -------
    KernelLatencyPredictor, fitted.

    Raises
    ------
    ValueError when there are no rows for this device and dtype, or no kernel rows.
    """
    if "device" in df.columns and device is not None:
        df = df[df["device"] == device]
    if "dtype" in df.columns:
        df = df[df["dtype"] == dtype]
    if df.empty:
        raise ValueError(f"no measurements for device={device!r} dtype={dtype!r}")
    pred = KernelLatencyPredictor(device=device, dtype=dtype, backend=backend, estimator=estimator,
                                  estimator_params=estimator_params, target=target, rules=rules,
                                  fingerprint=fingerprint, source=source).fit(df)
    if cv_folds >= 2:
        pred._manifest["metrics"]["unit_cv"] = _kfold(pred, df, cv_folds, seed)
    return pred


def _kfold(pred: KernelLatencyPredictor, df: pd.DataFrame, folds: int, seed: int) -> dict:
    rows = with_target(pred.kernel_rows(df), pred.target, pred.reference_ms).reset_index(drop=True)
    if len(rows) < folds:
        return {}
    fold = np.random.default_rng(seed).permutation(len(rows)) % folds
    y = rows[pred.target].to_numpy(dtype=np.float64)
    p = np.zeros(len(rows))
    for f in range(folds):
        train, test = rows[fold != f], rows[fold == f]
        for t, part in test.groupby("type"):
            tr = train[train["type"] == t]
            idx = part.index.to_numpy()
            if len(tr) == 0:  # a type seen in one fold only: no model, the fallback answers
                p[idx] = np.nan
                continue
            model = pred._make(str(t)).fit(kernel_features(str(t), [_config(c) for c in tr["config"]]),
                                           tr[pred.target].to_numpy(dtype=np.float64))
            p[idx] = model.predict(kernel_features(str(t), [_config(c) for c in part["config"]]))
    ok = np.isfinite(p)
    return latency_metrics(y[ok], p[ok])
