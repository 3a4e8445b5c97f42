"""spaceevo: INT8 latency profiling, per-device latency predictors and SpaceEvo search-space design."""

__version__ = "0.1.0"
