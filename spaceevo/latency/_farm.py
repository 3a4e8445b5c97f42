"""Profiling a device farm on Ray: many devices and hosts, one store, nothing lost.

Every device of the pool (:mod:`._pool`) is a Ray custom resource ``spaceevo:<name>`` (one unit), held
by one actor for the life of the run, so exactly one timing runs on a device at a time, pinned to it.
Conversion (quantisation, TFLite conversion) runs as plain Ray tasks anywhere on the cluster.

Devices whose fingerprints agree apart from the instance (which cores, which serial) share one dataset
(one ``device`` id in the store); devices that differ get their own rows. Each dataset's units are cut
into chunks; a free device of the dataset takes the next chunk and times it under the collector's
protocol (interleaved rounds in a shuffled order, reference block, re-measure rule), streaming every
finished round back. The driver is the only writer of the store: it commits each round as it arrives
and the unit's row when its last round is in, exactly as :func:`~._profile.run_profile` does. A worker
or node that dies loses only its round in flight: the chunk's unfinished units go back to the queue of
the dataset (another device of the same fingerprint, or this one when it comes back); a device that
keeps failing is quarantined, with the reason, in the store. Ray is imported only when a farm runs
(:mod:`._farm_cluster`); the workers run :mod:`._farm_worker`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import statistics
import time
from typing import Any, Iterable, Sequence

import numpy as np

from ._backend import _BACKENDS, check_dtype, create_backend
from ._farm_cluster import connect, import_ray
from ._farm_worker import DeviceWorker, _convert, _message
from ._fingerprint import fingerprint_id
from ._pool import DeviceSpec
from ._profile import _check_store, _Run
from ._stats import TimingStats

log = logging.getLogger(__name__)

# fingerprint fields that name one instance of a device model, not the model: dropped to group devices
INSTANCE_FIELDS: tuple[str, ...] = ("pinned_cores", "allowed_cores", "serial")
MAX_FAILURES = 3  # failures in a row (dead worker, timing errors) before a device is quarantined
WAIT_S = 300.0  # how long a dataset waits for a lost device to come back


def model_fingerprint(fp: dict) -> dict:
    """A device fingerprint without its instance fields (cores, serial): the same for every device of a model."""
    out = {k: v for k, v in fp.items() if k not in INSTANCE_FIELDS}
    out["n_pinned_cores"] = len(fp.get("pinned_cores") or [])
    return out


# -- the driver ------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class _Item:
    unit: Any
    dtype: str
    have: dict  # round -> TimingStats
    ref: Any = None  # conversion result (ObjectRef)
    final: bool = False  # its row is written


@dataclasses.dataclass(eq=False)
class _Group:
    key: str
    device: str
    backend: str
    threads: int
    target: str
    opts: dict
    fp_ids: dict
    names: list
    queue: collections.deque = dataclasses.field(default_factory=collections.deque)
    run: Any = None
    total: int = 0
    skipped: int = 0
    pending: int = 0
    chunk_no: int = 0


@dataclasses.dataclass(eq=False)
class _Device:
    spec: DeviceSpec
    target: str
    opts: dict
    actor: Any = None
    group: _Group | None = None
    info: dict | None = None
    mfps: dict | None = None  # its model fingerprint per dtype
    status: str = "ok"
    reason: str | None = None
    streak: int = 0
    failures: int = 0
    deferred: list = dataclasses.field(default_factory=list)  # (item, message) timing errors of the streak
    chunk: list | None = None
    gen: Any = None
    ready_ref: Any = None
    lost_since: float | None = None
    rounds: int = 0
    units: int = 0
    busy_s: float = 0.0
    wait_s: float = 0.0
    first_s: float | None = None
    last_s: float | None = None
    task: Any = None
    planned: int = 0  # rounds handed to it (the progress bar's total)


class _Farm:
    """One farm run: the devices, the datasets (groups), the queues and the store (the only writer)."""

    def __init__(self, ray, store, devices: list[_Device], dtypes: list[str], rounds: int, chunk: int, seed: int,
                 retry_failed: bool, max_failures: int, wait_s: float) -> None:
        self.ray, self.store, self.devices, self.dtypes = ray, store, devices, dtypes
        self.rounds, self.chunk, self.seed, self.retry_failed = rounds, chunk, seed, retry_failed
        self.max_failures, self.wait_s = max_failures, wait_s
        self.groups: dict[str, _Group] = {}
        self.bar = None
        self.actor_cls = ray.remote(DeviceWorker)
        self.convert = ray.remote(_convert).options(num_cpus=1)

    # -- devices -------------------------------------------------------------------------------
    def spawn(self, dev: _Device) -> None:
        """Start (or restart) the actor of ``dev``; its readiness is awaited in the event loop."""
        cls = self.actor_cls.options(num_cpus=0, resources={dev.spec.resource: 1}, max_restarts=0,
                                     max_task_retries=0, name=None)
        dev.actor = cls.remote(dev.spec.name, dev.spec.backend, dev.target, dev.opts)
        dev.ready_ref = dev.actor.ready.remote(self.dtypes, self.rounds)

    def kill(self, dev: _Device) -> None:
        if dev.actor is not None:
            try:
                self.ray.kill(dev.actor, no_restart=True)
            except Exception:  # already gone
                pass
        dev.actor = dev.gen = dev.ready_ref = None

    def quarantine(self, dev: _Device, reason: str) -> None:
        """Take ``dev`` out of the run and record why; its work goes back to the queue."""
        log.warning("device %s quarantined: %s", dev.spec.name, reason)
        dev.status, dev.reason = "quarantined", reason
        self.requeue(dev, also_deferred=True)
        self.kill(dev)
        if hasattr(self.store, "set_device_status"):
            g = dev.group
            self.store.set_device_status(dev.spec.name, dev.spec.backend, "quarantined", reason,
                                         device=g.device if g else None,
                                         fingerprint_id=g.fp_ids.get(self.dtypes[0]) if g else None)
        self.show(dev, "quarantined")

    def requeue(self, dev: _Device, also_deferred: bool = False) -> None:
        """Put the unfinished units of ``dev``'s chunk (and its deferred failures) back at the queue's head."""
        if dev.group is None:
            return
        deferred = [it for it, _msg in dev.deferred]
        left = [it for it in (dev.chunk or []) if not it.final and not any(it is d for d in deferred)]
        if also_deferred:
            left += [it for it in deferred if not it.final]
            dev.deferred = []
        dev.chunk, dev.gen = None, None
        if left:
            dev.group.queue.appendleft(left)

    def lost(self, dev: _Device, exc: BaseException) -> None:
        """The worker (or its node) died: requeue its chunk, count a failure, restart it or quarantine it."""
        msg = _message(exc)
        log.warning("device %s lost its worker: %s", dev.spec.name, msg)
        dev.failures += 1
        dev.streak += 1
        self.requeue(dev)
        self.kill(dev)
        if dev.streak >= self.max_failures:
            self.quarantine(dev, f"{dev.streak} failures in a row; last: worker died ({msg})")
            return
        dev.lost_since = time.monotonic()
        self.show(dev, "restarting")
        self.spawn(dev)

    # -- datasets ------------------------------------------------------------------------------
    def build_groups(self, units: list, device: str | None) -> None:
        """Group the ready devices by fingerprint into datasets and queue what each dataset still lacks."""
        by_key: dict[str, list[_Device]] = {}
        for dev in self.devices:
            mfps = {d: model_fingerprint(fp) for d, fp in dev.info["fingerprints"].items()}
            key = fingerprint_id({"fp": mfps, "dataset": dev.spec.dataset})
            dev.mfps = mfps
            by_key.setdefault(key, []).append(dev)
        if device is not None and len(by_key) > 1:
            raise ValueError(f"--device {device!r} names one dataset, but the pool has {len(by_key)} kinds of device "
                             "(different fingerprints); set 'dataset:' per entry in the pool file instead")
        ids: dict[str, str] = {}
        for key, devs in by_key.items():
            ids[key] = device or devs[0].spec.dataset or devs[0].info["default_device"]
        for key, devs in by_key.items():
            clash = [k for k in by_key if k != key and ids[k] == ids[key]
                     and by_key[k][0].info["threads"] == devs[0].info["threads"]]
            if clash:
                if devs[0].spec.dataset:
                    other = by_key[clash[0]][0].spec.name
                    raise ValueError(f"pool entry {devs[0].spec.name!r}: dataset {ids[key]!r} is also used by "
                                     f"{other!r}, a device with another fingerprint; their rows would mix; give "
                                     "them different 'dataset:' ids")
                ids[key] = f"{ids[key]}-{key[:6]}"
        for key, devs in by_key.items():
            first = devs[0]
            fp_ids = {d: self.store.add_fingerprint(fingerprint_id(first.mfps[d]), first.mfps[d]) for d in self.dtypes}
            g = _Group(key=key, device=ids[key], backend=first.info["backend"], threads=first.info["threads"],
                       target=first.target, opts=first.opts, fp_ids=fp_ids, names=[d.spec.name for d in devs])
            g.run = _Run(_BackendView(g.backend, g.threads), self.store, g.device, fp_ids, self.seed)
            for dev in devs:
                dev.group = g
            self.groups[key] = g
            self.queue_group(g, units)

    def queue_group(self, g: _Group, units: list) -> None:
        done = {d: self.store.done(g.device, d, g.threads, include_failed=not self.retry_failed)
                for d in self.dtypes}
        todo = [(u, d) for u in units for d in self.dtypes if (u.kind, u.key) not in done[d]]
        g.total, g.skipped = len(units) * len(self.dtypes), len(units) * len(self.dtypes) - len(todo)
        stored = {d: self.store.rounds_done(g.device, d, g.threads) for d in self.dtypes} if self.rounds > 1 else {}
        items = []
        for u, d in todo:
            have = {r: TimingStats.from_dict(s) for r, s in stored.get(d, {}).get((u.kind, u.key), {}).items()
                    if r < self.rounds}
            item = _Item(u, d, have)
            if len(have) >= self.rounds:  # every round was stored before a kill: only the row is missing
                self.finish(g, item, TimingStats.from_rounds([have[r] for r in sorted(have)]))
            else:
                items.append(item)
        g.pending = len(items)
        n_dev = len(g.names)
        size = max(1, min(self.chunk, math.ceil(len(items) / n_dev))) if items else 1
        for start in range(0, len(items), size):
            g.queue.append(items[start:start + size])

    def finish(self, g: _Group, item: _Item, result) -> None:
        """The unit's final row (its statistics or its error message), written once."""
        if item.final:
            return
        item.final = True
        item.ref = None
        g.pending -= 1
        g.run.finish(item.unit, item.dtype, result)

    # -- scheduling ----------------------------------------------------------------------------
    def submit_conversions(self, g: _Group, chunk: list, order: Iterable[int]) -> None:
        for i in order:
            it = chunk[i]
            if it.ref is None and not it.final:
                it.ref = self.convert.remote(g.backend, g.target, g.opts, it.unit, it.dtype)

    def assign(self, dev: _Device) -> bool:
        """Give ``dev`` the next chunk of its dataset (and convert the one after ahead); False when none is left."""
        g = dev.group
        while g.queue:
            chunk = [it for it in g.queue.popleft() if not it.final]
            if chunk:
                break
        else:
            return False
        g.chunk_no += 1
        seed = [self.seed, g.chunk_no]
        self.submit_conversions(g, chunk, np.random.default_rng(seed).permutation(len(chunk)))
        if g.queue:  # one chunk ahead, so the next device (or this one) does not wait for its conversion
            nxt = g.queue[0]
            self.submit_conversions(g, nxt, range(len(nxt)))
        dev.chunk = chunk
        have = [set(it.have) for it in chunk]
        dev.gen = dev.actor.run_chunk.options(num_returns="streaming").remote(
            [(it.unit, it.dtype) for it in chunk], [[it.ref] for it in chunk], have, self.rounds, seed)
        if dev.first_s is None:
            dev.first_s = time.perf_counter()
        self.grow(dev, sum(self.rounds - len(it.have) for it in chunk))
        return True

    def on_event(self, dev: _Device, event: tuple) -> None:
        g = dev.group
        kind = event[0]
        if kind == "done":
            dev.busy_s += event[1]
            dev.wait_s += event[2]
            dev.last_s = time.perf_counter()
            self.requeue(dev)  # nothing should be left; safety
            dev.gen = None
            return
        item = dev.chunk[event[1]]
        if item.final:  # written already (a duplicate after a requeue): never twice
            return
        if kind == "round":
            _, _, r, stats = event
            if self.rounds > 1:
                self.store.add_round(item.unit, g.device, item.dtype, g.threads, r, stats)
            item.have[r] = stats
            dev.rounds += 1
            self.clear_streak(dev)
            self.advance(dev)
            if len(item.have) >= self.rounds:
                dev.units += 1
                result = stats if self.rounds == 1 else TimingStats.from_rounds([item.have[k]
                                                                                for k in sorted(item.have)])
                self.finish(g, item, result)
        elif event[3] == "convert":  # conversion is the unit's own failure, wherever it ran
            self.finish(g, item, event[2])
            self.advance(dev, self.rounds - len(item.have))
        else:  # a timing error: the unit's or the device's? decided by the device's next round
            dev.deferred.append((item, event[2]))
            dev.streak += 1
            self.advance(dev, self.rounds - len(item.have))
            if dev.streak >= self.max_failures:
                self.quarantine(dev, f"{dev.streak} failures in a row; last: {event[2]}")

    def clear_streak(self, dev: _Device) -> None:
        """A round succeeded: the device works, so the timing errors of its streak were the units' own."""
        for item, msg in dev.deferred:
            log.warning("%s %s failed on %s: %s", item.dtype, item.unit.key, dev.spec.name, msg)
            self.finish(dev.group, item, msg)
        dev.deferred, dev.streak = [], 0

    def loop(self) -> None:
        """Hand out chunks and commit events until every dataset is done or has no device left."""
        ray = self.ray
        while True:
            for dev in self.devices:
                if dev.status == "ok" and dev.actor is not None and dev.ready_ref is None and dev.gen is None:
                    if not self.assign(dev):
                        self.show(dev, "idle")
                    else:
                        self.show(dev, "timing")
            waiting = {}
            for dev in self.devices:
                if dev.status != "ok":
                    continue
                if dev.ready_ref is not None:
                    waiting[dev.ready_ref] = dev
                elif dev.gen is not None:
                    waiting[dev.gen] = dev
            if not waiting:
                break
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=1.0)
            for w in ready:
                dev = waiting[w]
                if w is dev.ready_ref:
                    self.on_ready(dev)
                else:
                    self.on_stream(dev)
            now = time.monotonic()
            for dev in self.devices:
                if dev.status == "ok" and dev.lost_since is not None and now - dev.lost_since > self.wait_s:
                    self.quarantine(dev, f"did not come back within {self.wait_s:g} s after its worker died")

    def settle(self) -> None:
        """After the loop: timing errors of devices that were not quarantined are the units' own (failed rows)."""
        for dev in self.devices:
            if dev.status == "ok" and dev.deferred:
                self.clear_streak(dev)

    def on_ready(self, dev: _Device) -> None:
        try:
            self.ray.get(dev.ready_ref)
        except Exception as exc:
            dev.ready_ref = None
            self.lost(dev, exc)
            return
        dev.ready_ref, dev.lost_since = None, None
        self.show(dev, "back")

    def on_stream(self, dev: _Device) -> None:
        try:
            ref = next(dev.gen)
        except StopIteration:
            self.requeue(dev)
            dev.gen = None
            return
        except Exception as exc:  # the stream itself broke: the worker is gone
            self.lost(dev, exc)
            return
        try:
            event = self.ray.get(ref)
        except Exception as exc:  # the worker died (or the task failed): lose only the round in flight
            self.lost(dev, exc)
            return
        self.on_event(dev, event)

    # -- progress ------------------------------------------------------------------------------
    def start_progress(self, enabled: bool) -> None:
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.description}"),
                            console=Console(stderr=True), transient=False)
        for dev in self.devices:
            dev.task = self.bar.add_task("starting", total=0, name=dev.spec.name)
        self.bar.start()

    def grow(self, dev: _Device, n: int) -> None:
        dev.planned += n
        if self.bar:
            self.bar.update(dev.task, total=dev.planned)

    def advance(self, dev: _Device, n: int = 1) -> None:
        if self.bar and n:
            self.bar.advance(dev.task, n)

    def show(self, dev: _Device, text: str) -> None:
        if self.bar and dev.task is not None:
            g = dev.group
            self.bar.update(dev.task, description=f"{text} ({g.device})" if g else text)

    def stop_progress(self) -> None:
        if self.bar:
            self.bar.stop()


