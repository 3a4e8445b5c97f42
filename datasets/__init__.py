"""Latency datasets: the SQLite store the collector fills, INT8 speed-up reports, SpaceEvo table importers."""

from .block_lut import LutKey, lut_files, read_lut
from .fusion_rules import load_fusion_rules, save_fusion_rules, stored_fusion_rules
from .store import LatencyStore

__all__ = ["LatencyStore", "LutKey", "load_fusion_rules", "lut_files", "read_lut", "stored_fusion_rules",
           "save_fusion_rules"]
