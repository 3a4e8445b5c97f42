"""Other work on the machine while timing: CPU time of other processes and hypervisor steal (Linux ``/proc``).

A timing run that shares its cores (or their caches and memory bandwidth) with other work reads slower and
noisier, and the reference block beside every sample cancels only part of it. The collector records, for
every timed unit, how many cores other processes kept busy and how much time the hypervisor stole meanwhile,
and ``profile`` warns at the start when the machine is busy. Where ``/proc/stat`` is missing (macOS,
Windows) everything here returns ``None`` and nothing is recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# other processes' use (cores) from which a run is called busy
BUSY_CORES = 0.3


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds of the whole machine and of this process at one moment."""

    wall: float
    busy: float  # all CPUs, user + nice + system + irq + softirq
    steal: float  # all CPUs, time the hypervisor gave to other guests
    own: float  # this process and its finished children


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def cpu_snapshot(path: Path = PROC_STAT) -> CpuSnapshot | None:
    """Read ``/proc/stat`` and this process's CPU times; None where ``/proc/stat`` is not readable.

    Parameters
    ----------
    path : Path
        The kernel's CPU statistics (``/proc/stat``).

    Returns
    -------
    CpuSnapshot or None
    """
    try:
        first = path.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 8:
        return None
    ticks = _clock_ticks()
    v = [float(x) / ticks for x in first[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system (idle iowait) irq softirq
    steal = v[7] if len(v) > 7 else 0.0
    t = os.times()
    return CpuSnapshot(time.monotonic(), busy, steal, t.user + t.system + t.children_user + t.children_system)


def other_load(before: CpuSnapshot | None, after: CpuSnapshot | None) -> tuple[float | None, float | None]:
    """Cores kept busy by other processes, and cores stolen by the hypervisor, between two snapshots.

    Parameters
    ----------
    before, after : CpuSnapshot or None

    Returns
    -------
    (float or None, float or None)
        Average numbers of cores over the interval (0 when nothing else ran); None without snapshots.
    """
    if before is None or after is None or after.wall <= before.wall:
        return None, None
    dt = after.wall - before.wall
    others = max(0.0, (after.busy - before.busy) - (after.own - before.own)) / dt
    return round(others, 3), round(max(0.0, after.steal - before.steal) / dt, 3)


def machine_load(interval: float = 0.5) -> dict | None:
    """How busy the machine is now: other processes' cores and steal over ``interval`` seconds, load average.

    Parameters
    ----------
    interval : float
        Seconds to watch (this process sleeps meanwhile).

    Returns
    -------
    dict or None
        ``cores``, ``other_cores``, ``steal_cores``, ``load_avg_1m`` (None where ``/proc/stat`` is missing).
    """
    a = cpu_snapshot()
    if a is None:
        return None
    time.sleep(interval)
    others, steal = other_load(a, cpu_snapshot())
    try:
        load1 = round(os.getloadavg()[0], 2)
    except OSError:
        load1 = None
    return {"cores": os.cpu_count() or 1, "other_cores": others, "steal_cores": steal, "load_avg_1m": load1}


def busy_warning(threads: int, load: dict | None) -> str | None:
    """A one-line warning when other work would disturb timing with ``threads`` threads; None when quiet.

    Parameters
    ----------
    threads : int
        Threads the timing will use.
    load : dict or None
        :func:`machine_load`'s answer.

    Returns
    -------
    str or None
    """
    if not load or load.get("other_cores") is None:
        return None
    cores, others = load["cores"], load["other_cores"]
    free = cores - others
    if others < BUSY_CORES and threads <= free:
        return None
    advice = (f"{threads} timing threads need {threads} free cores, {free:.1f} are free"
              if threads > free - BUSY_CORES else "they share caches and memory bandwidth with the timed runs")
    return (f"machine busy: other processes use {others:.1f} of {cores} cores (load average "
            f"{load.get('load_avg_1m')}); {advice}. Timings will read slower and move between runs: "
            "run alone, and check with `spaceevo validate --recheck`.")
