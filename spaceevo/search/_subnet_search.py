"""Evolutionary subnet search inside one search space: lowest summed block loss with predicted latency <= T.

A candidate is a resolution and, per searchable stage, one row of that stage's look-up table at that
resolution whose input channels equal the previous stage's last width (stage1: equal to the stage0
width). Every stage's loss is therefore the loss measured in exactly the context it has in the
subnet, and the subnet is a valid encoding of the space: first_conv and stage0 take stage1's input
width, stage0 has depth 1. Latency is the predictor's subnet latency (``predict_subnets`` when the
predictor has it, else the sum of ``predict_blocks`` over the subnet's blocks).
Search (after Once-for-All / SpaceEvo): keep the best ``parent_ratio`` of the population (feasible
first, by loss; infeasible by latency), fill the rest with mutations and crossovers of parents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from spaceevo.datasets import parse_stage_config
from spaceevo.plotting import pyplot, save_figure
from spaceevo.space import SearchSpace, Subnet, as_search_space

from ._tables import BlockLatencyModel, QTTables, StageTable

log = logging.getLogger(__name__)

Genome = tuple[int, tuple[int, ...]]  # (resolution index, row per stage)


@dataclass
class Candidate:
    """One evaluated subnet."""

    subnet: str
    resolution: int
    loss: float
    latency_ms: float


class SubnetSearch:
    """Evolutionary search for the lowest-loss subnet of ``space`` under latency constraints.

    Parameters
    ----------
    space : SearchSpace or str
    tables : QTTables
        Distillation look-up tables: the loss of each stage config.
    predictor : BlockLatencyModel
        ``predict_blocks(configs) -> ms`` (a ``LatencyPredictor``).
    population_size, iterations : int
    parent_ratio, mutation_ratio, mutate_prob : float
        In (0, 1].
    seed : int

    Raises
    ------
    ValueError
        A setting out of range.
    """

    def __init__(self, space: SearchSpace | str, tables: QTTables, predictor: BlockLatencyModel,
                 population_size: int = 512, iterations: int = 30, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5, mutate_prob: float = 0.3, seed: int = 0) -> None:
        for name, v, lo in (("population_size", population_size, 4), ("iterations", iterations, 0)):
            if not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
        for name, v in (("parent_ratio", parent_ratio), ("mutation_ratio", mutation_ratio),
                        ("mutate_prob", mutate_prob)):
            if not 0 < v <= 1:
                raise ValueError(f"{name}={v!r} must be in (0, 1]")
        self.space = as_search_space(space)
        self.tables = tables
        self.predictor = predictor
        self.population_size = population_size
        self.iterations = iterations
        self.parent_ratio = parent_ratio
        self.mutation_ratio = mutation_ratio
        self.mutate_prob = mutate_prob
        self.seed = seed
        self._tabs = tables.space_tables(self.space)
        self._compat = [_index(t) for t in self._tabs]
        self._seen: dict[Genome, Candidate] = {}

    # -- genomes -------------------------------------------------------------------------------
    def _pick(self, s: int, r: int, cin: int | None, rng: np.random.Generator) -> int | None:
        t = self._tabs[s]
        if cin is None:
            if t.counts[r] == 0:
                return None
            return int(t.starts[r] + rng.integers(t.counts[r]))
        rows = self._compat[s].get((r, cin))
        return None if rows is None else int(rows[rng.integers(len(rows))])

    def _repair(self, r: int, rows: list[int | None], rng: np.random.Generator, force: set[int]) -> Genome | None:
        """Make stage inputs chain: a row whose cin differs from the previous last width is redrawn."""
        prev = None
        out = []
        for s, row in enumerate(rows):
            t = self._tabs[s]
            ok = row is not None and s not in force and t.resolution[row] == self.tables.resolutions[r] and (
                prev is None or t.cin[row] == prev)
            if s == 0 and ok and t.cin[row] not in self.space.hyperspace.stage0.widths:
                ok = False
            if not ok:
                row = self._pick(s, r, prev, rng)
                if row is None:
                    return None
            out.append(row)
            prev = int(t.last_width[row])
        return r, tuple(out)

    def _random(self, rng: np.random.Generator) -> Genome | None:
        r = int(rng.integers(len(self.tables.resolutions)))
        return self._repair(r, [None] * len(self._tabs), rng, set())

    def _mutate(self, g: Genome, rng: np.random.Generator) -> Genome | None:
        r, rows = g
        if rng.random() < self.mutate_prob / 2:
            r = int(rng.integers(len(self.tables.resolutions)))
        force = {s for s in range(len(rows)) if rng.random() < self.mutate_prob}
        return self._repair(r, list(rows), rng, force)

    def _crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
        if a[0] != b[0]:
            return self._mutate(a, rng)
        rows = [x if rng.random() < 0.5 else y for x, y in zip(a[1], b[1])]
        return self._repair(a[0], rows, rng, set())

    # -- evaluation ----------------------------------------------------------------------------
    def subnet_of(self, g: Genome) -> Subnet:
        """The subnet encoding of a genome."""
        r, rows = g
        h = self.space.hyperspace
        cin1 = int(self._tabs[0].cin[rows[0]])
        depths, ks, ws, es = [1, 1], [3, h.stage0_block.kernel_sizes[0]], [cin1, cin1], [0.0,
                                                                                       float(h.stage0_block.expand_ratios[0])]
        for t, row in zip(self._tabs, rows):
            blocks = parse_stage_config(t.configs[row])
            depths.append(len(blocks))
            for k, w, e in blocks:
                ks.append(k)
                ws.append(w)
                es.append(e)
        return Subnet(tuple(depths), tuple(ks), tuple(ws), tuple(es), int(self.tables.resolutions[r]))

    def _evaluate(self, genomes: Sequence[Genome]) -> list[Candidate]:
        new = [g for g in dict.fromkeys(genomes) if g not in self._seen]
        if new:
            subs = [self.subnet_of(g) for g in new]
            lat = self._latency(subs)
            for g, sn, ms in zip(new, subs, lat):
                loss = float(sum(t.loss[row] for t, row in zip(self._tabs, g[1])))
                self._seen[g] = Candidate(str(sn), sn.resolution, loss, float(ms))
        return [self._seen[g] for g in genomes]

    def _latency(self, subs: list[Subnet]) -> np.ndarray:
        if hasattr(self.predictor, "predict_subnets"):
            return np.asarray(self.predictor.predict_subnets(self.space, subs), float)
        cfgs, spans = [], []
        for sn in subs:
            blocks = [b.config for b in self.space.blocks(sn)]
            spans.append((len(cfgs), len(cfgs) + len(blocks)))
            cfgs += blocks
        y = np.asarray(self.predictor.predict_blocks(cfgs), float)
        return np.array([y[a:b].sum() for a, b in spans])

    # -- search --------------------------------------------------------------------------------
    def search(self, constraint_ms: float) -> Candidate | None:
        """Best (lowest-loss) subnet with predicted latency <= ``constraint_ms``; None if none was found."""
        if not constraint_ms > 0:
            raise ValueError(f"constraint={constraint_ms} must be a positive latency in ms")
        rng = np.random.default_rng([self.seed, int(round(constraint_ms * 1000))])
        pop = self._fill([], rng, self.population_size)
        n_par = max(2, int(round(self.parent_ratio * self.population_size)))
        n_mut = int(round(self.mutation_ratio * self.population_size))
        for _ in range(self.iterations):
            parents = self._rank(pop, constraint_ms)[:n_par]
            children: list[Genome] = []
            tries = 0
            while len(children) < n_mut and tries < 20 * n_mut:
                tries += 1
                c = self._mutate(parents[int(rng.integers(len(parents)))], rng)
                if c is not None:
                    children.append(c)
            while len(children) < self.population_size - n_par and tries < 40 * self.population_size:
                tries += 1
                i, j = rng.choice(len(parents), size=2, replace=False)
                c = self._crossover(parents[i], parents[j], rng)
                if c is not None:
                    children.append(c)
            pop = self._fill(parents + children, rng, self.population_size)
        best = self._rank(pop, constraint_ms)[0]
        cand = self._evaluate([best])[0]
        return cand if cand.latency_ms <= constraint_ms else None

    def _fill(self, pop: list[Genome], rng: np.random.Generator, n: int) -> list[Genome]:
        tries = 0
        while len(pop) < n and tries < 50 * n:
            tries += 1
            g = self._random(rng)
            if g is not None:
                pop.append(g)
        if not pop:
            raise ValueError(f"no subnet of {self.space} can be assembled from its tables (no chaining rows)")
        self._evaluate(pop)
        return pop

    def _rank(self, pop: list[Genome], T: float) -> list[Genome]:
        cands = self._evaluate(pop)
        key = {g: ((0, c.loss) if c.latency_ms <= T else (1, c.latency_ms)) for g, c in zip(pop, cands)}
        return sorted(dict.fromkeys(pop), key=lambda g: (key[g], g))

    @property
    def evaluated(self) -> list[Candidate]:
        """Every distinct subnet evaluated so far."""
        return list(self._seen.values())


def _index(t: StageTable) -> dict[tuple[int, int], np.ndarray]:
    """Row indices per (resolution index, cin)."""
    out: dict[tuple[int, int], list[int]] = {}
    for r in range(len(t.counts)):
        for i in range(int(t.starts[r]), int(t.starts[r] + t.counts[r])):
            out.setdefault((r, int(t.cin[i])), []).append(i)
    return {k: np.array(v) for k, v in out.items()}


def pareto_front(cands: Sequence[Candidate]) -> list[Candidate]:
    """Candidates not dominated in (latency, loss), by increasing latency.

    Parameters
    ----------
    cands : sequence of Candidate

    Returns
    -------
    list of Candidate
    """
    front, best = [], np.inf
    for c in sorted(cands, key=lambda c: (c.latency_ms, c.loss)):
        if c.loss < best:
            front.append(c)
            best = c.loss
    return front


def plot_pareto(cands: Sequence[Candidate], front: Sequence[Candidate], chosen: dict[float, Candidate | None],
                path: str | Path, title: str = "") -> Path:
    """PNG: every evaluated subnet, the Pareto front, the constraints and the chosen subnets.

    Parameters
    ----------
    cands : sequence of Candidate
    front : sequence of Candidate
    chosen : dict of float to Candidate or None
        The subnet chosen under each constraint (ms).
    path : str or Path
    title : str

    Returns
    -------
    Path
    """
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([c.latency_ms for c in cands], [c.loss for c in cands], s=3, alpha=0.25, label="evaluated")
    ax.plot([c.latency_ms for c in front], [c.loss for c in front], "r.-", lw=1, label="Pareto front")
    for T, c in chosen.items():
        ax.axvline(T, color="gray", ls="--", lw=0.8)
        if c is not None:
            ax.plot([c.latency_ms], [c.loss], "k*", ms=10)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("summed block loss (lower is better)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
