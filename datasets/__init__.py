"""Latency datasets: the SQLite store the collector fills, INT8 speed-up reports, SpaceEvo table importers."""

from .block_lut import LutKey, lut_files, read_lut
from .store import LatencyStore

__all__ = ["LatencyStore", "LutKey", "lut_files", "read_lut"]
