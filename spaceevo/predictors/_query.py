"""Table-only queries: a subnet's latency from a compiled (predictor, search space) table, with NumPy alone.

The first query of a (predictor file, search space) pair loads the predictor (pandas, scikit-learn,
LightGBM), predicts every block configuration the space can produce, and compiles what a query needs
into ``$SPACEEVO_HOME/cache/subnet-tables/<space>-<digest>.npz``: each configuration's latency, its
parameter count, its share of the composed latency, its source (``table``/``model``/...) and
extrapolated flag, and the composition term. Later queries read that file and gather: the answers are
the predictor's own, to the last digit (``predict_subnet_blocks`` and ``predict_subnets`` compute the
same sums from the same values). ``$SPACEEVO_NO_CACHE=1`` bypasses the cache.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from spaceevo.space import SearchSpace, Subnet, as_search_space

from ._cache import cache_dir, cache_enabled, cache_key, file_digest, invalid, load_arrays, save_arrays, stat_digest
from ._composition import compose
from ._fast import SubnetLatencyTable
from ._registry import load_predictor, predictor_path

log = logging.getLogger(__name__)

KIND = "subnet-tables"
_ARRAYS = ("latency", "params_m", "composed", "source_names", "source", "extrapolated", "composition",
           "resolutions", "warnings")


def _code_digest() -> str:
    """Cheap digest of the code the cached values come from (this package and the space model)."""
    here = Path(__file__).resolve().parent
    space = Path(__import__("spaceevo.space", fromlist=["_"]).__file__).resolve().parent
    return stat_digest(sorted(here.glob("*.py")) + sorted(space.glob("*.py")))


@dataclass
class CompiledSubnetTable:
    """Per block configuration of one space: latency, params, composed share, source and extrapolated flag."""

    space: SearchSpace
    table: SubnetLatencyTable
    composed: SubnetLatencyTable
    source_names: tuple[str, ...]
    source: np.ndarray
    extrapolated: np.ndarray
    composition: dict
    warnings: list[str]  # the predictor's manifest warnings (what it cannot answer well)

    @classmethod
    def from_arrays(cls, space: SearchSpace, a: dict[str, np.ndarray]) -> "CompiledSubnetTable":
        """Rebuild from the arrays of a cache file; shapes that do not fit ``space`` raise ``ValueError``."""
        res = tuple(int(r) for r in a["resolutions"])
        table = SubnetLatencyTable.from_arrays(space, a["latency"], a["params_m"], resolutions=res)
        composed = SubnetLatencyTable.from_arrays(space, a["composed"], a["params_m"], resolutions=res)
        names = tuple(str(s) for s in a["source_names"])
        n = table.n_configs
        if a["source"].shape != (n,) or a["extrapolated"].shape != (n,) or \
                (n and int(a["source"].max()) >= len(names)):
            raise ValueError("source or extrapolated flags do not fit the table")
        comp = json.loads(str(a["composition"]))
        warns = json.loads(str(a["warnings"]))
        if not isinstance(comp, dict) or not isinstance(warns, list):
            raise ValueError("the composition or the warnings are not JSON of the right kind")
        return cls(space, table, composed, names, a["source"].astype(np.int64), a["extrapolated"].astype(bool), comp,
                   [str(w) for w in warns])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a cache file (no Python objects: loadable with ``allow_pickle=False``)."""
        return {"latency": self.table.latency, "params_m": self.table.params_m, "composed": self.composed.latency,
                "source_names": np.array(self.source_names, dtype=str), "source": self.source.astype(np.uint8),
                "extrapolated": self.extrapolated, "composition": np.array(json.dumps(self.composition)),
                "warnings": np.array(json.dumps(self.warnings)),
                "resolutions": np.array(self.table.resolutions, dtype=np.int64)}

    @classmethod
    def compile(cls, pred, space: SearchSpace) -> "CompiledSubnetTable":
        """Predict every block configuration of ``space`` with ``pred`` (a ``LatencyPredictor``)."""
        from .spaceevo_builtin import describe_blocks  # lazy: pandas and the model stack, not for a warm query

        raw = pred.table(space)
        _lat, src, extra = describe_blocks(pred, raw.configs)
        names = tuple(sorted(set(src)))
        if len(names) > 255:
            raise ValueError("more than 255 distinct block sources")
        code = {s: i for i, s in enumerate(names)}
        return cls(space, raw, pred.composed_table(space), names, np.array([code[s] for s in src], dtype=np.int64),
                   np.asarray(extra, dtype=bool), dict(pred.composition),
                   [str(w) for w in pred.manifest.get("warnings") or []])

    # -- queries -------------------------------------------------------------------------------
    def predict_subnet(self, subnet: Subnet | str) -> dict:
        """What ``predict_subnet_blocks(pred, space, subnet)`` returns, from the compiled arrays."""
        sp = self.space
        sn = sp.parse_subnet(subnet) if isinstance(subnet, str) else subnet
        blocks = sp.blocks(sn)
        idx = np.array(self.table.block_indices(sn), dtype=np.int64)
        configs = [b.config for b in blocks]
        lat = self.table.latency[idx]
        src = self.source[idx]
        extra = self.extrapolated[idx]
        out = {"space": str(sp), "subnet": str(sn), "latency_ms": compose(self.composition, configs, lat),
               "blocks_sum_ms": float(lat.sum()), "params_m": sum(c.params for c in configs) / 1e6,
               "blocks": [{"stage": b.stage, **b.config.as_dict(), "latency_ms": float(v),
                           "source": self.source_names[s], "extrapolated": bool(x)}
                          for b, v, s, x in zip(blocks, lat, src.tolist(), extra)]}
        out["n_extrapolated"] = int(np.sum(extra))
        out["extrapolated_ms"] = float(sum(b["latency_ms"] for b in out["blocks"] if b["extrapolated"]))
        return out

    def predict_subnets(self, subnets: Sequence[Subnet | str]) -> np.ndarray:
        """Latency (ms) of many subnets: what ``LatencyPredictor.predict_subnets`` returns."""
        subs = [self.space.parse_subnet(s) if isinstance(s, str) else s for s in subnets]
        return self.composed.sum_encoded(*self.table.encode(subs)) + self.composition.get("offset_ms", 0.0)


