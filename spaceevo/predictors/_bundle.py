"""The predictor artefact: per-block-type models of one device and dtype, a composition term, a manifest.

Saved as one JSON file (gzip when the name ends in ``.gz``): LightGBM text models, forests as arrays,
no pickled code, so a predictor keeps loading after library upgrades.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from spaceevo.latency import DTYPES
from spaceevo.space import BlockConfig, SearchSpace, Subnet, as_search_space

from ._estimators import estimator_from_state, get_estimator, nnmeter_rf_params, tuned_lgbm_params
from ._coverage import PLAIN_SUM_WARNING, block_type_coverage
from ._composition import compose, fit_composition, identity_composition, per_block_values, terms_of
from ._fast import SubnetLatencyTable
from ._features import (CONFIG_FIELDS, FEATURE_NAMES_BY_VERSION, FEATURE_SCHEMA_VERSION, block_features, config_key,
                        configs_from_frame, feature_schema)
from ._metrics import latency_metrics
from ._target import check_target, reference_ms, with_target
from . import _lut_estimator  # noqa: F401  (registers the "spaceevo-lut" estimator of the built-ins)
from . import _transfer  # noqa: F401  (registers the "transfer" estimator of adapted predictors)

log = logging.getLogger(__name__)

FORMAT = "spaceevo-latency-predictor"
FORMAT_VERSION = 1


class PredictorFileError(ValueError):
    """A predictor file is corrupt, not a predictor, or of an incompatible format version."""


def _runtime_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("spaceevo", "lightgbm", "scikit-learn", "numpy", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def dataset_digest(df: pd.DataFrame) -> str:
    """SHA-256 of the training rows (key and median latency, sorted), independent of row order.

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (``LatencyStore.read_measurements``).

    Returns
    -------
    str
        ``sha256:<hex>``.
    """
    cols = [c for c in ("kind", "key", "median_ms") if c in df.columns]
    if "key" not in cols:
        cols = [c for c in (*CONFIG_FIELDS, "median_ms") if c in df.columns]
    text = "\n".join(sorted(df[cols].astype(str).agg("|".join, axis=1)))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def block_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a predictor trains its block models on: ``kind == 'block'`` and ``status == 'ok'``.

    Parameters
    ----------
    df : pandas.DataFrame
        Store rows (columns ``kind`` and ``status`` are optional).

    Returns
    -------
    pandas.DataFrame
    """
    if "status" in df.columns:
        df = df[df["status"].fillna("ok") == "ok"]
    if "kind" in df.columns:
        df = df[df["kind"] == "block"]
    return df


def _parse_subnet(space: SearchSpace, subnet: Subnet | str) -> Subnet:
    return space.parse_subnet(subnet) if isinstance(subnet, str) else subnet



