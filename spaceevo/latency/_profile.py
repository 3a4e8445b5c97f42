"""A profiling run: measure units on a backend and store every result; resumable and crash-safe."""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Iterable, Sequence

import numpy as np

from ._backend import Backend, check_dtype, create_backend
from ._fingerprint import cpu_slug, fingerprint_id
from ._load import busy_warning, machine_load
from ._protocol import ROUND_REPEATS, ROUND_WARMUP, ROUNDS
from ._stats import TimingStats

log = logging.getLogger(__name__)
LOAD_CHECK_S = 0.25  # seconds the machine is watched before a run

# The profiling protocol's defaults (ROUNDS, ROUND_REPEATS, ROUND_WARMUP) live in ``_protocol``.


def default_device(backend: Backend) -> str:
    """The default device id: ``<backend>-<cpu slug>`` (``ort-amd-epyc``), or the backend's own.

    Parameters
    ----------
    backend : Backend

    Returns
    -------
    str
    """
    own = getattr(backend, "default_device", None)
    return own() if callable(own) else f"{backend.name}-{cpu_slug()}"


def _check_store(db: Any, rounds: int = 1) -> Any:
    """``db`` must be a store object (duck-typed); the collector never imports the dataset layer itself."""
    if db is None:
        raise ValueError("db is required: a store such as spaceevo.datasets.LatencyStore('x.db')")
    needed = ("add", "add_fingerprint", "done") + (("add_round", "rounds_done") if rounds > 1 else ())
    missing = [m for m in needed if not hasattr(db, m)]
    if missing:
        raise ValueError(f"db must be a store with {'/'.join(needed)} (e.g. spaceevo.datasets.LatencyStore"
                         f"('x.db')), got {type(db).__name__} lacking {missing}")
    return db


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]profiling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
                    console=Console(stderr=True), transient=False)


def run_profile(units: Iterable, backend: Backend | str, dtypes: Sequence[str] = ("int8",), db: Any = None,
                device: str | None = None, seed: int = 0, progress: bool = True, retry_failed: bool = False,
                backend_opts: dict | None = None, rounds: int = 1, chunk: int = 64,
                model_rounds: int | None = None) -> dict:
    """Measure every (unit, dtype) not yet in ``db`` and store it; returns a summary dict.

    ``db`` is a store object such as :class:`spaceevo.datasets.LatencyStore` (the caller opens and closes it).
    Units already stored for this device/dtype/threads are skipped (failed ones too, unless
    ``retry_failed``). A unit that fails to convert or run is stored as failed and the run goes on.

    Before timing, the machine's load is read for ``LOAD_CHECK_S`` seconds: other processes busy on the
    cores (or sharing their caches) give a warning (logged, and in the summary's ``warnings``); every
    timed unit records the cores other processes used and the hypervisor's steal meanwhile (``other_cpu``,
    ``steal``).

    ``rounds > 1`` times each unit in that many fresh sessions spread over the run: units are converted
    ``chunk`` at a time, then timed round after round in a shuffled order, each finished round stored at
    once (a killed run loses at most the round in flight). On a shared machine the speed drifts over
    seconds, far more than inside one session, so sessions spread in time are what make a rerun agree.
    Whole networks (units of kind ``model``) get ``model_rounds`` sessions (``MODEL_ROUNDS`` in the command
    line): their rounds scatter round to round, so their median needs more of them than a block's.

    Parameters
    ----------
    units : iterable of Unit
    backend : Backend or str
        An instance, or a registered name (then built with ``backend_opts``).
    dtypes : sequence of str
        Each of ``DTYPES``.
    db : LatencyStore
        Where the rows go (and what is skipped).
    device : str, optional
        Device id of the rows (default: ``default_device(backend)``).
    seed : int
    progress : bool
        Show a progress bar.
    retry_failed : bool
    backend_opts : dict, optional
    rounds : int
        Sessions per unit (``ROUNDS`` in the command line).
    chunk : int
        Units converted at a time.
    model_rounds : int, optional
        Sessions per whole network (kind ``model``); default ``rounds``.

    Returns
    -------
    dict
        ``device``, ``backend``, ``units``, ``total``, ``skipped``, ``ok``, ``failed``, ``rounds``, ``median_cv``,
        ``median_round_cv``, ``load_start``, ``median_other_cpu``, ``warnings``, ``seconds``, ``db``, ...

    Raises
    ------
    ValueError
        A bad dtype, backend option or store.
    """
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    if model_rounds is None:
        model_rounds = rounds
    if not isinstance(model_rounds, int) or isinstance(model_rounds, bool) or model_rounds < 1:
        raise ValueError(f"model_rounds={model_rounds!r} must be an integer >= 1")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be an integer >= 1")
    store = _check_store(db, max(rounds, model_rounds))
    be = create_backend(backend, **{"seed": seed, **(backend_opts or {})}) if isinstance(backend, str) else backend
    be.require()
    dtypes = [check_dtype(d) for d in dtypes]
    if not dtypes:
        raise ValueError("dtypes is empty; allowed: int8, fp32")
    units = list(units)
    device = device or default_device(be)
    started = time.perf_counter()
    fp_ids = {}
    for d in dtypes:
        fp = be.fingerprint(d)
        if rounds > 1:
            fp["protocol"]["rounds"] = rounds
        if model_rounds != rounds:
            fp["protocol"]["model_rounds"] = model_rounds
        fp_ids[d] = store.add_fingerprint(fingerprint_id(fp), fp)
    done = {d: store.done(device, d, be.threads, include_failed=not retry_failed) for d in dtypes}
    todo = [(u, d) for u in units for d in dtypes if (u.kind, u.key) not in done[d]]
    total = len(units) * len(dtypes)
    run = _Run(be, store, device, fp_ids, seed, rounds, model_rounds)
    load = machine_load(LOAD_CHECK_S) if todo else None
    warnings = [w for w in (busy_warning(be.threads, load),) if w]
    for w in warnings:
        log.warning("%s", w)
    bar = _progress(progress and bool(todo), len(todo))
    run.bar, run.task = bar, (bar.add_task("", total=sum(run.n_rounds(u) for u, _ in todo)) if bar else None)
    if bar:
        bar.start()
    try:
        if rounds == model_rounds == 1:
            for unit, dtype in todo:
                run.show(f"{dtype} {unit.key}")
                run.finish(unit, dtype, run.attempt(lambda u=unit, d=dtype: be.measure(u, d), unit, dtype))
                run.advance()
        else:
            run.rounds(todo, chunk, dtypes)
    finally:
        if bar:
            bar.stop()
    rcv = [c for c in run.round_cvs if c is not None]
    other = [c for c in run.other_cpus if c is not None]
    return {"device": device, "backend": be.name, "dtypes": dtypes, "threads": be.threads, "units": len(units),
            "total": total, "skipped": total - len(todo), "measured": run.ok + run.failed, "ok": run.ok,
            "failed": run.failed, "rounds": rounds, "model_rounds": model_rounds,
            "median_cv": statistics.median(run.cvs) if run.cvs else None,
            "median_round_cv": statistics.median(rcv) if rcv else None, "load_start": load,
            "median_other_cpu": statistics.median(other) if other else None, "warnings": warnings,
            "seconds": round(time.perf_counter() - started, 2), "db": str(store.path) if hasattr(store, "path") else None}


