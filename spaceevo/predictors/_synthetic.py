"""A synthetic latency table in the store's format, for tests, examples and benchmarks without a device."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from spaceevo.space import BlockConfig, SearchSpace, as_search_space


def synthetic_block_ms(cfg: BlockConfig) -> float:
    """A smooth, alignment-sensitive stand-in for a block's INT8 latency (ms)."""
    penalty = 1.0 + 0.15 * (cfg.cin % 16 != 0) + 0.1 * (cfg.cout % 32 != 0)
    return 0.02 + cfg.macs / 3e8 * penalty + cfg.params / 5e7


def synthetic_measurements(space: SearchSpace | str, n_subnets: int = 40, n_models: int = 20, seed: int = 0,
                           device: str = "synthetic", dtype: str = "int8", noise: float = 0.02,
                           overhead_scale: float = 0.85, overhead_ms: float = 0.05) -> pd.DataFrame:
    """Block rows of ``n_subnets`` random subnets and ``n_models`` whole-subnet rows, with the store's columns."""
    sp = as_search_space(space)
    rng = np.random.default_rng(seed)
    subs = sp.sample(n_subnets, seed=rng)
    rows: dict[str, dict] = {}
    for s in subs:
        for b in sp.blocks(s):
            c = b.config
            key = c.to_string()
            if key not in rows:
                ms = synthetic_block_ms(c) * float(np.exp(rng.normal(0, noise)))
                rows[key] = {"kind": "block", "key": key, **c.as_dict(), "config": json.dumps(c.as_dict()),
                             "median_ms": ms}
    for s in subs[:n_models]:
        total = sum(synthetic_block_ms(b.config) for b in sp.blocks(s))
        ms = (overhead_scale * total + overhead_ms) * float(np.exp(rng.normal(0, noise)))
        rows[f"model:{s}"] = {"kind": "model", "type": "subnet", "key": f"{sp}/{s}",
                              "config": json.dumps({"space": str(sp), "subnet": str(s)}), "median_ms": ms}
    df = pd.DataFrame(list(rows.values()))
    df["device"] = device
    df["dtype"] = dtype
    df["backend"] = "synthetic"
    df["status"] = "ok"
    return df
