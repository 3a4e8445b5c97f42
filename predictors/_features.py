"""Features of a block configuration: the config, MACs, params, tensor sizes, hidden width, alignment."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from spaceevo.space import ACTIVATIONS, BlockConfig

FEATURE_SCHEMA_VERSION = 1
CONFIG_FIELDS: tuple[str, ...] = ("type", "hw", "cin", "cout", "k", "e", "stride", "act")
_MODULI = (4, 8, 16, 32, 64)
FEATURE_NAMES: tuple[str, ...] = (
    "hw", "cin", "cout", "k", "e", "stride", "act_id",
    "macs", "params", "in_size", "out_size", "hidden", "hidden_size",
    *(f"{c}_mod{m}" for c in ("cin", "cout", "hidden") for m in _MODULI),
)


def feature_schema() -> dict:
    """The feature schema stored in a predictor's manifest."""
    return {"version": FEATURE_SCHEMA_VERSION, "names": list(FEATURE_NAMES), "moduli": list(_MODULI),
            "activations": list(ACTIVATIONS)}


def config_key(cfg: BlockConfig) -> str:
    """Stable key of a block config (its compact string)."""
    return cfg.to_string()


@lru_cache(maxsize=200_000)
def _features_cached(cfg: BlockConfig) -> tuple[float, ...]:
    out_shape = cfg.output_shape
    in_size = float(np.prod(cfg.input_shape))
    out_size = float(np.prod(out_shape))
    out_hw = out_shape[2] if len(out_shape) == 4 else 1
    hidden = cfg.hidden
    base = [cfg.hw, cfg.cin, cfg.cout, cfg.k, cfg.e, cfg.stride, ACTIVATIONS.index(cfg.act),
            cfg.macs, cfg.params, in_size, out_size, hidden, float(hidden * out_hw * out_hw)]
    mods = [v % m for v in (cfg.cin, cfg.cout, hidden) for m in _MODULI]
    return tuple(float(x) for x in base + mods)


def block_features(configs: Sequence[BlockConfig]) -> np.ndarray:
    """Feature matrix ``(n, len(FEATURE_NAMES))`` of block configs."""
    if len(configs) == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.array([_features_cached(c) for c in configs], dtype=np.float64)


def configs_from_frame(df: pd.DataFrame) -> list[BlockConfig]:
    """Block configs of a DataFrame with the store's block columns (type, hw, cin, cout, k, e, stride, act)."""
    missing = [c for c in CONFIG_FIELDS if c not in df.columns]
    if missing:
        raise ValueError(f"measurement table lacks the block columns {missing}; needed: {list(CONFIG_FIELDS)}")
    out = []
    for row in df[list(CONFIG_FIELDS)].itertuples(index=False):
        e = 0.0 if row.e is None or (isinstance(row.e, float) and np.isnan(row.e)) else float(row.e)
        out.append(BlockConfig(str(row.type), int(row.hw), int(row.cin), int(row.cout), int(row.k), e,
                               int(row.stride), str(row.act)))
    return out


def configs_from_dicts(rows: Iterable[dict]) -> list[BlockConfig]:
    """Block configs from dicts with the config fields."""
    return [BlockConfig(r["type"], int(r["hw"]), int(r["cin"]), int(r["cout"]), int(r.get("k", 3)),
                        float(r.get("e", 0.0) or 0.0), int(r.get("stride", 1)), r.get("act", "relu")) for r in rows]
