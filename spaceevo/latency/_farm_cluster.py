"""Reaching a Ray cluster for a farm run: Ray itself (an optional extra), an address that answers, the devices'
resources (``spaceevo:<name>``) present. Ray is imported here only when a farm runs."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any, Sequence

from ._pool import DeviceSpec, pool_resources

LOCAL_OBJECT_STORE = 512 * 1024 ** 2  # a local cluster's object store: converted models are small


def import_ray():
    """Ray, or an ImportError that says how to get it."""
    try:
        import ray
    except ImportError:
        raise ImportError("profiling on Ray (--ray) needs Ray, the optional 'farm' extra: "
                          "pip install 'spaceevo[farm]'") from None
    return ray


# -- connecting ------------------------------------------------------------------------------------
def check_address(address: str) -> None:
    """Fail fast, with the fix, when nothing answers at ``host:port``.

    Parameters
    ----------
    address : str
        ``HOST:PORT`` of a Ray head.

    Raises
    ------
    ValueError
        Not ``HOST:PORT``, or nothing listens there (the message says how to start a head).
    """
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray {address!r} is not an address; use HOST:PORT (the head's 'ray start --head' "
                         "address, e.g. 10.0.0.5:6379), 'auto' (a cluster started on this host) or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"--ray {address!r}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
                         f"'ray start --head --port={port}' on {host}, or try --ray local") from None


def connect(address: str, devices: Sequence[DeviceSpec], num_cpus: int | None = None,
            runtime_env: dict | None = None) -> bool:
    """Connect to (or start) the Ray cluster and check it has every device's resource; True when we started it.

    Parameters
    ----------
    address : str
        ``'local'`` (start a cluster on this machine with the devices' resources; reuse one this process
        already runs), ``'auto'`` (a cluster started on this host with ``ray start``) or ``HOST:PORT``.
    devices : sequence of DeviceSpec
        The pool; every device's resource ``spaceevo:<name>`` must exist in the cluster.
    num_cpus : int or None
        CPUs of a local cluster (conversion tasks take one each); default: this machine's.
    runtime_env : dict or None
        Ray runtime environment of the job (e.g. ``{"env_vars": {"PYTHONPATH": ...}}``).

    Raises
    ------
    ValueError
        An address that does not answer, or a cluster without a device's resource (the message names it and
        the ``ray start --resources`` flag that adds it).
    """
    ray = import_ray()
    if address not in ("local", "auto"):
        check_address(address)
    started = False
    if not ray.is_initialized():
        opts: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                "log_to_driver": False, "configure_logging": True}
        if runtime_env:
            opts["runtime_env"] = runtime_env
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, resources=pool_resources(list(devices)),
                     object_store_memory=LOCAL_OBJECT_STORE, **opts)
        else:
            try:
                ray.init(address=address, **opts)
            except ConnectionError as exc:
                raise ValueError(f"--ray {address!r}: no Ray cluster found ({str(exc).splitlines()[0]}); start one "
                                 "with 'ray start --head', pass its HOST:PORT, or try --ray local") from None
        started = True
    have = ray.cluster_resources()
    for d in devices:
        if have.get(d.resource, 0) < 1:
            where = f" on {d.host}" if d.host else ""
            flag = json.dumps(pool_resources([d]))
            if started:
                ray.shutdown()
            raise ValueError(f"pool entry {d.name!r}: the Ray cluster has no resource {d.resource!r}; start the "
                             f"node that owns the device{where} with: ray start --address=HEAD:6379 "
                             f"--resources='{flag}' (or run with --ray local)")
    return started