def write_predictor_file(data: dict, path: str | Path) -> Path:
    """Write a predictor's ``to_dict`` data as one JSON file, gzip unless the name ends in ``.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, separators=(",", ":"))
    if path.suffix != ".json":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path

class LatencyPredictor:
    """Latency predictor of one device and dtype: one model per block type plus a composition term.

    Parameters
    ----------
    device : str
        Device id of the measurements.
    dtype : str
        One of ``DTYPES``.
    estimator : str
        A registered estimator (``list_estimators``).
    estimator_params : dict, optional
        Its parameters (over the tuned defaults).
    fingerprint : dict, optional
        The device's fingerprint(s), kept in the manifest.
    source : str, optional
        Where the training rows came from.
    target : str
        The timing statistic learned, one of ``TARGETS``.
    reference_ms : float, optional
        Scale of ``norm_ms`` (default: the training rows' reference time).

    Raises
    ------
    ValueError
        Unknown dtype, target or estimator.
    """

    def __init__(self, device: str = "unknown", dtype: str = "int8", estimator: str = "lgbm",
                 estimator_params: dict | None = None, fingerprint: dict | None = None, source: str | None = None,
                 target: str = "median_ms", reference_ms: float | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)}")
        check_target(target)
        get_estimator(estimator)
        self.device = device
        self.dtype = dtype
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {})
        self.fingerprint = dict(fingerprint or {})
        self.source = source
        self.target = target
        self.reference_ms = reference_ms  # the scale of norm_ms (the reference block's undisturbed time)
        self.feature_version = FEATURE_SCHEMA_VERSION
        self.models: dict = {}
        self.composition = identity_composition()
        self._manifest: dict = {}
        self._tables: dict[str, SubnetLatencyTable] = {}
        self._composed: dict[str, SubnetLatencyTable] = {}
        self.source_digest: str | None = None  # set by ``load``: SHA-256 of the predictor file

    # -- training ------------------------------------------------------------------------------
    def _make(self, unit_type: str):
        cls = get_estimator(self.estimator)
        params = dict(self.estimator_params)
        if self.estimator == "rf":
            params = {**nnmeter_rf_params(unit_type), **params}
        tuned = tuned_lgbm_params(FEATURE_NAMES_BY_VERSION[self.feature_version])
        if self.estimator == "lgbm":
            params = {**tuned, **params}
        elif self.estimator == "lut":
            params["fallback_params"] = {**tuned, **(params.get("fallback_params") or {})}
        return cls(**params)

    def fit(self, df: pd.DataFrame) -> "LatencyPredictor":
        """Fit one model per block type on block rows; learn the composition term from model rows, if any."""
        blocks = block_rows(df)
        if blocks.empty:
            raise ValueError("no block measurements (kind='block', status='ok') to train on")
        given = df
        if "status" in df.columns:
            df = df[df["status"].fillna("ok") == "ok"]
        if self.target == "norm_ms" and self.reference_ms is None:
            self.reference_ms = reference_ms(blocks)
        df = with_target(df, self.target, self.reference_ms)
        blocks = block_rows(df)
        configs = configs_from_frame(blocks)
        y = blocks[self.target].to_numpy(dtype=np.float64)
        types = np.array([c.type for c in configs])
        X = block_features(configs, self.feature_version)
        self.models = {}
        for t in sorted(set(types.tolist())):
            m = types == t
            self.models[t] = self._make(t).fit(X[m], y[m])
        self._tables = {}
        self._composed = {}
        self.source_digest = None  # no longer the loaded file's predictions
        self.composition = identity_composition()
        models = df[df["kind"] == "model"] if "kind" in df.columns else df.iloc[:0]
        if "status" in models.columns:
            models = models[models["status"].fillna("ok") == "ok"]
        if len(models):
            self.fit_composition(models)
        unit_pred = self.predict_blocks(configs)
        spaces = [json.loads(c)["space"] if isinstance(c, str) else c["space"] for c in models["config"]] \
            if len(models) and "config" in models.columns else []
        missing, warnings = block_type_coverage(self.models, spaces)
        if not len(models):
            warnings.append(PLAIN_SUM_WARNING)
        self._manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "device": self.device, "dtype": self.dtype,
            "estimator": self.estimator, "estimator_params": self.estimator_params, "target": self.target,
            "reference_ms": self.reference_ms, "fingerprint": self.fingerprint, "source": self.source, "runtime": _runtime_versions(),
            "feature_schema": feature_schema(self.feature_version), "dataset": {"digest": dataset_digest(given), "n_block_rows": len(blocks),
                                                             "n_model_rows": int(len(models)),
                                                             "block_types": sorted(self.models)},
            "metrics": {"unit_train": latency_metrics(y, unit_pred), **self._manifest.get("metrics", {})},
            "composition": self.composition, "block_types_missing": missing, "warnings": warnings,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return self

    def fit_composition(self, models: pd.DataFrame) -> dict:
        """Learn the composition term (see ``_composition``) on whole-subnet rows; return its metrics.

        Blocks timed alone pay per-model overheads (session call, quantising the input, de-quantising the
        output) that a whole network pays once, so the plain sum overestimates; the term is fitted in
        relative error, and the feature set is chosen by leave-one-out error on these rows only.
        """
        networks, lats, y = [], [], []
        for cfg, ms in zip(models["config"], models[self.target]):
            c = json.loads(cfg) if isinstance(cfg, str) else dict(cfg)
            sp = as_search_space(c["space"])
            configs = [b.config for b in sp.blocks(_parse_subnet(sp, c["subnet"]))]
            networks.append(configs)
            lats.append(self.predict_blocks(configs))
            y.append(float(ms))
        self.composition, metrics = fit_composition(networks, lats, y)
        self._manifest.setdefault("metrics", {}).update(metrics)
        self._manifest["composition"] = self.composition
        self._tables = {}
        self._composed = {}
        self.source_digest = None  # no longer the loaded file's predictions
        return metrics

    # -- queries -------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.models:
            raise ValueError("this LatencyPredictor is not fitted; call fit(df) or load a saved predictor")

    def predict_blocks(self, configs: Sequence[BlockConfig], return_source: bool = False):
        """Latency (ms) of each block config; with ``return_source`` also 'lookup' or 'model' per config."""
        self._check_fitted()
        configs = list(configs)
        out = np.zeros(len(configs))
        source = np.full(len(configs), "model", dtype=object)
        types = np.array([c.type for c in configs], dtype=object)
        X = block_features(configs, self.feature_version)
        for t in sorted(set(types.tolist())):
            if t not in self.models:
                raise ValueError(f"block type {t!r} has no model in this predictor (trained types: "
                                 f"{sorted(self.models)}; its manifest's block_types_missing lists what it "
                                 f"lacks); profile {t} blocks and retrain")
            m = types == t
            model = self.models[t]
            out[m] = model.predict(X[m])
            if return_source and hasattr(model, "predict_source"):
                source[m] = np.where(model.predict_source(X[m]), "lookup", "model")
        return (out, source.astype(str)) if return_source else out

    def predict_block(self, config: BlockConfig | str) -> float:
        """Latency (ms) of one block (a ``BlockConfig`` or its string form)."""
        cfg = BlockConfig.parse(config) if isinstance(config, str) else config
        return float(self.predict_blocks([cfg])[0])

    def predict_subnet(self, space: SearchSpace | str, subnet: Subnet | str, composed: bool = True) -> dict:
        """``latency_ms`` of a subnet (sum of blocks plus the composition term) and its ``blocks``."""
        sp = as_search_space(space)
        sn = _parse_subnet(sp, subnet)
        blocks = sp.blocks(sn)
        configs = [b.config for b in blocks]
        lat, src = self.predict_blocks(configs, return_source=True)
        total = float(lat.sum())
        params_m = sum(c.params for c in configs) / 1e6
        return {"space": str(sp), "subnet": str(sn),
                "latency_ms": compose(self.composition, configs, lat) if composed else total,
                "blocks_sum_ms": total, "params_m": params_m,
                "blocks": [{"stage": b.stage, **b.config.as_dict(), "latency_ms": float(v), "source": str(s)}
                           for b, v, s in zip(blocks, lat, src)]}

    def predict_network(self, configs: Sequence[BlockConfig], composed: bool = True) -> float:
        """Latency (ms) of one network made of the blocks ``configs``, composed by this predictor's own term.

        Parameters
        ----------
        configs : sequence of BlockConfig
            The network's blocks, in order (e.g. a subnet's blocks with its real classifier width).
        composed : bool
            Apply the composition term (else the plain sum of the block latencies).

        Returns
        -------
        float
        """
        configs = list(configs)
        lat = self.predict_blocks(configs)
        return compose(self.composition, configs, lat) if composed else float(lat.sum())

    def table(self, space: SearchSpace | str) -> SubnetLatencyTable:
        """The cached block-latency table of a search space (built on first use)."""
        sp = as_search_space(space)
        key = str(sp)
        if key not in self._tables:
            self._check_fitted()
            self._tables[key] = SubnetLatencyTable(sp, self.predict_blocks)
        return self._tables[key]

    def predict_subnets(self, space: SearchSpace | str, subnets: Sequence[Subnet | str]) -> np.ndarray:
        """Latency (ms) of many subnets with the cached table (vectorised gathers and sums)."""
        sp = as_search_space(space)
        subs = [_parse_subnet(sp, s) for s in subnets]
        return self.predict_encoded(sp, *self.table(sp).encode(subs))

    def composed_table(self, space: SearchSpace | str) -> SubnetLatencyTable:
        """The table of each cached block's share of the composed latency (the composition folded in)."""
        sp = as_search_space(space)
        key = str(sp)
        if key not in self._composed:
            raw = self.table(sp)

            def values(configs):
                if len(configs) != len(raw.configs):
                    raise RuntimeError("the composed table must enumerate the same blocks as the raw table")
                return per_block_values(self.composition, configs, raw.latency)
            self._composed[key] = SubnetLatencyTable(sp, values, resolutions=raw.resolutions)
        return self._composed[key]

    def predict_encoded(self, space: SearchSpace | str, r_idx: np.ndarray, depths: np.ndarray,
                        codes: np.ndarray) -> np.ndarray:
        """Latency (ms) of subnets already encoded with ``table(space).encode`` (the fastest path).

        The composition is linear in per-block values, so it is folded into one value per cached block:
        one gather-and-sum per subnet.
        """
        table = self.composed_table(space)
        return table.sum_encoded(r_idx, depths, codes) + self.composition.get("offset_ms", 0.0)

    def predict_subnet_fast(self, space: SearchSpace | str, subnet: Subnet) -> float:
        """Latency (ms) of one subnet from the cached table, in microseconds."""
        return self.composed_table(space).sum_one(subnet) + self.composition.get("offset_ms", 0.0)

    # -- artefact ------------------------------------------------------------------------------
    @property
    def warnings(self) -> list[str]:
        """What this predictor cannot answer well, found at training (manifest ``warnings``; empty if none)."""
        return list(self._manifest.get("warnings") or [])

    @property
    def manifest(self) -> dict:
        """Format version, device fingerprint, runtime versions, feature schema, dataset digest, metrics, time."""
        return dict(self._manifest)

    def to_dict(self) -> dict:
        """The whole predictor as JSON-able data."""
        self._check_fitted()
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": self._manifest,
                "composition": self.composition,
                "models": {t: m.to_state() for t, m in sorted(self.models.items())}}

    def save(self, path: str | Path) -> Path:
        """Write the predictor to one JSON file: plain text when ``path`` ends in ``.json``, else gzip-compressed.

        The trees are text (LightGBM's own format), which compresses about 5x; ``load`` reads either.
        """
        return write_predictor_file(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<dict>") -> "LatencyPredictor":
        """Rebuild a predictor from :meth:`to_dict` data; bad data raises ``PredictorFileError``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PredictorFileError(f"{origin} is not a spaceevo latency predictor (format field "
                                     f"{data.get('format') if isinstance(data, dict) else None!r}, expected {FORMAT!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PredictorFileError(f"{origin} has predictor format_version={version!r}; this spaceevo reads "
                                     f"format_version {FORMAT_VERSION}: retrain it with 'spaceevo train'")
        try:
            man = data["manifest"]
            schema = man["feature_schema"]
            version = schema.get("version")
            if version not in FEATURE_NAMES_BY_VERSION or schema != feature_schema(version):
                raise PredictorFileError(f"{origin} was trained with feature schema version {version} which this "
                                         f"spaceevo does not compute (versions {sorted(FEATURE_NAMES_BY_VERSION)}); "
                                         "retrain it")
            pred = cls(device=man["device"], dtype=man["dtype"], estimator=man["estimator"],
                       estimator_params=man.get("estimator_params"), fingerprint=man.get("fingerprint"),
                       source=man.get("source"), target=man.get("target", "median_ms"),
                       reference_ms=man.get("reference_ms"))
            pred.feature_version = int(version)
            pred.models = {t: estimator_from_state(s) for t, s in data["models"].items()}
            pred.composition = dict(data["composition"])
            terms_of(pred.composition)
            pred._manifest = man
        except PredictorFileError:
            raise
        except Exception as exc:  # any structural problem of the file
            raise PredictorFileError(f"{origin} is a corrupt spaceevo predictor ({type(exc).__name__}: {exc})") from exc
        if not pred.models:
            raise PredictorFileError(f"{origin} is a corrupt spaceevo predictor (no models)")
        return pred

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        """Load a predictor file; corrupt or incompatible files raise ``PredictorFileError``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"predictor file {str(path)!r} does not exist")
        try:
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            data = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PredictorFileError(f"predictor file {str(path)!r} is corrupt or not a spaceevo predictor "
                                     f"({type(exc).__name__}: {exc})") from exc
        pred = cls.from_dict(data, origin=f"predictor file {str(path)!r}")
        pred.source_digest = digest  # SHA-256 of the file: the identity of compiled caches built from it
        return pred

    def __repr__(self) -> str:
        return (f"LatencyPredictor(device={self.device!r}, dtype={self.dtype!r}, estimator={self.estimator!r}, "
                f"types={sorted(self.models)})")
