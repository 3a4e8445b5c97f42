"""A profiling run: measure units on a backend and store every result; resumable and crash-safe."""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Iterable, Sequence

from ._backend import Backend, check_dtype, get_backend
from ._fingerprint import cpu_slug, fingerprint_id

log = logging.getLogger(__name__)


def default_device(backend: Backend) -> str:
    """The default device id: ``<backend>-<cpu slug>`` (``ort-amd-epyc``), or the backend's own."""
    own = getattr(backend, "default_device", None)
    return own() if callable(own) else f"{backend.name}-{cpu_slug()}"


def _check_store(db: Any) -> Any:
    """``db`` must be a store object (duck-typed); the collector never imports the dataset layer itself."""
    if db is None:
        raise ValueError("db is required: a store such as spaceevo.datasets.LatencyStore('x.db')")
    missing = [m for m in ("add", "add_fingerprint", "done") if not hasattr(db, m)]
    if missing:
        raise ValueError(f"db must be a store with add/add_fingerprint/done (e.g. spaceevo.datasets.LatencyStore"
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
                backend_opts: dict | None = None) -> dict:
    """Measure every (unit, dtype) not yet in ``db`` and store it; returns a summary dict.

    ``db`` is a store object such as :class:`spaceevo.datasets.LatencyStore` (the caller opens and closes it).
    Units already stored for this device/dtype/threads are skipped (failed ones too, unless
    ``retry_failed``). A unit that fails to convert or run is stored as failed and the run goes on.
    """
    store = _check_store(db)
    be = get_backend(backend, **{"seed": seed, **(backend_opts or {})}) if isinstance(backend, str) else backend
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
        fp_ids[d] = store.add_fingerprint(fingerprint_id(fp), fp)
    done = {d: store.done(device, d, be.threads, include_failed=not retry_failed) for d in dtypes}
    todo = [(u, d) for u in units for d in dtypes if (u.kind, u.key) not in done[d]]
    total = len(units) * len(dtypes)
    skipped = total - len(todo)
    ok = failed = 0
    cvs: list[float] = []
    bar = _progress(progress and bool(todo), len(todo))
    task = bar.add_task("", total=len(todo)) if bar else None
    if bar:
        bar.start()
    try:
        for unit, dtype in todo:
            if bar:
                bar.update(task, description=f"{dtype} {unit.key}"[:80])
            try:
                stats = be.measure(unit, dtype)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # recorded as failed; the run goes on
                msg = f"{type(exc).__name__}: {exc}".strip()[:2000]
                log.warning("%s %s failed: %s", dtype, unit.key, msg)
                store.add(unit, device, be.name, dtype, be.threads, error=msg, fingerprint_id=fp_ids[dtype],
                          seed=seed)
                failed += 1
            else:
                store.add(unit, device, be.name, dtype, be.threads, stats=stats, fingerprint_id=fp_ids[dtype],
                          seed=seed)
                ok += 1
                cvs.append(stats.cv)
            if bar:
                bar.advance(task)
    finally:
        if bar:
            bar.stop()
    return {"device": device, "backend": be.name, "dtypes": dtypes, "threads": be.threads, "units": len(units),
            "total": total, "skipped": skipped, "measured": ok + failed, "ok": ok, "failed": failed,
            "median_cv": statistics.median(cvs) if cvs else None,
            "seconds": round(time.perf_counter() - started, 2), "db": str(store.path) if hasattr(store, "path") else None}
