"""Timing statistics of one measured unit, from one session or pooled over several rounds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    """Summary of ``n`` timed samples in milliseconds per inference.

    Each sample is the mean of ``loops`` back-to-back inferences (1 = one run per sample); ``attempts``
    counts sessions run (re-measurements included). ``std_ms`` and ``cv`` (= std / mean) are the spread of
    samples inside a session (repeatability). With ``rounds > 1`` the unit was timed in that many fresh
    sessions at different times: median, mean, min, p90 and ``n`` pool all their samples, ``std_ms`` is the
    pooled within-session std, and ``round_cv`` is the spread of the sessions' medians (what a rerun sees).
    ``samples`` keeps the raw sample times (not part of :meth:`as_dict`).

    With a reference unit (the collector's drift anchor) every sample is bracketed by timings of the same
    fixed reference model: ``ref_samples`` holds those ``n + 1`` times (per round), ``ratio`` is the median
    of sample / mean of its two neighbouring reference times (the latency in units of the reference, which
    the machine's momentary speed cancels out of), ``ref_ms`` the median and ``ref_min_ms`` the fastest
    reference time.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p90_ms: float
    cv: float
    n: int
    attempts: int = 1
    loops: int = 1
    rounds: int = 1
    round_cv: float | None = None
    ratio: float | None = None
    ref_ms: float | None = None
    ref_min_ms: float | None = None
    other_cpu: float | None = None  # cores other processes kept busy while this unit was timed
    steal: float | None = None  # cores the hypervisor gave to other guests meanwhile
    samples: tuple = field(default=(), repr=False, compare=False)
    ref_samples: tuple = field(default=(), repr=False, compare=False)

    @classmethod
    def from_times(cls, times_ms: Sequence[float], attempts: int = 1, loops: int = 1,
                   ref_times_ms: Sequence[float] | None = None) -> "TimingStats":
        """Summarise per-inference sample times (ms) from one session; ``ref_times_ms``: the n + 1 bracketing ones."""
        t = np.asarray(times_ms, dtype=np.float64)
        if t.size == 0:
            raise ValueError("times_ms is empty: at least one timed run is needed")
        mean = float(t.mean())
        std = float(t.std())
        ref = _reference(t, ref_times_ms)
        return cls(median_ms=float(np.median(t)), mean_ms=mean, std_ms=std, min_ms=float(t.min()),
                   p90_ms=float(np.percentile(t, 90)), cv=std / mean if mean > 0 else 0.0, n=int(t.size),
                   attempts=attempts, loops=loops, samples=tuple(float(x) for x in t), **ref)

    @classmethod
    def from_rounds(cls, rounds: Sequence["TimingStats"]) -> "TimingStats":
        """Pool several sessions (rounds) of one unit: over raw samples when every round has them, else summaries."""
        if not rounds:
            raise ValueError("rounds is empty: at least one timed session is needed")
        if len(rounds) == 1:
            return rounds[0]
        meds = np.array([r.median_ms for r in rounds], dtype=np.float64)
        within = float(np.sqrt(np.mean([r.std_ms ** 2 for r in rounds])))
        common = {"attempts": int(sum(r.attempts for r in rounds)), "loops": int(np.median([r.loops for r in rounds])),
                  "rounds": len(rounds), "round_cv": float(meds.std() / meds.mean()) if meds.mean() > 0 else 0.0}
        for name in ("other_cpu", "steal"):
            seen = [getattr(r, name) for r in rounds if getattr(r, name) is not None]
            if seen:
                common[name] = round(float(np.mean(seen)), 3)
        if all(r.samples for r in rounds):
            t = np.concatenate([np.asarray(r.samples, dtype=np.float64) for r in rounds])
            mean = float(t.mean())
            if all(r.ref_samples for r in rounds):
                ratios = np.concatenate([_ratios(np.asarray(r.samples, dtype=np.float64), r.ref_samples)
                                         for r in rounds])
                refs = np.concatenate([np.asarray(r.ref_samples, dtype=np.float64) for r in rounds])
                common.update(ratio=float(np.median(ratios)), ref_ms=float(np.median(refs)),
                              ref_min_ms=float(refs.min()), ref_samples=tuple(float(x) for x in refs))
            return cls(median_ms=float(np.median(t)), mean_ms=mean, std_ms=within, min_ms=float(t.min()),
                       p90_ms=float(np.percentile(t, 90)), cv=within / mean if mean > 0 else 0.0, n=int(t.size),
                       samples=tuple(float(x) for x in t), **common)
        if all(r.ratio is not None for r in rounds):
            common.update(ratio=float(np.median([r.ratio for r in rounds])),
                          ref_ms=float(np.median([r.ref_ms for r in rounds])),
                          ref_min_ms=float(min(r.ref_min_ms for r in rounds)))
        # summaries only (e.g. benchmark_model on a phone): combine the rounds' statistics
        mean = float(np.mean([r.mean_ms for r in rounds]))
        return cls(median_ms=float(np.median(meds)), mean_ms=mean, std_ms=within,
                   min_ms=float(min(r.min_ms for r in rounds)), p90_ms=float(np.median([r.p90_ms for r in rounds])),
                   cv=within / mean if mean > 0 else 0.0, n=int(sum(r.n for r in rounds)), **common)

    @classmethod
    def from_dict(cls, d: dict) -> "TimingStats":
        """Inverse of :meth:`as_dict` (``samples`` restored when present); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["samples"] = tuple(kw.get("samples") or ())
        kw["ref_samples"] = tuple(kw.get("ref_samples") or ())
        return cls(**kw)

    def as_dict(self, samples: bool = False) -> dict:
        """Plain dict of the statistics (JSON-ready); the raw ``samples`` (and ``ref_samples``) only when asked for."""
        d = asdict(self)
        for name in ("samples", "ref_samples"):
            if samples:
                d[name] = list(d[name])
            else:
                del d[name]
        return d

    def __getitem__(self, name: str):
        """Dict-style access (``stats["median_ms"]``) for code that expects a dict."""
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)


def _ratios(t: np.ndarray, ref_times_ms: Sequence[float]) -> np.ndarray:
    """Each sample over the mean of the reference times just before and just after it."""
    r = np.asarray(ref_times_ms, dtype=np.float64)
    if r.size != t.size + 1:
        raise ValueError(f"ref_times_ms has {r.size} times for {t.size} samples; it needs one before each "
                         f"sample and one after the last ({t.size + 1})")
    if (r <= 0).any():
        raise ValueError("ref_times_ms must all be > 0 ms")
    return t / ((r[:-1] + r[1:]) / 2)


def _reference(t: np.ndarray, ref_times_ms: Sequence[float] | None) -> dict:
    if ref_times_ms is None or len(ref_times_ms) == 0:
        return {}
    r = np.asarray(ref_times_ms, dtype=np.float64)
    return {"ratio": float(np.median(_ratios(t, r))), "ref_ms": float(np.median(r)), "ref_min_ms": float(r.min()),
            "ref_samples": tuple(float(x) for x in r)}
