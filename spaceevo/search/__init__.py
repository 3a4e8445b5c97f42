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
from ._evolution import (
    EvolutionResult,
    SpaceEvolution,
    homogeneous_spaces,
    mutate_block,
    mutate_window,
    random_search,
    random_space,
)
from ._subnet_search import Candidate, SubnetSearch, pareto_front, plot_pareto
from ._tables import BlockLatencyModel, QTTables, StageTable, cache_dir_default

__all__ = [
    "Candidate", "EvolutionResult", "SpaceEvolution", "SubnetSearch", "homogeneous_spaces", "mutate_block",
    "mutate_window", "pareto_front", "plot_pareto", "random_search", "random_space",
    "BlockLatencyModel", "DEFAULT_BATCH", "DEFAULT_SAMPLES", "ConstraintScore", "QTScore", "QTTables", "Samples",
    "StageTable", "cache_dir_default", "draw_samples", "qt_score", "qt_score_error", "score_samples", "space_seed",
]
