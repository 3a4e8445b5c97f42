"""The device pool of a farm: one YAML file naming every device a worker can time on.

A pool file (``farm.yaml``)::

    devices:
      - name: epyc-core0          # unique; becomes the Ray resource ``spaceevo:epyc-core0``
        backend: ort              # a registered backend: ort | tflite | adb
        cores: [0]                # host cores the timing is pinned to
      - name: pixel7-a
        backend: adb
        host: 10.0.0.7            # the Ray node the phone is plugged into (documentation and --host filter)
        serial: 28201FDH2000BY    # adb serial
        options: {benchmark_model: /opt/tflite/benchmark_model}
        dataset: adb-pixel-7      # optional: the rows' device id (default: the backend's default id)

``options`` are backend options (``threads``, ``xnnpack``, ``benchmark_model``, ...) that override the
command line's. ``local_pool`` is the pool of ``--pool local``: one device per core of this host.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from ._adb import AdbBackend
from ._backend import list_backends

RESOURCE_PREFIX = "spaceevo:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = ("name", "backend", "host", "cores", "serial", "options", "dataset")
# options that are set by an entry's own fields, never through ``options``
_OWN = {"cores": "cores", "serial": "serial"}


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """One device of the pool: a name, the backend that times on it and where it is.

    Parameters
    ----------
    name : str
        Unique device name; the Ray custom resource ``spaceevo:<name>`` stands for it.
    backend : str
        A registered backend name (``ort``, ``tflite``, ``adb``, ...).
    host : str or None
        The host (Ray node) the device belongs to; ``None``: any node that has its resource.
    cores : tuple of int or None
        Host cores the timing is pinned to (host CPU backends; phone cores for ``adb``).
    serial : str or None
        adb serial of an Android phone (``adb`` backend only, and required there).
    options : dict
        Backend options that override the command line's (``threads``, ``xnnpack``, ...).
    dataset : str or None
        The rows' device id; ``None``: the backend's default id (``ort-amd-epyc``).
    """

    name: str
    backend: str
    host: str | None = None
    cores: tuple[int, ...] | None = None
    serial: str | None = None
    options: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    dataset: str | None = None

    @property
    def resource(self) -> str:
        """The Ray custom resource that stands for this device (one unit of it)."""
        return RESOURCE_PREFIX + self.name

    def backend_opts(self, common: dict | None = None) -> dict:
        """The options of this device's backend: ``common`` (the command line's), then the entry's own."""
        opts = {k: v for k, v in (common or {}).items() if k not in ("cores", "serial")}
        opts.update(self.options)
        if self.cores is not None:
            opts["cores"] = list(self.cores)
        if self.serial is not None:
            opts["serial"] = self.serial
        return opts


def _entry_error(where: str, msg: str) -> ValueError:
    return ValueError(f"{where}: {msg}")


def parse_pool(data: Any, source: str = "pool") -> list[DeviceSpec]:
    """Validate a pool (the parsed YAML: ``{"devices": [...]}``) and return its devices.

    Raises
    ------
    ValueError
        Naming the entry (``farm.yaml devices[2] 'pixel7-a'``), the bad field, the allowed values and the fix.
    """
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list) or not data["devices"]:
        raise ValueError(f"{source}: a pool file is a mapping with a non-empty 'devices' list "
                         "(devices: [{name: cpu0, backend: ort, cores: [0]}, ...])")
    extra = sorted(set(data) - {"devices"})
    if extra:
        raise ValueError(f"{source}: unknown top-level key(s) {extra}; allowed: ['devices']")
    out: list[DeviceSpec] = []
    seen: dict[str, int] = {}
    backends = list_backends()
    for i, entry in enumerate(data["devices"]):
        where = f"{source} devices[{i}]"
        if not isinstance(entry, dict):
            raise _entry_error(where, f"each device is a mapping with {list(_KEYS)}, got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _entry_error(where, f"name={name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                                      "(starting with a letter or digit)")
        where = f"{where} {name!r}"
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise _entry_error(where, f"unknown key(s) {unknown}; allowed: {list(_KEYS)}")
        if name in seen:
            raise _entry_error(where, f"duplicate device name {name!r} (also devices[{seen[name]}]); "
                                      "give every device its own name")
        seen[name] = i
        backend = entry.get("backend")
        if backend not in backends:
            raise _entry_error(where, f"unknown backend {backend!r}; valid backends: {', '.join(backends)}")
        cores = entry.get("cores")
        if cores is not None:
            if isinstance(cores, int) and not isinstance(cores, bool):
                cores = [cores]
            if not isinstance(cores, list) or not cores or not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cores):
                raise _entry_error(where, f"cores={entry.get('cores')!r} must be a list of core numbers >= 0, "
                                          "e.g. [0] or [2, 3]")
            cores = tuple(cores)
        serial = entry.get("serial")
        if backend == "adb":
            if not isinstance(serial, str) or not serial:
                raise _entry_error(where, "an adb device needs serial: <its serial from 'adb devices'>")
        elif serial is not None:
            raise _entry_error(where, f"serial is for adb devices only (backend is {backend!r}); remove it")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise _entry_error(where, f"options={options!r} must be a mapping of backend options")
        own = sorted(set(options) & set(_OWN))
        if own:
            raise _entry_error(where, f"set {own} as the entry's own key(s), not under options")
        for key in ("host", "dataset"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise _entry_error(where, f"{key}={value!r} must be a non-empty string")
        out.append(DeviceSpec(name=name, backend=backend, host=entry.get("host"), cores=cores, serial=serial,
                              options=dict(options), dataset=entry.get("dataset")))
    return out


def load_pool(path: str | Path) -> list[DeviceSpec]:
    """Read and validate a pool file (YAML); see :func:`parse_pool`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not valid YAML or an entry is bad (the message names the entry and the fix).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of DeviceSpec
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--pool {str(path)!r} does not exist (a YAML file with a 'devices' list, "
                                "or --pool local for one device per core of this host)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"--pool {str(path)!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_pool(data, source=path.name)


def local_pool(backend: str, cores: list[int] | None = None, serials: list[str] | None = None) -> list[DeviceSpec]:
    """The pool of ``--pool local``: one ``backend`` device per core of this host (``<backend>-core<N>``).

    For ``adb`` it is one device per attached phone (``serials``, default: ``adb devices``).

    Parameters
    ----------
    backend : str
        A registered backend name.
    cores : list of int, optional
        The cores (default: those this process may use).
    serials : list of str, optional
        ``adb`` only: the phones (default: ``adb devices``).

    Returns
    -------
    list of DeviceSpec

    Raises
    ------
    ValueError
        Unknown backend, or no phone attached for ``adb``.
    """
    if backend not in list_backends():
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(list_backends())}")
    if backend == "adb":
        if serials is None:
            serials = AdbBackend().devices()
        if not serials:
            raise ValueError("--pool local with --backend adb: no phone is attached ('adb devices' lists none)")
        return [DeviceSpec(name=f"adb-{re.sub(r'[^A-Za-z0-9_.-]', '-', s)}", backend="adb", serial=s)
                for s in serials]
    if cores is None:
        cores = (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else list(range(os.cpu_count() or 1)))
    return [DeviceSpec(name=f"{backend}-core{c}", backend=backend, cores=(c,)) for c in cores]


def pool_resources(devices: list[DeviceSpec], host: str | None = None) -> dict[str, float]:
    """The Ray custom resources of the devices on ``host`` (all when None): ``ray start --resources`` JSON."""
    return {d.resource: 1.0 for d in devices if host is None or d.host == host}
