"""Small synthetic block look-up tables in the public format (tests, examples, benchmarks).

Rows are valid stage configs of the hyperspace (so predictors can recompute them). Loss is lower for
one "good" block type per stage and grows with distance from it; latency grows with depth, width
and kernel size, so the best spaces are rare and a search has something to find.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from spaceevo.space import get_hyperspace


def write_synthetic_luts(out_dir: str | Path, hyperspace: str = "onnxw", rows_per_resolution: int = 10,
                         seed: int = 0, good_blocks: Sequence[int] | None = None,
                         skip: Sequence[str] = ()) -> Path:
    """Write ``<out_dir>/<hyperspace>/stage{S}_{B}_{W}.csv`` tables; ``skip`` lists file names to leave out."""
    h = get_hyperspace(hyperspace)
    rng = np.random.default_rng(seed)
    n_types = len(h.block_choices)
    good = list(good_blocks) if good_blocks is not None else [int(rng.integers(n_types)) for _ in h.stages]
    root = Path(out_dir) / hyperspace
    root.mkdir(parents=True, exist_ok=True)
    prev_widths = h.stage0.widths
    for s, stage in enumerate(h.stages, start=1):
        stride_before = h.total_stride_before(stage.name)
        for b, choice in enumerate(h.block_choices):
            for w in range(stage.n_windows):
                name = f"stage{s}_{b}_{w}.csv"
                if name in skip:
                    continue
                widths = stage.window(w)
                lines = []
                for res in h.lut_resolutions:
                    for _ in range(rows_per_resolution):
                        d = int(rng.choice(stage.depths))
                        parts, lat, flops = [], 0.0, 0.0
                        for _i in range(d):
                            k = int(rng.choice(choice.kernel_sizes))
                            width = int(rng.choice(widths))
                            e = float(rng.choice(choice.expand_ratios))
                            parts.append(f"{k}#{width}#{'None' if e == 0 else e}")
                            lat += 0.02 * width / 16 * (1 + k / 7) * (res / 160) ** 2
                            flops += width * k
                        cin = int(rng.choice(prev_widths))
                        hw = res // stride_before
                        loss = 0.3 + 0.05 * abs(b - good[s - 1]) + 0.01 * w - 0.01 * d + 0.01 * rng.random()
                        lines.append(f"{'_'.join(parts)},1x{cin}x{hw}x{hw},{loss:.5f},{flops / 10:.3f},"
                                     f"{flops / 1000:.4f},{lat * (1 + 0.1 * b):.5f}")
                (root / name).write_text("\n".join(lines) + "\n")
        prev_widths = stage.widths
    return Path(out_dir)
