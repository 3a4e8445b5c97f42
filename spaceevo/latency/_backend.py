"""The backend interface (prepare -> time -> report) and the backend registry."""

from __future__ import annotations

import abc
import dataclasses
import importlib
import logging
from typing import Any, Callable, Sequence

from spaceevo.registry import Registry
from spaceevo.space import BlockConfig

from ._fingerprint import fingerprint_id, host_facts
from ._load import cpu_snapshot, other_load
from ._pinning import choose_cores, pinned
from ._protocol import DTYPES
from ._stats import TimingStats
from ._units import BlockUnit

log = logging.getLogger(__name__)

CLOCKS: tuple[str, ...] = ("auto", "wall", "cpu")
# The drift anchor timed around every sample (INT8, whatever dtype is measured): a mid-sized residual block
# that runs ~1 ms here. Changing it changes every ``ratio``, so it is part of the fingerprint.
REFERENCE_BLOCK = "ResNetSEBlock hw=40 cin=64 cout=64 k=3 e=0.5 s=1 act=relu"


def check_dtype(dtype: str) -> str:
    """Validate a dtype name.

    Parameters
    ----------
    dtype : str

    Returns
    -------
    str
        ``dtype`` itself.

    Raises
    ------
    ValueError
        Not one of ``DTYPES``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not in {list(DTYPES)}")
    return dtype


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return value


class Backend(abc.ABC):
    """A timing backend: convert a unit ahead of timing, time it under the protocol, report statistics.

    Protocol: the unit is converted first (not timed); the process is pinned to fixed cores; each
    attempt opens a fresh session, runs ``warmup`` untimed inferences, then ``repeats`` timed samples.
    A sample is one inference, or, for units faster than ``min_sample_ms``, the mean of enough
    back-to-back inferences to last that long (as ``timeit`` does; it keeps timer and interrupt jitter
    of sub-millisecond units out of the statistics). When the CV exceeds ``max_cv`` the unit is
    re-measured in a fresh session (up to ``max_attempts`` attempts, the steadiest kept).

    ``clock='auto'`` reads the timing thread's CPU time when ``threads == 1`` (the runtime then
    computes on the calling thread, so time the thread spends descheduled by other processes is
    not counted) and the wall clock otherwise; ``'wall'`` and ``'cpu'`` force one.

    ``reference=True`` (backends with ``supports_reference``) brackets every sample with a timing of the
    fixed :data:`REFERENCE_BLOCK` in a session kept open for the backend's life (samples of >=
    ``ref_sample_ms``): on a shared machine whose speed changes from one second to the next, the ratio
    of a sample to its neighbouring reference times stays put (the statistics' ``ratio``).

    Parameters
    ----------
    threads : int
        Intra-op threads of the runtime.
    repeats : int
        Timed samples per session.
    warmup : int
        Untimed inferences per session.
    max_cv : float
        A session whose CV exceeds this is timed again.
    max_attempts : int
        Sessions per round at most.
    cores : list of int, optional
        Cores to pin the timing to (default: chosen from those this process may use).
    seed : int
        Seed of weights, inputs and calibration.
    min_sample_ms : float
        Loop units faster than this within one sample (0: one inference per sample).
    clock : str
        One of ``CLOCKS``.
    reference : bool
        Time the reference block beside every sample.
    ref_sample_ms : float
        Length of a reference sample.

    Raises
    ------
    ValueError
        An option out of range.
    """

    name: str = ""
    extra: str = ""  # the pip extra that brings this backend's runtime
    supports_reference: bool = False

    def __init__(self, threads: int = 1, repeats: int = 50, warmup: int = 10, max_cv: float = 0.05,
                 max_attempts: int = 3, cores: list[int] | None = None, seed: int = 0,
                 min_sample_ms: float = 2.0, clock: str = "auto", reference: bool = False,
                 ref_sample_ms: float = 1.0) -> None:
        if reference and not self.supports_reference:
            raise ValueError(f"reference=True: backend {self.name!r} cannot time a reference beside each sample")
        self.reference = bool(reference)
        if not isinstance(ref_sample_ms, (int, float)) or ref_sample_ms <= 0:
            raise ValueError(f"ref_sample_ms={ref_sample_ms!r} must be a number > 0")
        self.ref_sample_ms = float(ref_sample_ms)
        self._ref: tuple[Callable[[], Any], int] | None = None
        if clock not in CLOCKS:
            raise ValueError(f"clock={clock!r} is not in {list(CLOCKS)}")
        if clock == "cpu" and threads != 1:
            raise ValueError(f"clock='cpu' times the calling thread only; with threads={threads} use clock='wall'")
        self.clock = clock
        if not isinstance(min_sample_ms, (int, float)) or min_sample_ms < 0:
            raise ValueError(f"min_sample_ms={min_sample_ms!r} must be a number >= 0 (0: one inference per sample)")
        self.min_sample_ms = float(min_sample_ms)
        self.threads = _positive("threads", threads)
        self.repeats = _positive("repeats", repeats, 2)
        self.warmup = _positive("warmup", warmup, 0)
        if not isinstance(max_cv, (int, float)) or max_cv <= 0:
            raise ValueError(f"max_cv={max_cv!r} must be a number > 0")
        self.max_cv = float(max_cv)
        self.max_attempts = _positive("max_attempts", max_attempts)
        self.cores = list(cores) if cores else None
        self.seed = seed

    # -- what a backend implements --------------------------------------------------------------
    @abc.abstractmethod
    def available(self) -> bool:
        """Whether this backend's runtime (and device) can be used here."""

    @abc.abstractmethod
    def runtime_versions(self) -> dict:
        """Versions of the runtimes used to convert and time."""

    @abc.abstractmethod
    def prepare(self, unit, dtype: str) -> Any:
        """Convert ``unit`` to the artifact that :meth:`time_once` runs (INT8 or FP32)."""

    def open_runner(self, artifact: Any) -> Callable[[], Any]:
        """A callable that runs one inference of ``artifact`` in a fresh session it keeps open while referenced.

        Local backends implement this; a backend that times elsewhere (a phone) overrides :meth:`time_once`.
        """
        raise NotImplementedError(f"backend {self.name!r} implements neither open_runner nor time_once")

    def open_reference_runner(self, artifact: Any) -> Callable[[], Any]:
        """The reference block's runner (default: :meth:`open_runner`; a backend whose idle sessions keep
        cores busy opens it so that it cannot take the cores of the unit timed beside it)."""
        return self.open_runner(artifact)

    def reference_threads(self) -> int:
        """Threads of the reference block's session (:meth:`open_reference_runner`)."""
        return self.threads

    def time_once(self, artifact: Any) -> TimingStats:
        """One attempt: a fresh session pinned to the chosen cores, warm-up, timed repeats."""
        with pinned(self.pin_cores()):
            return self.time_loop(self.open_runner(artifact))

    def reference_runner(self) -> tuple[Callable[[], Any], int] | None:
        """The reference block's runner and its loops per sample (opened once, warm), or None without reference."""
        if not self.reference:
            return None
        if self._ref is None:
            run = self.open_reference_runner(self.prepare(BlockUnit(BlockConfig.parse(REFERENCE_BLOCK)), "int8"))
            for _ in range(20):
                run()
            clock = self.clock_fn()
            t0 = clock()
            for _ in range(10):
                run()
            per_run = max((clock() - t0) * 1e3 / 10, 1e-6)
            self._ref = (run, max(1, int(-(-self.ref_sample_ms // per_run))))
        return self._ref

    def device_facts(self) -> dict:
        """Facts about the device that runs the timing (the host by default)."""
        return host_facts()

    def settings(self, dtype: str) -> dict:
        """Backend settings that change the measured number (recorded in the fingerprint)."""
        return {}

    # -- shared protocol -----------------------------------------------------------------------
    def require(self) -> None:
        """Raise a clear error when the backend cannot be used here."""
        if not self.available():
            hint = f": pip install 'spaceevo[{self.extra}]'" if self.extra else ""
            raise ImportError(f"backend {self.name!r} is not available on this machine{hint}")

    def pin_cores(self) -> list[int]:
        """The cores the timing process is pinned to."""
        return choose_cores(self.threads, self.cores)

    def fingerprint(self, dtype: str, threads: int | None = None) -> dict:
        """Backend, runtime versions, dtype, threads, pinned cores, protocol and device facts."""
        check_dtype(dtype)
        return {"backend": self.name, "runtime": self.runtime_versions(), "dtype": dtype,
                "threads": threads or self.threads, "pinned_cores": self.pin_cores(),
                "protocol": {"warmup": self.warmup, "repeats": self.repeats, "max_cv": self.max_cv,
                             "max_attempts": self.max_attempts, "min_sample_ms": self.min_sample_ms,
                             "clock": self.resolved_clock(),
                             **({"reference": REFERENCE_BLOCK, "ref_sample_ms": self.ref_sample_ms}
                                if self.reference else {}),
                             **({"reference_threads": self.reference_threads()}
                                if self.reference and self.reference_threads() != (threads or self.threads) else {})},
                "settings": self.settings(dtype), **self.device_facts()}

    def fingerprint_id(self, dtype: str) -> str:
        """Stable id of :meth:`fingerprint`."""
        return fingerprint_id(self.fingerprint(dtype))

    def resolved_clock(self) -> str:
        """``'cpu'`` (thread CPU time) or ``'wall'``, after resolving ``'auto'``."""
        if self.clock == "auto":
            return "cpu" if self.threads == 1 else "wall"
        return self.clock

    def clock_fn(self) -> Callable[[], float]:
        """The timer in seconds: the thread's CPU time or the wall clock (:meth:`resolved_clock`)."""
        import time

        return time.thread_time if self.resolved_clock() == "cpu" else time.perf_counter

    def time_loop(self, run: Callable[[], Any]) -> TimingStats:
        """Warm up, calibrate the loops per sample to ``min_sample_ms``, then time ``repeats`` samples.

        With the reference on, a reference sample is timed before every sample and after the last.
        """
        clock = self.clock_fn()
        ref = self.reference_runner()
        t0 = clock()
        for _ in range(self.warmup):
            run()
        per_run = (clock() - t0) * 1e3 / self.warmup if self.warmup else 0.0
        if self.min_sample_ms > 0 and per_run <= 0:
            t0 = clock()
            run()
            per_run = (clock() - t0) * 1e3
        loops = max(1, int(-(-self.min_sample_ms // per_run))) if self.min_sample_ms > 0 and per_run > 0 else 1
        if ref is not None:
            return self._time_with_reference(run, loops, ref, clock)
        times = []
        if loops == 1:
            for _ in range(self.repeats):
                t0 = clock()
                run()
                times.append((clock() - t0) * 1e3)
        else:
            rng = range(loops)
            for _ in range(self.repeats):
                t0 = clock()
                for _ in rng:
                    run()
                times.append((clock() - t0) * 1e3 / loops)
        return TimingStats.from_times(times, loops=loops)

    def _time_with_reference(self, run: Callable[[], Any], loops: int, ref: tuple[Callable[[], Any], int],
                             clock: Callable[[], float]) -> TimingStats:
        ref_run, ref_loops = ref
        unit_rng, ref_rng = range(loops), range(ref_loops)

        def timed(fn, rng) -> float:
            t0 = clock()
            for _ in rng:
                fn()
            return (clock() - t0) * 1e3 / len(rng)

        timed(ref_run, ref_rng)  # the reference's caches are cold after the unit's warm-up
        refs, times = [timed(ref_run, ref_rng)], []
        for _ in range(self.repeats):
            times.append(timed(run, unit_rng))
            refs.append(timed(ref_run, ref_rng))
        return TimingStats.from_times(times, loops=loops, ref_times_ms=refs)

    def measure_artifact(self, artifact: Any) -> TimingStats:
        """Time a prepared artifact: re-measure while CV > ``max_cv``, keep the steadiest attempt."""
        best: TimingStats | None = None
        before = cpu_snapshot()
        for attempt in range(1, self.max_attempts + 1):
            stats = self.time_once(artifact)
            if best is None or stats.cv < best.cv:
                best = stats
            if best.cv <= self.max_cv:
                break
            log.debug("%s: CV %.3f > %.3f, re-measuring (attempt %d)", self.name, stats.cv, self.max_cv, attempt)
        others, steal = other_load(before, cpu_snapshot())
        return dataclasses.replace(best, attempts=attempt, other_cpu=others, steal=steal)

    def measure(self, unit, dtype: str = "int8") -> TimingStats:
        """Convert ``unit`` to ``dtype`` ahead of timing, then time it under the protocol."""
        check_dtype(dtype)
        self.require()
        return self.measure_artifact(self.prepare(unit, dtype))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(threads={self.threads}, repeats={self.repeats}, warmup={self.warmup}, "
                f"max_cv={self.max_cv})")


_BACKENDS: Registry[str] = Registry("backend")  # name -> "module:Class", imported only when chosen


def register_backend(name: str, target: str) -> None:
    """Register backend ``name`` as ``"module:Class"`` (the module is imported only when the backend is chosen).

    Parameters
    ----------
    name : str
    target : str
        ``"module:Class"``; a module starting with ``.`` is relative to ``spaceevo.latency``.
    """
    _BACKENDS.register(name, target)


def list_backends(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered backends, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns; only matching names are listed.

    Returns
    -------
    list of str
    """
    return _BACKENDS.names(filter)


def get_backend(name: str, **opts: Any) -> type[Backend]:
    """The class of backend ``name`` (its module imported now); ``create_backend`` gives an instance.

    Parameters
    ----------
    name : str
    **opts
        Not accepted: options belong to ``create_backend(name, **opts)``.

    Returns
    -------
    type
        A ``Backend`` subclass.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid backends.
    TypeError
        Options were given (``get_backend`` returned an instance before issue 13).
    """
    if opts:
        raise TypeError(f"get_backend({name!r}) returns the backend class and takes no options; "
                        f"create_backend({name!r}, **opts) builds an instance")
    module, cls = _BACKENDS.get(name).split(":")
    return getattr(importlib.import_module(module, __package__), cls)


def backend_options(backend: str, threads: int = 1, repeats: int = 10, warmup: int = 5, max_cv: float = 0.05,
                    max_attempts: int = 3, seed: int = 0, cores: Sequence[int] | None = None, xnnpack: bool = True,
                    quant_format: str = "qdq", activation_type: str = "uint8", benchmark_model: str | None = None,
                    serial: str | None = None, min_sample_ms: float | None = None, clock: str = "auto",
                    reference: bool | None = None) -> dict:
    """The constructor options of backend ``backend`` from the command line's settings (those it takes).

    Every backend gets the protocol's options; ``clock`` and the reference block (on unless ``reference`` is
    False) go to the local backends, the ort quantisation settings to ``ort``, XNNPACK to ``tflite`` and
    ``adb``, the phone's settings to ``adb`` (which refuses a reference with a clear message).

    Parameters
    ----------
    backend : str
    threads, repeats, warmup, max_attempts, seed : int
    max_cv : float
    cores : sequence of int, optional
    xnnpack : bool
    quant_format, activation_type : str
    benchmark_model, serial : str, optional
    min_sample_ms : float, optional
    clock : str
    reference : bool, optional

    Returns
    -------
    dict
        Keyword arguments of ``create_backend(backend, **opts)``.
    """
    opts = {"threads": threads, "repeats": repeats, "warmup": warmup, "max_cv": max_cv, "max_attempts": max_attempts,
            "seed": seed,
            "cores": cores or None}
    if backend != "adb":
        opts["clock"] = clock
        opts["reference"] = True if reference is None else reference
    elif reference:
        opts["reference"] = True  # refused by the backend with a clear message
    if min_sample_ms is not None:
        opts["min_sample_ms"] = min_sample_ms
    if backend == "ort":
        opts.update(quant_format=quant_format, activation_type=activation_type)
    elif backend == "tflite":
        opts.update(xnnpack=xnnpack)
    elif backend == "adb":
        opts.update(xnnpack=xnnpack, benchmark_model=benchmark_model, serial=serial)
    return opts


def create_backend(name: str, **opts: Any) -> Backend:
    """An instance of backend ``name`` with options (threads, repeats, warmup, max_cv, ...).

    Parameters
    ----------
    name : str
    **opts
        Constructor options of the backend.

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid backends) or an option the backend does not take.
    """
    cls = get_backend(name)
    try:
        return cls(**opts)
    except TypeError as exc:
        raise ValueError(f"backend {name!r}: bad option ({exc})") from None


register_backend("ort", "._ort:OrtBackend")
register_backend("tflite", "._tflite:TfliteBackend")
register_backend("adb", "._adb:AdbBackend")