def compiled_subnet_table(predictor: str | Path, space: SearchSpace | str) -> CompiledSubnetTable:
    """The compiled table of a predictor (registered name or file) and a space: from the cache, or built.

    Raises
    ------
    FileNotFoundError
        If ``predictor`` is neither a file nor a registered name.
    PredictorFileError
        If the predictor file must be loaded (no valid cache) and is corrupt.

    Parameters
    ----------
    predictor : str or Path
        Registered name or file.
    space : SearchSpace or str

    Returns
    -------
    CompiledSubnetTable
    """
    sp = as_search_space(space)
    path = predictor_path(predictor)
    if not cache_enabled():
        return _build(path, sp)
    digest = file_digest(path)
    key = cache_key(KIND, digest, sp, _code_digest())
    fpath = cache_dir(KIND) / f"{sp}-{digest[:16]}.npz"
    arrays = load_arrays(fpath, key, required=_ARRAYS)
    if arrays is not None:
        try:
            return CompiledSubnetTable.from_arrays(sp, arrays)
        except (ValueError, KeyError, TypeError) as exc:
            invalid(fpath, f"{type(exc).__name__}: {exc}")
    compiled = _build(path, sp)
    save_arrays(fpath, key, compiled.to_arrays())
    log.info("compiled %s for %s into %s", path.name, sp, fpath)
    return compiled


def _build(path: Path, sp: SearchSpace) -> CompiledSubnetTable:
    return CompiledSubnetTable.compile(load_predictor(path), sp)


def predict_subnet_cached(predictor: str | Path, space: SearchSpace | str, subnet: Subnet | str) -> dict:
    """``predict_subnet_blocks`` of a predictor (name or file) from its compiled table (see module docstring).

    Parameters
    ----------
    predictor : str or Path
    space : SearchSpace or str
    subnet : Subnet or str

    Returns
    -------
    dict
    """
    return compiled_subnet_table(predictor, space).predict_subnet(subnet)


def predict_subnets_cached(predictor: str | Path, space: SearchSpace | str,
                           subnets: Sequence[Subnet | str]) -> np.ndarray:
    """``LatencyPredictor.predict_subnets`` of a predictor (name or file) from its compiled table.

    Parameters
    ----------
    predictor : str or Path
    space : SearchSpace or str
    subnets : sequence of Subnet or str

    Returns
    -------
    numpy.ndarray
    """
    return compiled_subnet_table(predictor, space).predict_subnets(subnets)


# -- one block: the look-up part of a predictor ------------------------------------------------
LOOKUP_KIND = "block-lookups"
_CONFIG_COLS = 7  # hw, cin, cout, k, e, stride, act_id: the key of a spaceevo-lut table row