class _Run:
    """State of one profiling run: the store, the progress bar and the tallies."""

    def __init__(self, be: Backend, store: Any, device: str, fp_ids: dict, seed: int, rounds: int = 1,
                 model_rounds: int = 1) -> None:
        self.be, self.store, self.device, self.fp_ids, self.seed = be, store, device, fp_ids, seed
        self.block_rounds, self.model_rounds = rounds, model_rounds
        self.ok = self.failed = 0
        self.cvs: list[float] = []
        self.round_cvs: list[float | None] = []
        self.other_cpus: list[float | None] = []
        self.bar = self.task = None

    def n_rounds(self, unit) -> int:
        """Sessions ``unit`` is timed in: more for a whole network."""
        return self.model_rounds if unit.kind == "model" else self.block_rounds

    def show(self, text: str) -> None:
        if self.bar:
            self.bar.update(self.task, description=text if len(text) <= 56 else text[:55] + "…")

    def advance(self, n: int = 1) -> None:
        if self.bar:
            self.bar.advance(self.task, n)

    def attempt(self, fn, unit, dtype: str):
        """``fn()``, or the error message (str) when it raises; interrupts pass through."""
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # recorded as failed; the run goes on
            msg = f"{type(exc).__name__}: {exc}".strip()[:2000]
            log.warning("%s %s failed: %s", dtype, unit.key, msg)
            return msg

    def finish(self, unit, dtype: str, result) -> None:
        """Store the unit's final row: its statistics, or its error message."""
        be = self.be
        if isinstance(result, str):
            self.store.add(unit, self.device, be.name, dtype, be.threads, error=result,
                           fingerprint_id=self.fp_ids[dtype], seed=self.seed)
            self.failed += 1
            return
        self.store.add(unit, self.device, be.name, dtype, be.threads, stats=result,
                       fingerprint_id=self.fp_ids[dtype], seed=self.seed)
        self.ok += 1
        self.cvs.append(result.cv)
        self.round_cvs.append(result.round_cv)
        self.other_cpus.append(result.other_cpu)

    def rounds(self, todo: list, chunk: int, dtypes: list[str]) -> None:
        """Interleaved rounds over ``todo`` in chunks; finished rounds of an earlier run are reused."""
        be, store = self.be, self.store
        stored = {d: store.rounds_done(self.device, d, be.threads) for d in dtypes}
        rng = np.random.default_rng(self.seed)
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            want = {(u, d): self.n_rounds(u) for u, d in part}
            have = {(u, d): {r: TimingStats.from_dict(s) for r, s in stored[d].get((u.kind, u.key), {}).items()
                             if r < want[(u, d)]} for u, d in part}
            self.advance(sum(len(h) for h in have.values()))
            arts, errors = {}, {}
            for u, d in part:
                if len(have[(u, d)]) < want[(u, d)]:
                    self.show(f"converting {d} {u.key}")
                    got = self.attempt(lambda u=u, d=d: be.prepare(u, d), u, d)
                    (errors if isinstance(got, str) else arts)[(u, d)] = got
            for r in range(max(want.values())):
                for i in rng.permutation(len(part)):
                    item = part[i]
                    if r >= want[item] or r in have[item] or item not in arts:
                        continue
                    u, d = item
                    self.show(f"round {r + 1}/{want[item]} {d} {u.key}")
                    got = self.attempt(lambda a=arts[item]: be.measure_artifact(a), u, d)
                    if isinstance(got, str):
                        errors[item] = got
                        del arts[item]
                    else:
                        store.add_round(u, self.device, d, be.threads, r, got)
                        have[item][r] = got
                    self.advance()
            for item in part:
                u, d = item
                if item in errors:
                    self.advance(want[item] - len(have[item]))
                    self.finish(u, d, errors[item])
                else:
                    self.finish(u, d, TimingStats.from_rounds([have[item][r] for r in sorted(have[item])]))
