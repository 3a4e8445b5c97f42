"""SpaceEvo search: the Q-T score of search spaces, evolution over spaces, and subnet search."""

from ._qt import (
    DEFAULT_BATCH,
    DEFAULT_SAMPLES,
    ConstraintScore,
    QTScore,
    Samples,
    draw_samples,
    qt_score,
    qt_score_error,
    score_samples,
    space_seed,
)
from ._tables import DEVICE_PREDICTORS, QTTables, StageTable, cache_dir_default

__all__ = [
    "DEFAULT_BATCH", "DEFAULT_SAMPLES", "DEVICE_PREDICTORS", "ConstraintScore", "QTScore", "QTTables", "Samples",
    "StageTable", "cache_dir_default", "draw_samples", "qt_score", "qt_score_error", "score_samples", "space_seed",
]
