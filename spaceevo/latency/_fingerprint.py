"""Host facts that make a measurement reproducible: CPU model, INT8-relevant ISA features, OS, Python."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from functools import lru_cache
from pathlib import Path

X86_FEATURES: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
ARM_FEATURES: tuple[str, ...] = ("asimddp", "i8mm", "sve", "sve2")
_ARM_NAMES = {"asimddp": "dotprod"}


def cpu_isa_features(flags: set[str]) -> dict[str, bool]:
    """The INT8-relevant ISA features present in a set of ``/proc/cpuinfo`` flags (x86 or ARM names).

    Parameters
    ----------
    flags : set of str

    Returns
    -------
    dict of str to bool
        ``avx2``, ``avx512f``, ``avx512_vnni``, ``avx_vnni``, ``amx`` (x86) or ``dotprod``, ``i8mm``, ``sve``,
        ``sve2`` (ARM).
    """
    if flags & set(ARM_FEATURES) or "asimd" in flags:
        return {_ARM_NAMES.get(f, f): f in flags for f in ARM_FEATURES}
    out = {f: f in flags for f in X86_FEATURES if not f.startswith("amx")}
    out["amx"] = "amx_int8" in flags or "amx_tile" in flags
    return out


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """CPU model name and flag set from ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features``).

    Parameters
    ----------
    text : str

    Returns
    -------
    (str, set of str)
    """
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, flags


@lru_cache(maxsize=1)
def host_cpu() -> tuple[str, frozenset[str]]:
    """This host's CPU model name and flags."""
    try:
        name, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        name, flags = "", set()
    return name or platform.processor() or platform.machine(), frozenset(flags)


def slug(text: str, words: int = 2) -> str:
    """Short lower-case id from a CPU name, e.g. ``AMD EPYC 9654`` -> ``amd-epyc``."""
    parts = re.findall(r"[a-z0-9]+", text.lower())
    parts = [w for w in parts if w not in ("processor", "cpu", "r", "tm", "core", "with")][:words]
    return "-".join(parts) or "cpu"


def cpu_slug() -> str:
    """Short id of this host's CPU, used in default device ids (``ort-amd-epyc``).

    Returns
    -------
    str
    """
    return slug(host_cpu()[0])


def host_facts() -> dict:
    """CPU model, ISA features, OS, Python and the cores this process may use.

    Returns
    -------
    dict
    """
    name, flags = host_cpu()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {"cpu": name, "machine": platform.machine(), "isa": cpu_isa_features(set(flags)),
            "os": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "allowed_cores": cores}


def fingerprint_id(fp: dict) -> str:
    """Stable 12-hex id of a fingerprint dict.

    Parameters
    ----------
    fp : dict
        A JSON-able fingerprint.

    Returns
    -------
    str
        12 hex digits of the SHA-1 of its sorted JSON.
    """
    return hashlib.sha1(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:12]