@dataclasses.dataclass
class _BackendView:
    """What :class:`~._profile._Run` needs of a backend to write rows: its name and threads."""

    name: str
    threads: int


def _startup(farm: _Farm, ready_timeout: float) -> None:
    """Start every device's actor and wait until all are ready; a device that is not is bad input."""
    ray = farm.ray
    for dev in farm.devices:
        farm.spawn(dev)
    for dev in farm.devices:
        try:
            dev.info = ray.get(dev.ready_ref, timeout=ready_timeout)
        except ray.exceptions.GetTimeoutError:
            raise ValueError(f"pool entry {dev.spec.name!r}: its worker did not start within {ready_timeout:g} s "
                             f"(is the node with resource {dev.spec.resource!r} up?)") from None
        except Exception as exc:
            where = f" on {dev.spec.host}" if dev.spec.host else ""
            fix = ("plug the phone in on that host and check 'adb devices' there, or remove the entry"
                   if dev.spec.backend == "adb" else "fix the entry or remove it from the pool")
            raise ValueError(f"pool entry {dev.spec.name!r} ({dev.spec.backend}{where}): {_message(exc)}; "
                             f"{fix}") from None
        dev.ready_ref = None


def run_farm(units: Iterable, devices: Sequence[DeviceSpec], dtypes: Sequence[str] = ("int8",), db: Any = None,
             address: str = "local", backend_opts: dict | None = None, device: str | None = None, seed: int = 0,
             rounds: int = 1, chunk: int = 64, retry_failed: bool = False, progress: bool = True,
             max_failures: int = MAX_FAILURES, wait_s: float = WAIT_S, num_cpus: int | None = None,
             runtime_env: dict | None = None, ready_timeout: float = 120.0) -> dict:
    """Profile ``units`` on every device of a pool through Ray; the store is written here only. Returns a summary.

    Parameters
    ----------
    units : iterable of Unit
        What to time (the same units as :func:`~._profile.run_profile`), on every kind of device.
    devices : sequence of DeviceSpec
        The pool (:func:`~._pool.load_pool` or :func:`~._pool.local_pool`).
    dtypes : sequence of str
        ``int8`` and/or ``fp32``.
    db : store
        A store object such as :class:`spaceevo.datasets.LatencyStore` (duck-typed; the caller opens it).
    address : str
        ``'local'``, ``'auto'`` or ``HOST:PORT`` of a Ray cluster (:func:`connect`).
    backend_opts : dict or None
        ``{backend name: options}`` shared by the devices of that backend (a pool entry's own options win).
    device : str or None
        The rows' device id when the pool has one kind of device (else set ``dataset:`` per entry).
    seed, rounds, chunk, retry_failed
        As in :func:`~._profile.run_profile`.
    progress : bool
        Show one progress bar per device.
    max_failures : int
        Failures in a row (dead worker, timing errors) before a device is quarantined.
    wait_s : float
        How long a device whose worker died may take to come back before it is quarantined.
    num_cpus, runtime_env
        For a cluster started here (``address='local'``): its CPUs and the job's runtime environment.
    ready_timeout : float
        Seconds every device's worker may take to start.

    Returns
    -------
    dict
        Totals (``units``, ``total``, ``skipped``, ``measured``, ``ok``, ``failed``, ``pending``), one entry per
        dataset (``datasets``) and per device (``devices``: rounds, units, timing and waiting seconds, status).

    Raises
    ------
    ValueError
        Bad arguments, an unreachable cluster, a device that is missing or not ready (named, with the fix).
    ImportError
        Without Ray (``pip install 'spaceevo[farm]'``).
    """
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be an integer >= 1")
    store = _check_store(db, rounds)
    dtypes = [check_dtype(d) for d in dtypes]
    if not dtypes:
        raise ValueError("dtypes is empty; allowed: int8, fp32")
    devices = list(devices)
    if not devices:
        raise ValueError("the pool has no device")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate device name(s) {dup} in the pool; give every device its own name")
    devs = []
    for spec in devices:
        if spec.backend not in _BACKENDS:
            raise ValueError(f"pool entry {spec.name!r}: unknown backend {spec.backend!r}; valid backends: "
                             f"{', '.join(_BACKENDS.names())}")
        opts = spec.backend_opts((backend_opts or {}).get(spec.backend, {}))
        opts.setdefault("seed", seed)
        create_backend(spec.backend, **opts)  # validates the options here, before any worker starts
        target = _BACKENDS.get(spec.backend)
        if target.startswith("."):
            target = "spaceevo.latency" + target
        devs.append(_Device(spec=spec, target=target, opts=opts))
    units = list(units)
    ray = import_ray()
    started_at = time.perf_counter()
    started = connect(address, devices, num_cpus=num_cpus, runtime_env=runtime_env)
    farm = _Farm(ray, store, devs, dtypes, rounds, chunk, seed, retry_failed, max_failures, wait_s)
    try:
        _startup(farm, ready_timeout)
        farm.build_groups(units, device)
        for dev in devs:
            if hasattr(store, "set_device_status"):
                store.set_device_status(dev.spec.name, dev.spec.backend, "ok", None, device=dev.group.device,
                                        fingerprint_id=dev.group.fp_ids[dtypes[0]])
        farm.start_progress(progress and any(g.pending for g in farm.groups.values()))
        try:
            farm.loop()
            farm.settle()
        finally:
            farm.stop_progress()
    finally:
        for dev in devs:
            farm.kill(dev)
        if started:
            ray.shutdown()
    return _summary(farm, units, dtypes, rounds, store, time.perf_counter() - started_at)


