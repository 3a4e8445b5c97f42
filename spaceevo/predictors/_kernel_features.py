"""Features of a model kernel (``spaceevo.latency.MODEL_KERNELS``): its config fields, work, traffic, alignment.

One fixed vector for every kernel type (fields a type lacks are 0), named so that the tuned LightGBM
settings' log-linear base (``dense_macs``, ``dw_macs``, ``act_elems``, ``in_size``, ``out_size``,
``params``, ``n_layers``) applies to kernels as it does to blocks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from spaceevo.latency import VOCAB_OF_KERNELS, kernel_shapes

KERNEL_FEATURE_VERSION = 1
_NUMERIC = ("hw", "cin", "cout", "k", "kw", "stride", "groups", "n", "mid", "scale", "p")
_CATEGORICAL = ("act", "op", "gate", "mode", "shape")
_MODULI = (8, 16, 32)
KERNEL_FEATURE_NAMES: tuple[str, ...] = (
    *_NUMERIC, *(f"{c}_id" for c in _CATEGORICAL),
    "dense_macs", "dw_macs", "act_elems", "in_size", "out_size", "params", "n_layers", "out_hw",
    *(f"{c}_mod{m}" for c in ("cin", "cout") for m in _MODULI),
)


def kernel_feature_schema() -> dict:
    """The schema stored in a kernel predictor's manifest."""
    return {"version": KERNEL_FEATURE_VERSION, "names": list(KERNEL_FEATURE_NAMES),
            "vocab": {k: list(v) for k, v in VOCAB_OF_KERNELS.items()}}


@lru_cache(maxsize=100_000)
def _features(ktype: str, items: tuple) -> tuple[float, ...]:
    c = dict(items)
    num = [float(c.get(f, 0) or 0) for f in _NUMERIC]
    cat = [float(VOCAB_OF_KERNELS[f].index(c[f]) + 1) if f in c else 0.0 for f in _CATEGORICAL]
    in_e, out_e, weights = kernel_shapes(ktype, c)
    if ktype in ("conv", "dwconv", "gconv"):
        hw = c["hw"]
        k = max(c["k"], c["kw"])
        o = (hw + 2 * ((k - 1) // 2) - k) // c["stride"] + 1
        macs = o * o * c["cout"] * (c["cin"] // c["groups"]) * c["k"] * c["kw"]
        dense, dw, out_hw = (0, macs, o) if ktype == "dwconv" else (macs, 0, o)
    elif ktype in ("linear", "se-mid"):
        dense, dw, out_hw = weights, 0, 1 if ktype == "linear" else c["hw"]
    else:
        dense, dw = 0, 0
        out_hw = c.get("hw", 1)
    layers = {"se-mid": 4, "shuffle": 3}.get(ktype, 1)
    cin, cout = int(c.get("cin", c.get("cout", 0))), int(c.get("cout", c.get("cin", 0)))
    mods = [float(v % m) for v in (cin, cout) for m in _MODULI]
    return tuple(num + cat + [dense, dw, out_e, in_e, out_e, weights, layers, out_hw] + mods)


def kernel_features(ktype: str, configs: Sequence[dict]) -> np.ndarray:
    """Feature matrix ``(n, len(KERNEL_FEATURE_NAMES))`` of configs of one kernel type.

    Parameters
    ----------
    ktype : str
        A model kernel type.
    configs : sequence of dict

    Returns
    -------
    numpy.ndarray
    """
    if len(configs) == 0:
        return np.zeros((0, len(KERNEL_FEATURE_NAMES)))
    return np.array([_features(ktype, tuple(sorted(c.items()))) for c in configs], dtype=np.float64)
