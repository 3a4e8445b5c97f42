"""TFLite models on an Android phone over ``adb``, timed with TFLite's ``benchmark_model`` binary.

The model is converted on the host (as the ``tflite`` backend does), pushed with ``adb push``, and
timed by ``benchmark_model`` (pinned with ``taskset`` when the phone has it); its reported
statistics are parsed. The fingerprint comes from ``getprop`` and the phone's ``/proc/cpuinfo``.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import shutil
import subprocess
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from ._backend import Backend, check_dtype
from ._fingerprint import cpu_isa_features, parse_cpuinfo, slug
from ._stats import TimingStats

_STAT_RE = re.compile(r"count=(\d+)\s+(.*)")
_KV_RE = re.compile(r"(\w+)=(-?[0-9.]+(?:e[-+]?\d+)?)")
_TIMINGS_RE = re.compile(r"Inference timings in us:\s*(.*)")
_GETPROP_RE = re.compile(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$")


class AdbError(RuntimeError):
    """adb, the phone or benchmark_model failed or is missing."""


def parse_benchmark_output(text: str) -> dict:
    """Statistics of the timed runs from ``benchmark_model``'s output, in microseconds.

    Reads the last ``count=... first=... curr=... min=... max=... avg=... std=...`` line (the timed
    runs; the first one is the warm-up) and the ``Inference timings in us:`` summary.
    """
    stats = []
    for line in text.splitlines():
        m = _STAT_RE.search(line)
        if m:
            d = {"count": int(m.group(1))}
            d.update({k: float(v) for k, v in _KV_RE.findall(m.group(2))})
            stats.append(d)
    if not stats:
        tail = " | ".join(text.strip().splitlines()[-5:])
        raise AdbError(f"benchmark_model output has no 'count=... avg=... std=...' line; last lines: {tail!r}")
    out: dict[str, Any] = {"runs": stats[-1], "warmup": stats[0] if len(stats) > 1 else None}
    m = _TIMINGS_RE.search(text)
    if m:
        summary = {}
        for part in m.group(1).split(","):
            key, _, value = part.partition(":")
            try:
                summary[key.strip()] = float(value)
            except ValueError:
                continue
        out["summary"] = summary
    return out


def stats_from_benchmark(parsed: dict) -> TimingStats:
    """TimingStats (ms) from :func:`parse_benchmark_output`; median is ``avg`` when the tool gives none."""
    r = parsed["runs"]
    for key in ("avg", "std", "min"):
        if key not in r:
            raise AdbError(f"benchmark_model statistics lack {key!r}: {r}")
    mean = r["avg"] / 1e3
    std = r["std"] / 1e3
    p90 = r.get("p90")  # benchmark_model reports p5/median/p95 at most; the p90 is then unknown (NaN)
    return TimingStats(median_ms=r.get("median", r["avg"]) / 1e3, mean_ms=mean, std_ms=std, min_ms=r["min"] / 1e3,
                       p90_ms=p90 / 1e3 if p90 is not None else math.nan, cv=std / mean if mean > 0 else 0.0,
                       n=int(r["count"]))


def parse_getprop(text: str) -> dict[str, str]:
    """``adb shell getprop`` output (``[key]: [value]`` lines) as a dict."""
    out = {}
    for line in text.splitlines():
        m = _GETPROP_RE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


class AdbBackend(Backend):
    """TFLite ``benchmark_model`` on an Android phone; ``benchmark_model`` is the local path of the binary.

    Parameters
    ----------
    threads, repeats, warmup, max_cv, max_attempts, cores, seed, min_sample_ms, clock
        As for ``Backend`` (``cores`` pin with ``taskset`` on the phone).
    benchmark_model : str, optional
        Local path of TFLite's Android ``benchmark_model``.
    serial : str, optional
        The phone (``adb -s``), when several are attached.
    adb : str
        The ``adb`` executable.
    remote_dir : str
        Where models and the binary go on the phone.
    xnnpack : bool
    n_calib : int
        Calibration inputs of the INT8 conversion.
    timeout : float
        Seconds per ``adb`` command.
    reference : bool
        Refused with a clear message: the phone reports summaries only.
    """

    name = "adb"
    extra = "tflite"

    def __init__(self, threads: int = 1, repeats: int = 50, warmup: int = 10, max_cv: float = 0.05,
                 max_attempts: int = 3, cores: list[int] | None = None, seed: int = 0, min_sample_ms: float = 0.0,
                 clock: str = "wall", benchmark_model: str | None = None, serial: str | None = None, adb: str = "adb",
                 remote_dir: str = "/data/local/tmp/spaceevo", xnnpack: bool = True, n_calib: int = 8,
                 timeout: float = 300.0, reference: bool = False) -> None:
        # benchmark_model times on the phone and reports summaries only: no reference beside each sample
        super().__init__(threads, repeats, warmup, max_cv, max_attempts, cores, seed, min_sample_ms, clock,
                         reference)
        self.benchmark_model = benchmark_model
        self.serial = serial
        self.adb = adb
        self.remote_dir = remote_dir.rstrip("/")
        self.xnnpack = bool(xnnpack)
        self.n_calib = n_calib
        self.timeout = timeout

    # -- commands ------------------------------------------------------------------------------
    def adb_command(self, *args: str) -> list[str]:
        """``adb [-s SERIAL] args...``."""
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    @property
    def remote_binary(self) -> str:
        """Where ``benchmark_model`` lives on the phone."""
        return f"{self.remote_dir}/benchmark_model"

    def push_command(self, local: str | Path, remote: str) -> list[str]:
        """``adb push LOCAL REMOTE``."""
        return self.adb_command("push", str(local), remote)

    def taskset_mask(self) -> str | None:
        """Hex CPU mask for ``taskset`` from ``cores`` (None: no pinning requested)."""
        if not self.cores:
            return None
        return format(sum(1 << c for c in self.cores), "x")

    def benchmark_args(self, remote_model: str) -> list[str]:
        """``benchmark_model`` flags: graph, threads, warm-up and timed runs (exact counts), XNNPACK."""
        return [self.remote_binary, f"--graph={remote_model}", f"--num_threads={self.threads}",
                f"--warmup_runs={self.warmup}", "--warmup_min_secs=0", f"--num_runs={self.repeats}", "--min_secs=0",
                f"--use_xnnpack={'true' if self.xnnpack else 'false'}"]

    def benchmark_command(self, remote_model: str, taskset: bool = True) -> list[str]:
        """The full ``adb shell`` command, pinned with ``taskset MASK`` when ``taskset`` and cores are set."""
        args = self.benchmark_args(remote_model)
        mask = self.taskset_mask()
        if taskset and mask:
            args = ["taskset", mask, *args]
        return self.adb_command("shell", " ".join(shlex.quote(a) for a in args))

    def _run(self, cmd: list[str], what: str) -> str:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise AdbError(f"adb={self.adb!r} was not found; install Android platform-tools and put adb on PATH "
                           "(or pass adb=PATH)") from None
        except subprocess.TimeoutExpired:
            raise AdbError(f"{what} timed out after {self.timeout:g} s: {' '.join(cmd)}") from None
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise AdbError(f"{what} failed (exit {res.returncode}): {' | '.join(msg)}")
        return res.stdout

    # -- device --------------------------------------------------------------------------------
    def devices(self) -> list[str]:
        """Serials of attached devices in state ``device``."""
        out = self._run([self.adb, "devices"], "adb devices")
        return [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip().endswith("\tdevice") or
                (len(ln.split()) == 2 and ln.split()[1] == "device")]

    def check_ready(self) -> None:
        """Raise :class:`AdbError` naming what is missing: adb, a device, the benchmark_model binary, TF."""
        if shutil.which(self.adb) is None and not Path(self.adb).is_file():
            raise AdbError(f"adb={self.adb!r} was not found; install Android platform-tools and put adb on PATH")
        devs = self.devices()
        if not devs:
            raise AdbError("no Android device is attached ('adb devices' lists none); connect a phone with USB "
                           "debugging enabled")
        if self.serial and self.serial not in devs:
            raise AdbError(f"serial={self.serial!r} is not attached; attached devices: {devs}")
        if len(devs) > 1 and not self.serial:
            raise AdbError(f"several devices are attached {devs}; choose one with serial=...")
        if not self.benchmark_model or not Path(self.benchmark_model).is_file():
            raise AdbError(f"benchmark_model={self.benchmark_model!r} is not a file; pass the path of TFLite's "
                           "Android benchmark_model binary (--benchmark-model)")
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            raise ImportError("the adb backend converts models with TensorFlow: pip install 'spaceevo[tflite]'")

    def available(self) -> bool:
        """True when adb, one device, the benchmark_model binary and TensorFlow are all there."""
        try:
            self.check_ready()
        except (AdbError, ImportError):
            return False
        return True

    def require(self) -> None:
        """Raise a clear error naming what is missing."""
        self.check_ready()

    @cached_property
    def _props(self) -> dict[str, str]:
        return parse_getprop(self._run(self.adb_command("shell", "getprop"), "adb shell getprop"))

    @cached_property
    def _has_taskset(self) -> bool:
        try:
            out = self._run(self.adb_command("shell", "command -v taskset || which taskset"), "taskset check")
        except AdbError:
            return False
        return bool(out.strip())

    def device_facts(self) -> dict:
        """Phone model, SoC, Android version, ABI and ISA features (dotprod, i8mm) from getprop and cpuinfo."""
        p = self._props
        try:
            _name, flags = parse_cpuinfo(self._run(self.adb_command("shell", "cat /proc/cpuinfo"), "cpuinfo"))
        except AdbError:
            flags = set()
        return {"model": p.get("ro.product.model", ""), "manufacturer": p.get("ro.product.manufacturer", ""),
                "soc": p.get("ro.soc.model") or p.get("ro.board.platform", ""),
                "android": p.get("ro.build.version.release", ""), "sdk": p.get("ro.build.version.sdk", ""),
                "abi": p.get("ro.product.cpu.abi", ""), "cpu": p.get("ro.hardware", ""),
                "isa": cpu_isa_features(set(flags)) if flags else {}, "os": "android", "serial": self.serial}

    def default_device(self) -> str:
        """``adb-<phone model slug>``, e.g. ``adb-pixel-4``."""
        return f"adb-{slug(self._props.get('ro.product.model', 'android'), 3)}"

    def resolved_clock(self) -> str:
        """benchmark_model times with the phone's wall clock."""
        return "wall"

    def pin_cores(self) -> list[int]:
        """The phone cores ``taskset`` pins to (as given; the host is not pinned)."""
        return list(self.cores or [])

    def runtime_versions(self) -> dict:
        """TensorFlow (converter) version and a digest of the benchmark_model binary."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in ("tensorflow-cpu", "tensorflow"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                pass
        if self.benchmark_model and Path(self.benchmark_model).is_file():
            out["benchmark_model_sha1"] = hashlib.sha1(Path(self.benchmark_model).read_bytes()).hexdigest()[:12]
        return out

    def settings(self, dtype: str) -> dict:
        """benchmark_model flags that matter."""
        return {"xnnpack": self.xnnpack, "taskset_mask": self.taskset_mask(), "tool": "benchmark_model",
                **({"quantization": "full-integer", "io_type": "int8"} if dtype == "int8" else {})}

    # -- protocol ------------------------------------------------------------------------------
    def prepare(self, unit, dtype: str) -> bytes:
        """The unit converted to ``.tflite`` on the host."""
        from ._tflite import unit_to_tflite

        check_dtype(dtype)
        return unit_to_tflite(unit, dtype, self.seed, self.n_calib)

    def _ensure_binary(self) -> None:
        if getattr(self, "_binary_pushed", False):
            return
        self._run(self.adb_command("shell", f"mkdir -p {shlex.quote(self.remote_dir)}"), "mkdir")
        self._run(self.push_command(self.benchmark_model, self.remote_binary), "adb push benchmark_model")
        self._run(self.adb_command("shell", f"chmod +x {shlex.quote(self.remote_binary)}"), "chmod")
        self._binary_pushed = True

    def time_once(self, artifact: bytes) -> TimingStats:
        """Push the model, run benchmark_model once (its own warm-up and timed runs), parse the result."""
        self._ensure_binary()
        digest = hashlib.sha1(artifact).hexdigest()[:16]
        remote = f"{self.remote_dir}/{digest}.tflite"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"{digest}.tflite"
            local.write_bytes(artifact)
            self._run(self.push_command(local, remote), "adb push model")
        out = self._run(self.benchmark_command(remote, taskset=self._has_taskset), "benchmark_model")
        return stats_from_benchmark(parse_benchmark_output(out))
