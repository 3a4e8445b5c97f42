"""The Q-T score of a search space (SpaceEvo, ICCV 2023; SPACEEVO.md section 6), vectorised with numpy.

Samples: N subnets in batches of ``batch_size`` that share one resolution drawn uniformly from the
look-up-table resolutions; each stage contributes one row drawn uniformly from its table at that
resolution. Loss = sum of stage losses; latency = sum of stage latencies + fixed stages. For every
constraint T: p = #(latency <= T)/N + 1e-5, L_top = mean loss of the ``top_k`` lowest-loss samples
with latency <= T (1e5 if none), penalty = max(1, (t/p)^a), score_T = 1/(penalty * L_top).
One set of samples serves all constraints (each constraint's estimate has the same distribution as
with its own draw). The score is invariant to the order of samples, so they are drawn grouped by
resolution: one ``rng.integers`` call per (resolution, stage).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from spaceevo.space import SearchSpace, as_search_space

from ._tables import QTTables, StageTable

log = logging.getLogger(__name__)

PENALTY_T = 0.1
PENALTY_A = 0.01
TOP_K = 50
NO_FEASIBLE_LOSS = 1e5
P_EPS = 1e-5
DEFAULT_SAMPLES = 100_000
DEFAULT_BATCH = 100


@dataclass
class Samples:
    """Drawn samples: resolution index per sample, row per (stage, sample), summed loss and latency."""

    res_idx: np.ndarray
    flat_idx: np.ndarray
    offsets: np.ndarray
    loss: np.ndarray
    latency_ms: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Row index into each stage's table, shape (stages, samples)."""
        return self.flat_idx - self.offsets[:, None]


@dataclass
class ConstraintScore:
    """Score terms of one latency constraint."""

    constraint_ms: float
    score: float
    latency_penalty: float
    top_loss: float
    p_feasible: float
    n_feasible: int
    below_min_latency: bool = False


