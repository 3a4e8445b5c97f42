"""Aging (regularised) evolution over search spaces by Q-T score (SpaceEvo; SPACEEVO.md section 7).

The initial population is the homogeneous spaces (same block type and window index in every stage,
the window clipped to a stage's window count), then random spaces. Each cycle the best of a random
tournament is the parent; one child changes the block type of one random stage, another the width
window of one random stage; children are scored and appended, and the oldest member leaves.
Every space is scored with its own seed derived from the run's seed, so the cache of scored spaces
is exact and a resumed run (JSON checkpoint with the generator state) equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from spaceevo.plotting import pyplot, save_figure
from spaceevo.space import SearchSpace

from ._qt import DEFAULT_BATCH, DEFAULT_SAMPLES, qt_score, space_seed
from ._tables import QTTables

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spaceevo-space-evolution"
CHECKPOINT_VERSION = 1


@dataclass
class EvolutionResult:
    """Outcome of a run: every scored space, the score of each evaluation, and the run's settings."""

    config: dict
    cache: dict[str, dict]
    history: list[tuple[str, float]]
    population: list[str]
    finished: bool

    @property
    def evaluations(self) -> int:
        """Number of evaluations done."""
        return len(self.history)

    def best_curve(self) -> np.ndarray:
        """Best score so far after each evaluation."""
        return np.maximum.accumulate(np.array([s for _sp, s in self.history])) if self.history else np.zeros(0)

    def top(self, k: int = 10) -> list[dict]:
        """The ``k`` best distinct spaces seen, best first, with their score terms."""
        items = sorted(self.cache.items(), key=lambda kv: (-kv[1]["score"], kv[0]))[:k]
        return [{"space": sp, **d} for sp, d in items]

    def to_dict(self, k: int = 10) -> dict:
        """JSON-ready summary: settings, evaluations, ``top`` (best first) and the best-score curve."""
        return {"config": self.config, "evaluations": self.evaluations, "finished": self.finished,
                "distinct_spaces": len(self.cache), "top": self.top(k),
                "best_curve": self.best_curve().tolist()}

    def plot(self, path: str | Path) -> Path:
        """PNG of the best score against evaluations."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(6, 4))
        curve = self.best_curve()
        ax.plot(np.arange(1, len(curve) + 1), curve, lw=1.5)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best Q-T score")
        c = self.config
        ax.set_title(f"{c['hyperspace']}: T={c['constraints']} ms, {c['latency']}")
        ax.grid(alpha=0.3)
        return save_figure(fig, path)


def homogeneous_spaces(tables: QTTables) -> list[SearchSpace]:
    """Spaces with the same block type and window index in every stage (window clipped per stage).

    Parameters
    ----------
    tables : QTTables

    Returns
    -------
    list of SearchSpace
    """
    h = tables.hyperspace
    n_win = max(s.n_windows for s in h.stages)
    out = []
    for b in range(len(h.block_choices)):
        for w in range(n_win):
            out.append(SearchSpace(h, (b,) * len(h.stages), tuple(min(w, s.n_windows - 1) for s in h.stages)))
    return list(dict.fromkeys(out))


def random_space(tables: QTTables, rng: np.random.Generator) -> SearchSpace:
    """A uniformly random space of the tables' hyperspace.

    Parameters
    ----------
    tables : QTTables
    rng : numpy.random.Generator

    Returns
    -------
    SearchSpace
    """
    h = tables.hyperspace
    blocks = tuple(int(rng.integers(len(h.block_choices))) for _ in h.stages)
    windows = tuple(int(rng.integers(s.n_windows)) for s in h.stages)
    return SearchSpace(h, blocks, windows)


def mutate_block(space: SearchSpace, rng: np.random.Generator) -> SearchSpace:
    """Change the block type of one random stage to another type.

    Parameters
    ----------
    space : SearchSpace
    rng : numpy.random.Generator

    Returns
    -------
    SearchSpace
    """
    n_types = len(space.hyperspace.block_choices)
    s = int(rng.integers(len(space.block_types)))
    new = (space.block_types[s] + 1 + int(rng.integers(n_types - 1))) % n_types
    blocks = list(space.block_types)
    blocks[s] = new
    return SearchSpace(space.hyperspace, tuple(blocks), space.windows)


def mutate_window(space: SearchSpace, rng: np.random.Generator) -> SearchSpace:
    """Change the width window of one random stage that has more than one window.

    Parameters
    ----------
    space : SearchSpace
    rng : numpy.random.Generator

    Returns
    -------
    SearchSpace
    """
    stages = space.hyperspace.stages
    cands = [i for i, st in enumerate(stages) if st.n_windows > 1]
    s = cands[int(rng.integers(len(cands)))]
    n = stages[s].n_windows
    windows = list(space.windows)
    windows[s] = (windows[s] + 1 + int(rng.integers(n - 1))) % n
    return SearchSpace(space.hyperspace, space.block_types, tuple(windows))


class SpaceEvolution:
    """Aging evolution over the search spaces of ``tables.hyperspace`` by Q-T score.

    Parameters
    ----------
    tables : QTTables
    constraints : sequence of float
        Latency constraints (ms) of the Q-T score.
    population_size, tournament_size : int
        Aging evolution's population and tournament (``tournament_size <= population_size``).
    evaluations : int
        Budget of scored spaces.
    n_samples, batch_size : int
        Of each Q-T score.
    seed : int
    checkpoint : str or Path, optional
        A JSON checkpoint written every ``checkpoint_every`` evaluations; a rerun resumes from it.
    checkpoint_every : int
    progress : bool

    Raises
    ------
    ValueError
        A setting out of range, or no constraint.
    """

    def __init__(self, tables: QTTables, constraints: Sequence[float], population_size: int = 500,
                 tournament_size: int = 125, evaluations: int = 5000, n_samples: int = DEFAULT_SAMPLES,
                 seed: int = 0, batch_size: int = DEFAULT_BATCH, checkpoint: str | Path | None = None,
                 checkpoint_every: int = 250, progress: bool = False) -> None:
        for name, v, lo in (("population_size", population_size, 2), ("tournament_size", tournament_size, 1),
                            ("evaluations", evaluations, 1), ("n_samples", n_samples, 1),
                            ("checkpoint_every", checkpoint_every, 1)):
            if not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
        if tournament_size > population_size:
            raise ValueError(f"tournament_size={tournament_size} must be <= population_size={population_size}")
        if not constraints:
            raise ValueError("constraints must hold at least one latency constraint in ms")
        self.tables = tables
        self.constraints = [float(c) for c in constraints]
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.evaluations = evaluations
        self.n_samples = n_samples
        self.seed = seed
        self.batch_size = batch_size
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress

    # -- state ---------------------------------------------------------------------------------
    def config(self) -> dict:
        """Settings that must match for a resume (the budget may grow)."""
        return {"hyperspace": self.tables.hyperspace.name, "constraints": self.constraints,
                "population_size": self.population_size, "tournament_size": self.tournament_size,
                "n_samples": self.n_samples, "seed": self.seed, "batch_size": self.batch_size,
                "latency": self.tables.latency_source, "fixed": self.tables.fixed_source}

    def _fresh(self) -> dict:
        rng = np.random.default_rng(self.seed)
        init = [str(s) for s in homogeneous_spaces(self.tables)][: self.population_size]
        while len(init) < self.population_size:
            init.append(str(random_space(self.tables, rng)))
        return {"rng": rng, "pending": deque(init), "population": deque(), "history": [], "cache": {}}

    def _save(self, st: dict, path: Path) -> None:
        data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": self.config(),
                "evaluations": self.evaluations, "rng": st["rng"].bit_generator.state,
                "pending": list(st["pending"]), "population": list(st["population"]),
                "history": st["history"], "cache": st["cache"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _load(self, path: Path) -> dict:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint {str(path)!r} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{str(path)!r} is not a spaceevo search-space checkpoint")
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {str(path)!r} has version {data.get('version')!r}; expected "
                             f"{CHECKPOINT_VERSION}")
        mine = self.config()
        for k, v in mine.items():
            if data["config"].get(k) != v:
                raise ValueError(f"checkpoint {str(path)!r} was made with {k}={data['config'].get(k)!r}, this run "
                                 f"has {k}={v!r}; use the same settings to resume")
        rng = np.random.default_rng()
        rng.bit_generator.state = data["rng"]
        return {"rng": rng, "pending": deque(data["pending"]), "population": deque(data["population"]),
                "history": [tuple(h) for h in data["history"]], "cache": data["cache"]}

    # -- run -----------------------------------------------------------------------------------
    def _score(self, space: str) -> dict:
        r = qt_score(space, self.tables, self.constraints, self.n_samples, space_seed(space, self.seed),
                     self.batch_size, warn=False)
        return {"score": r.score,
                "latency_penalty": [c.latency_penalty for c in r.constraints],
                "top_loss": [c.top_loss for c in r.constraints],
                "p_feasible": [c.p_feasible for c in r.constraints],
                "min_latency_ms": r.min_latency_ms, "max_latency_ms": r.max_latency_ms}

    def _children(self, st: dict) -> None:
        rng, pop, cache = st["rng"], list(st["population"]), st["cache"]
        pick = rng.choice(len(pop), size=self.tournament_size, replace=False)
        parent = max((pop[i] for i in pick), key=lambda s: (cache[s]["score"], s))
        sp = SearchSpace.parse(parent)
        st["pending"].extend([str(mutate_block(sp, rng)), str(mutate_window(sp, rng))])

    def run(self, resume: str | Path | None = None, stop_after: int | None = None) -> EvolutionResult:
        """Run (or resume from the checkpoint ``resume``) until ``evaluations``; ``stop_after`` stops early."""
        self.tables.require_complete()
        st = self._load(Path(resume)) if resume else self._fresh()
        target = self.evaluations if stop_after is None else min(self.evaluations, stop_after)
        done0 = len(st["history"])
        bar = _progress(self.progress, self.evaluations, done0)
        try:
            while len(st["history"]) < target:
                if not st["pending"]:
                    self._children(st)
                space = st["pending"].popleft()
                if space not in st["cache"]:
                    st["cache"][space] = self._score(space)
                st["history"].append((space, st["cache"][space]["score"]))
                st["population"].append(space)
                if len(st["population"]) > self.population_size:
                    st["population"].popleft()
                n = len(st["history"])
                if bar is not None:
                    bar.update(1)
                if self.checkpoint and n % self.checkpoint_every == 0:
                    self._save(st, self.checkpoint)
        finally:
            if bar is not None:
                bar.close()
        if self.checkpoint:
            self._save(st, self.checkpoint)
        return EvolutionResult(self.config() | {"evaluations": self.evaluations}, st["cache"], st["history"],
                               list(st["population"]), len(st["history"]) >= self.evaluations)


def random_search(tables: QTTables, constraints: Sequence[float], evaluations: int, n_samples: int = DEFAULT_SAMPLES,
                  seed: int = 0, batch_size: int = DEFAULT_BATCH) -> list[tuple[str, float]]:
    """Baseline: score ``evaluations`` uniformly random spaces; returns (space, score) in order.

    Parameters
    ----------
    tables : QTTables
    constraints : sequence of float
        Latency constraints (ms).
    evaluations : int
    n_samples : int
        Samples per Q-T score.
    seed : int
    batch_size : int

    Returns
    -------
    list of (str, float)
    """
    rng = np.random.default_rng(seed + 1_000_003)
    out = []
    for _ in range(evaluations):
        sp = str(random_space(tables, rng))
        out.append((sp, qt_score(sp, tables, constraints, n_samples, space_seed(sp, seed), batch_size,
                                 warn=False).score))
    return out


class _Bar:
    def __init__(self, total: int, done: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=done, desc="search-space", unit="eval", leave=False)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _progress(enabled: bool, total: int, done: int) -> _Bar | None:
    if not enabled:
        return None
    try:
        return _Bar(total, done)
    except ImportError:  # tqdm absent: no bar
        return None
