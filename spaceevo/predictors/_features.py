"""Features of a block configuration: the config, MACs, params, tensor sizes, hidden width, alignment.

Schema version 2 adds the work split by kind (dense vs depthwise MACs), the activation elements the
block's layers write (memory traffic), the number of layers (per-layer overhead), an SE flag and the
output side. Predictors trained with version 1 keep loading and use the version-1 features.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from spaceevo.space import ACTIVATIONS, SE, BlockConfig, Conv, Linear, Shape, walk

if TYPE_CHECKING:  # only the annotation: features of a block need NumPy alone
    import pandas as pd

FEATURE_SCHEMA_VERSION = 2
CONFIG_FIELDS: tuple[str, ...] = ("type", "hw", "cin", "cout", "k", "e", "stride", "act")
_MODULI = (4, 8, 16, 32, 64)
_V1_NAMES: tuple[str, ...] = (
    "hw", "cin", "cout", "k", "e", "stride", "act_id",
    "macs", "params", "in_size", "out_size", "hidden", "hidden_size",
    *(f"{c}_mod{m}" for c in ("cin", "cout", "hidden") for m in _MODULI),
)
_V2_EXTRA: tuple[str, ...] = ("dense_macs", "dw_macs", "act_elems", "n_layers", "has_se", "out_hw")
FEATURE_NAMES_BY_VERSION: dict[int, tuple[str, ...]] = {1: _V1_NAMES, 2: _V1_NAMES + _V2_EXTRA}
FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES_BY_VERSION[FEATURE_SCHEMA_VERSION]


def _check_version(version: int) -> int:
    if version not in FEATURE_NAMES_BY_VERSION:
        raise ValueError(f"feature schema version={version!r} is not one of {sorted(FEATURE_NAMES_BY_VERSION)}")
    return version


def feature_schema(version: int = FEATURE_SCHEMA_VERSION) -> dict:
    """The feature schema (of ``version``) stored in a predictor's manifest.

    Parameters
    ----------
    version : int

    Returns
    -------
    dict
    """
    return {"version": _check_version(version), "names": list(FEATURE_NAMES_BY_VERSION[version]),
            "moduli": list(_MODULI), "activations": list(ACTIVATIONS)}


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
    dense = dw = act = layers = se = 0
    shape = Shape(cfg.cin, cfg.hw, cfg.type == "LogitsBlock")
    for op, _inp, out in walk(cfg.ops, shape):
        if isinstance(op, Conv):
            m = out.hw * out.hw * op.cout * (op.cin // op.groups) * op.k * op.k
            if op.groups > 1:
                dw += m
            else:
                dense += m
            act += out.c * out.hw * out.hw
            layers += 1
        elif isinstance(op, (SE, Linear)):
            dense += 2 * op.channels * op.mid if isinstance(op, SE) else op.cin * op.cout
            se += isinstance(op, SE)
            act += out.c * out.hw * out.hw
            layers += 1
    extra = [dense, dw, act, layers, se, out_hw]
    return tuple(float(x) for x in base + mods + extra)


def block_features(configs: Sequence[BlockConfig], version: int = FEATURE_SCHEMA_VERSION) -> np.ndarray:
    """Feature matrix ``(n, len(FEATURE_NAMES_BY_VERSION[version]))`` of block configs.

    Parameters
    ----------
    configs : sequence of BlockConfig
    version : int
        Feature schema version.

    Returns
    -------
    numpy.ndarray
        float64.

    Raises
    ------
    ValueError
        Unknown schema version.
    """
    n = len(FEATURE_NAMES_BY_VERSION[_check_version(version)])
    if len(configs) == 0:
        return np.zeros((0, n))
    return np.array([_features_cached(c)[:n] for c in configs], dtype=np.float64)


def configs_from_frame(df: "pd.DataFrame") -> list[BlockConfig]:
    """Block configs of a DataFrame with the store's block columns (type, hw, cin, cout, k, e, stride, act).

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    list of BlockConfig

    Raises
    ------
    ValueError
        A block column is missing.
    """
    missing = [c for c in CONFIG_FIELDS if c not in df.columns]
    if missing:
        raise ValueError(f"measurement table lacks the block columns {missing}; needed: {list(CONFIG_FIELDS)}")
    out = []
    for row in df[list(CONFIG_FIELDS)].itertuples(index=False):
        e = 0.0 if row.e is None or (isinstance(row.e, float) and np.isnan(row.e)) else float(row.e)
        out.append(BlockConfig(str(row.type), int(row.hw), int(row.cin), int(row.cout), int(row.k), e,
                               int(row.stride), str(row.act)))
    return out