def _summary(farm: _Farm, units: list, dtypes: list[str], rounds: int, store: Any, seconds: float) -> dict:
    datasets = []
    for g in farm.groups.values():
        r = g.run
        rcv = [c for c in r.round_cvs if c is not None]
        datasets.append({"device": g.device, "backend": g.backend, "threads": g.threads,
                         "fingerprint_id": g.fp_ids[dtypes[0]], "devices": g.names, "total": g.total,
                         "skipped": g.skipped, "measured": r.ok + r.failed, "ok": r.ok, "failed": r.failed,
                         "pending": g.pending, "median_cv": statistics.median(r.cvs) if r.cvs else None,
                         "median_round_cv": statistics.median(rcv) if rcv else None})
    devs = []
    for d in farm.devices:
        wall = (d.last_s - d.first_s) if d.first_s is not None and d.last_s is not None else None
        devs.append({"name": d.spec.name, "backend": d.spec.backend, "host": d.spec.host or (d.info or {}).get("host"),
                     "dataset": d.group.device if d.group else None, "status": d.status, "reason": d.reason,
                     "rounds": d.rounds, "units": d.units, "failures": d.failures,
                     "timing_s": round(d.busy_s, 3), "conversion_wait_s": round(d.wait_s, 3),
                     "active_s": round(wall, 3) if wall is not None else None})
    tot = {k: sum(x[k] for x in datasets) for k in ("total", "skipped", "measured", "ok", "failed", "pending")}
    return {"farm": True, "units": len(units), "dtypes": dtypes, "rounds": rounds, **tot,
            "datasets": datasets, "devices": devs, "quarantined": [d["name"] for d in devs if d["status"] != "ok"],
            "seconds": round(seconds, 2), "db": str(store.path) if hasattr(store, "path") else None}
