"""Latency datasets: the SQLite store the collector fills, INT8 speed-up reports, SpaceEvo table importers.

The store and the table reader load with the package (standard library and the space layer); the names of
``lut_import`` and ``speedup`` (pandas, SciPy) are imported on first use (PEP 562), as in ``spaceevo.latency``.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import block_lut
from .block_lut import DEVICE_PREDICTORS, LUT_COLUMNS, LutKey, lut_files, parse_stage_config, read_lut, row_blocks
from .fusion_rules import load_fusion_rules, save_fusion_rules, stored_fusion_rules
from .store import COLUMNS, SCHEMA_VERSION, STAT_FIELDS, LatencyStore, read_rows

# name -> module that defines it; loaded on first access
_LAZY = {
    **dict.fromkeys(("SOURCE", "LutRecovery", "fingerprint_id", "fixed_blocks_frame", "recover_block_latencies",
                     "solve_blocks", "stage_tables", "write_store"), ".lut_import"),
    **dict.fromkeys(("int8_speedup", "plot_speedup"), ".speedup"),
}

__all__ = sorted({*_LAZY, "COLUMNS", "DEVICE_PREDICTORS", "LUT_COLUMNS", "SCHEMA_VERSION", "STAT_FIELDS",
                  "LatencyStore", "LutKey", "load_fusion_rules", "lut_files", "parse_stage_config", "read_lut",
                  "read_rows", "row_blocks", "save_fusion_rules", "stored_fusion_rules"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