@dataclass
class QTScore:
    """Q-T score of one space: the sum over constraints, each constraint's terms, latency range."""

    space: str
    score: float
    constraints: list[ConstraintScore]
    min_latency_ms: float
    max_latency_ms: float
    n_samples: int
    seed: int
    fixed_latency_ms: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (``constraints`` as a list of dicts)."""
        return asdict(self)


def space_seed(space: SearchSpace | str, seed: int) -> int:
    """A per-space seed derived from ``seed`` (stable across runs and processes).

    Parameters
    ----------
    space : SearchSpace or str
    seed : int

    Returns
    -------
    int
    """
    return zlib.crc32(f"{seed}:{space}".encode()) & 0x7FFFFFFF


def draw_samples(tables: Sequence[StageTable], fixed_ms: np.ndarray, n: int, seed: int,
                 batch_size: int = DEFAULT_BATCH) -> Samples:
    """Draw ``n`` samples (see the module doc); deterministic for ``seed``.

    Row ``floor(u * count / 2**32)`` from one raw 32-bit draw ``u`` per (stage, sample): exact integer
    arithmetic in float64, uniform up to count/2**32 (< 3e-7 for 1,000-row tables).

    Parameters
    ----------
    tables : sequence of StageTable
        One table per searchable stage.
    fixed_ms : numpy.ndarray
        Fixed-stage latency per look-up-table resolution.
    n : int
    seed : int
    batch_size : int

    Returns
    -------
    Samples
    """
    if n < 1:
        raise ValueError(f"samples={n} must be >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    rng = np.random.default_rng(seed)
    n_res, n_st = len(fixed_ms), len(tables)
    n_batches = -(-n // batch_size)
    batch_res = rng.integers(0, n_res, size=n_batches)
    sizes = np.full(n_batches, batch_size, dtype=np.int64)
    sizes[-1] = n - batch_size * (n_batches - 1)
    per_res = np.bincount(batch_res, weights=sizes, minlength=n_res).astype(np.int64)
    res_idx = np.repeat(np.arange(n_res), per_res)
    lengths = np.array([len(t.loss) for t in tables])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    # loss + 1j * latency: one gather and one sum give both
    both = np.concatenate([t.loss + 1j * t.total_ms for t in tables])
    counts = np.array([t.counts for t in tables], dtype=np.int64)  # (stages, resolutions)
    starts = np.array([t.starts for t in tables], dtype=np.int64) + offsets[:, None]
    raw = rng.bit_generator.random_raw(-(-n_st * n // 2)).view(np.uint32)[: n_st * n].reshape(n_st, n)
    flat = np.empty((n_st, n), dtype=np.int64)
    fixed = np.empty(n)
    pos = 0
    for r in range(n_res):
        m = int(per_res[r])
        if m == 0:
            continue
        if (counts[:, r] == 0).any():
            t = tables[int(np.flatnonzero(counts[:, r] == 0)[0])]
            raise ValueError(f"table {t.path.name} has no row at resolution index {r}; cannot sample it")
        sl = slice(pos, pos + m)
        flat[:, sl] = raw[:, sl] * (counts[:, r] * 2.0 ** -32)[:, None]  # truncation = floor (>= 0)
        flat[:, sl] += starts[:, r, None]
        fixed[sl] = fixed_ms[r]
        pos += m
    total = both.take(flat).sum(axis=0)
    loss = total.real.copy()
    lat = total.imag + fixed
    return Samples(res_idx, flat, offsets, loss, lat)


def score_samples(loss: np.ndarray, latency_ms: np.ndarray, constraints: Sequence[float], top_k: int = TOP_K,
                  t: float = PENALTY_T, a: float = PENALTY_A) -> list[ConstraintScore]:
    """Score terms per constraint from per-sample loss and latency.

    Parameters
    ----------
    loss : numpy.ndarray
    latency_ms : numpy.ndarray
    constraints : sequence of float
    top_k : int
    t, a : float

    Returns
    -------
    list of ConstraintScore
    """
    n = len(loss)
    out = []
    for T in constraints:
        feas = latency_ms <= T
        nf = int(np.count_nonzero(feas))
        p = nf / n + P_EPS
        if nf == 0:
            top = NO_FEASIBLE_LOSS
        else:
            fl = loss[feas]
            if nf > top_k:
                fl = np.partition(fl, top_k - 1)[:top_k]
            top = float(fl.mean())
        pen = max(1.0, (t / p) ** a)
        out.append(ConstraintScore(float(T), 1.0 / (pen * top), float(pen), top, float(p), nf))
    return out


def qt_score(space: SearchSpace | str, tables: QTTables, constraints: Sequence[float],
             n_samples: int = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = DEFAULT_BATCH,
             top_k: int = TOP_K, t: float = PENALTY_T, a: float = PENALTY_A, warn: bool = True) -> QTScore:
    """The Q-T score of ``space`` (sum over ``constraints`` in ms); deterministic for ``seed``.

    A constraint below the space's fastest subnet is flagged (``below_min_latency``) and, with ``warn``,
    logged; its score is what the formula defines (L_top = 1e5).

    Parameters
    ----------
    space : SearchSpace or str
    tables : QTTables
    constraints : sequence of float
        Latency constraints (ms).
    n_samples : int
    seed : int
    batch_size : int
    top_k : int
        Samples of the top-loss term.
    t, a : float
        The formula's temperature and penalty constants (SPACEEVO.md section 6).
    warn : bool

    Returns
    -------
    QTScore

    Raises
    ------
    ValueError
        No constraint, or a constraint that is not positive.
    """
    sp = as_search_space(space)
    if not constraints:
        raise ValueError("constraints must hold at least one latency constraint in ms (--constraint 10)")
    for c in constraints:
        if not c > 0:
            raise ValueError(f"constraint={c} must be a positive latency in ms")
    tabs = tables.space_tables(sp)
    smp = draw_samples(tabs, tables.fixed_ms, n_samples, seed, batch_size)
    terms = score_samples(smp.loss, smp.latency_ms, constraints, top_k, t, a)
    lo, hi = tables.latency_range(sp)
    for c in terms:
        if c.constraint_ms < lo:
            c.below_min_latency = True
            (log.warning if warn else log.debug)("constraint %.3g ms is below the fastest subnet of %s (%.3f ms): no subnet meets it; "
                        "score_T = %.3g", c.constraint_ms, sp, lo, c.score)
    fixed = {int(r): float(v) for r, v in zip(tables.resolutions, tables.fixed_ms)}
    return QTScore(str(sp), float(sum(c.score for c in terms)), terms, lo, hi, int(n_samples), int(seed), fixed)


def qt_score_error(space: SearchSpace | str, tables: QTTables, constraints: Sequence[float],
                   n_samples: int = DEFAULT_SAMPLES, seeds: Sequence[int] = range(5),
                   batch_size: int = DEFAULT_BATCH) -> dict:
    """Sampling error of the score over ``seeds``: mean, standard deviation, relative std and the scores.

    Parameters
    ----------
    space : SearchSpace or str
    tables : QTTables
    constraints : sequence of float
    n_samples : int
    seeds : sequence of int
    batch_size : int

    Returns
    -------
    dict
        ``mean``, ``std``, ``rel_std``, ``scores``.
    """
    scores = np.array([qt_score(space, tables, constraints, n_samples, s, batch_size, warn=False).score
                       for s in seeds])
    std = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
    return {"mean": float(scores.mean()), "std": std, "rel_std": std / float(scores.mean()),
            "seeds": list(map(int, seeds)), "scores": scores.tolist()}
