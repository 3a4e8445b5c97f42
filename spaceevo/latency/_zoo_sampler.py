"""The ``zoo`` sampler: kernel configurations of real networks, drawn from random zoo models of 14 families.

Where nn-Meter's ``prior`` tables cover conv/dwconv/fc configurations of its model zoo, this sampler
covers every kernel type the detector finds (SE, shuffle, concat, pooling, ...): it builds random
models of the zoo families in memory, detects their kernels under a backend's fusion rules and draws
distinct kernels from them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spaceevo.space import build_zoo_model, list_zoo_families, zoo_seeds

from ._detect import detect_kernels
from ._samplers import register_sampler


@register_sampler("zoo")
def sample_zoo(limit: int | None = 100, seed: int = 0, kind: str = "kernel", kernels: Sequence[str] | None = None,
               backend: str = "ort", dtype: str = "int8", families: Sequence[str] | None = None,
               resolutions: Sequence[int] | None = None, **_ignored) -> list:
    """``limit`` distinct kernels of random zoo models (``kernels``: only these types)."""
    if kind != "kernel":
        raise ValueError(f"sampler 'zoo' draws kernels; kind={kind!r} is not allowed (use kind='kernel')")
    n = 100 if limit is None else limit
    if n < 1:
        raise ValueError(f"limit={n!r} must be >= 1")
    fams = list(families or list_zoo_families())
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {}
    for i in range(1, 100):
        for fam in fams:
            res = None if not resolutions else int(rng.choice(list(resolutions)))
            model, _entry = build_zoo_model(fam, zoo_seeds(fam, seed, i)[-1], res)
            for k in detect_kernels(model, backend, dtype).kernels:
                if k.supported and (not kernels or k.type in kernels):
                    out.setdefault(k.key, k.unit())
        if len(out) >= n:
            break
    units = list(out.values())
    return [units[j] for j in sorted(rng.permutation(len(units))[:n])]
