"""What runs on the Ray workers of a farm: conversion tasks (anywhere) and the actor that holds one device."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import numpy as np

from ._backend import _BACKENDS, create_backend, register_backend
from ._profile import default_device


def _cause(exc: BaseException) -> BaseException:
    """The user's exception inside a Ray error, when there is one."""
    return getattr(exc, "cause", None) or exc


def _message(exc: BaseException) -> str:
    cause = _cause(exc)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()[:2000]


# -- the remote side -------------------------------------------------------------------------------
_WORKER_BACKENDS: dict[str, Any] = {}


def _worker_backend(backend: str, target: str, opts: dict):
    """A backend instance in a Ray worker (registered there first when it is a plug-in), cached per options."""
    if backend not in _BACKENDS or _BACKENDS.get(backend) != target:
        register_backend(backend, target)
    key = json.dumps([backend, opts], sort_keys=True, default=str)
    if key not in _WORKER_BACKENDS:
        _WORKER_BACKENDS[key] = create_backend(backend, **opts)
    return _WORKER_BACKENDS[key]


def _convert(backend: str, target: str, opts: dict, unit, dtype: str):
    """Conversion task (runs anywhere): the artifact a device times."""
    return _worker_backend(backend, target, opts).prepare(unit, dtype)


class DeviceWorker:
    """The actor that holds one device: times chunks of units under the protocol and streams every round."""

    def __init__(self, name: str, backend: str, target: str, opts: dict) -> None:
        if backend not in _BACKENDS or _BACKENDS.get(backend) != target:
            register_backend(backend, target)
        self.name = name
        self.be = create_backend(backend, **opts)

    def ready(self, dtypes: list[str], rounds: int) -> dict:
        """Check the device (raises naming what is missing) and describe it: fingerprints, default id, pid."""
        self.be.require()
        fps = {}
        for d in dtypes:
            fp = self.be.fingerprint(d)
            if rounds > 1:
                fp["protocol"]["rounds"] = rounds
            fps[d] = fp
        return {"pid": os.getpid(), "host": socket.gethostname(), "fingerprints": fps,
                "default_device": default_device(self.be), "threads": self.be.threads, "backend": self.be.name}

    def run_chunk(self, items: list, refs: list, have: list, rounds: int, seed: list):
        """Time ``items`` (unit, dtype) in ``rounds`` interleaved rounds; yields one event per round or failure.

        ``refs`` are the conversion results (ObjectRefs, fetched when first needed); ``have[i]`` are the rounds
        of item ``i`` already stored. Events: ``("round", i, r, stats)``, ``("error", i, message, stage)`` and
        last ``("done", timing_s, waiting_s)``.
        """
        import ray

        rng = np.random.default_rng(seed)
        arts: dict[int, Any] = {}
        dropped: set[int] = set()
        busy = wait = 0.0
        for r in range(rounds):
            for i in rng.permutation(len(items)):
                i = int(i)
                if i in dropped or r in have[i]:
                    continue
                if i not in arts:
                    t0 = time.perf_counter()
                    try:
                        arts[i] = ray.get(refs[i][0])
                    except Exception as exc:  # conversion failed: recorded as failed, as run_profile does
                        wait += time.perf_counter() - t0
                        dropped.add(i)
                        yield ("error", i, _message(exc), "convert")
                        continue
                    wait += time.perf_counter() - t0
                t0 = time.perf_counter()
                try:
                    stats = self.be.measure_artifact(arts[i])
                except Exception as exc:  # a timing error: the driver decides (unit or device)
                    busy += time.perf_counter() - t0
                    dropped.add(i)
                    del arts[i]
                    yield ("error", i, _message(exc), "time")
                    continue
                busy += time.perf_counter() - t0
                yield ("round", i, r, stats)
        yield ("done", busy, wait)