@dataclass
class CompiledLookup:
    """The exact tables of a predictor's look-up models (``spaceevo-lut``): config key rows and log latency."""

    feature_version: int
    tables: dict[str, tuple[np.ndarray, np.ndarray]]  # block type -> (keys (n, 7) float64, log ms (n,))

    @classmethod
    def compile(cls, pred) -> "CompiledLookup":
        """The recovered rows of every non-synthetic ``spaceevo-lut`` model of ``pred``."""
        tables = {}
        for t, model in pred.models.items():
            table = getattr(model, "table_", None)
            if not isinstance(table, dict) or getattr(model, "synthetic_", False) or \
                    type(model).__name__ != "SpaceEvoLutRegressor":
                continue
            keys = np.array([np.frombuffer(k, dtype=np.float64) for k in table], dtype=np.float64)
            tables[t] = (keys.reshape(-1, _CONFIG_COLS), np.array(list(table.values()), dtype=np.float64))
        return cls(int(pred.feature_version), tables)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays of a cache file: the type names, then ``keys_<i>`` and ``log_<i>`` per type."""
        out = {"types": np.array(sorted(self.tables), dtype=str), "feature_version": np.array(self.feature_version)}
        for i, t in enumerate(sorted(self.tables)):
            out[f"keys_{i}"], out[f"log_{i}"] = self.tables[t]
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "CompiledLookup":
        """Rebuild from a cache file's arrays; wrong shapes raise ``ValueError``."""
        tables = {}
        for i, t in enumerate(str(x) for x in a["types"]):
            keys, log_ms = a[f"keys_{i}"], a[f"log_{i}"]
            if keys.ndim != 2 or keys.shape[1] != _CONFIG_COLS or log_ms.shape != (len(keys),):
                raise ValueError(f"look-up table of {t} has shapes {keys.shape} and {log_ms.shape}")
            tables[t] = (keys.astype(np.float64), log_ms.astype(np.float64))
        return cls(int(a["feature_version"]), tables)

    def predict_block(self, cfg) -> tuple[float, str] | None:
        """``(latency_ms, 'lookup')`` when ``cfg`` is a row of its type's table, else ``None`` (a model must run).

        The value is what ``LatencyPredictor.predict_blocks([cfg], return_source=True)`` gives: the model's
        table value ``v`` (log ms) through the same ``np.exp`` of a one-element array.
        """
        found = self.tables.get(cfg.type)
        if found is None:
            return None
        from ._features import block_features  # lazy: a warm subnet query never needs the feature code

        keys, log_ms = found
        key = np.round(block_features([cfg], self.feature_version)[:, :_CONFIG_COLS], 4)[0]
        hit = np.flatnonzero((keys.view(np.int64) == key.view(np.int64)).all(axis=1))  # byte-exact, as the model
        if not len(hit):
            return None
        ly = np.full(1, log_ms[hit[-1]])  # the model's dict keeps the last of duplicate keys
        return float(np.exp(ly)[0]), "lookup"


def compiled_lookup(predictor: str | Path) -> CompiledLookup:
    """The compiled look-up part of a predictor (registered name or file): from the cache, or built.

    Parameters
    ----------
    predictor : str or Path

    Returns
    -------
    CompiledLookup

    Raises
    ------
    FileNotFoundError
        ``predictor`` is neither a file nor a registered name.
    """
    path = predictor_path(predictor)
    if not cache_enabled():
        return CompiledLookup.compile(load_predictor(path))
    digest = file_digest(path)
    key = cache_key(LOOKUP_KIND, digest, _code_digest())
    fpath = cache_dir(LOOKUP_KIND) / f"{path.name.split('.')[0]}-{digest[:16]}.npz"
    arrays = load_arrays(fpath, key, required=("types", "feature_version"))
    if arrays is not None:
        try:
            return CompiledLookup.from_arrays(arrays)
        except (ValueError, KeyError, TypeError) as exc:
            invalid(fpath, f"{type(exc).__name__}: {exc}")
    compiled = CompiledLookup.compile(load_predictor(path))
    save_arrays(fpath, key, compiled.to_arrays())
    return compiled


def predict_block_cached(predictor: str | Path, cfg) -> tuple[float, str]:
    """``(latency_ms, source)`` of one block: from the compiled look-up tables, else from the loaded predictor.

    Parameters
    ----------
    predictor : str or Path
    cfg : BlockConfig

    Returns
    -------
    (float, str)
    """
    hit = compiled_lookup(predictor).predict_block(cfg)
    if hit is not None:
        return hit
    lat, src = load_predictor(predictor).predict_blocks([cfg], return_source=True)
    return float(lat[0]), str(src[0])


__all__ = ["CompiledLookup", "CompiledSubnetTable", "compiled_lookup", "compiled_subnet_table", "predict_block_cached",
           "predict_subnet_cached", "predict_subnets_cached"]
