"""The on-disk query cache: compiled NumPy arrays under ``$SPACEEVO_HOME``, keyed by digests of their inputs.

A query that only needs a table look-up (one subnet's latency, a Q-T score) should not pay for parsing a
predictor or a hundred CSV files each time: what it needs is compiled once into an ``.npz`` file named by a
digest of everything it was computed from (the predictor file's bytes, the search space, the table files).
A changed input gives a new key, hence a rebuild. Files are written to a temporary file in the same folder
and renamed into place (``os.replace``), so concurrent builders never expose half a file; the last rename
wins and every reader sees one complete file. A file that fails to load or does not carry the expected key
is reported with a warning and rebuilt, never trusted. No pickles: ``allow_pickle=False`` throughout.

This module imports NumPy and the standard library only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: bump when the layout of any cached file changes (old files then simply stop matching)
CACHE_FORMAT = 1
NO_CACHE_ENV = "SPACEEVO_NO_CACHE"
_KEY = "__cache_key__"


class CacheWarning(UserWarning):
    """A cache file was unreadable or did not match its key; it is rebuilt."""


def spaceevo_home() -> Path:
    """``$SPACEEVO_HOME`` (default ``~/.cache/spaceevo``): predictors, caches and quick-start data live under it.

    Returns
    -------
    Path
    """
    home = os.environ.get("SPACEEVO_HOME") or Path.home() / ".cache" / "spaceevo"
    return Path(home)


def cache_dir(kind: str) -> Path:
    """``$SPACEEVO_HOME/cache/<kind>``: the folder of one kind of compiled query data.

    Parameters
    ----------
    kind : str

    Returns
    -------
    Path
    """
    return spaceevo_home() / "cache" / kind


def cache_enabled() -> bool:
    """False when ``$SPACEEVO_NO_CACHE`` is set to anything but ``''``/``0``: every query then computes afresh.

    Returns
    -------
    bool
    """
    return os.environ.get(NO_CACHE_ENV, "").strip() in ("", "0")


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised per process by path, size and modification time).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
    """
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        _DIGESTS[memo] = hashlib.sha256(p.read_bytes()).hexdigest()
    return _DIGESTS[memo]


def stat_digest(paths: Iterable[str | Path]) -> str:
    """A cheap digest of many files: resolved path, size and modification time (ns) of each.

    Parameters
    ----------
    paths : iterable of str or Path

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(*parts: object) -> str:
    """One hex digest of ``parts`` (their ``str``) and the cache format version.

    Parameters
    ----------
    *parts : object

    Returns
    -------
    str
    """
    h = hashlib.sha256(f"spaceevo-cache-{CACHE_FORMAT}".encode())
    for part in parts:
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()


def save_arrays(path: str | Path, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``key`` to ``path`` (.npz) atomically: a temporary file, then ``os.replace``.

    Parameters
    ----------
    path : str or Path
    key : str
    arrays : mapping of str to numpy.ndarray

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_KEY: np.array(key)}, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_arrays(path: str | Path, key: str, required: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or ``None`` when it is absent; a corrupt or mismatched file warns, gives None.

    Every array is read into memory (no lazy members, no pickles); the file must carry ``key`` and
    every name in ``required``.

    Parameters
    ----------
    path : str or Path
    key : str
        ``cache_key`` of the inputs.
    required : iterable of str

    Returns
    -------
    dict of str to numpy.ndarray, or None
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {name: data[name] for name in data.files}
        stored = out.pop(_KEY, None)
        if stored is None or str(stored) != key:
            raise ValueError("its key does not match its inputs")
        missing = [r for r in required if r not in out]
        if missing:
            raise ValueError(f"it lacks the arrays {missing}")
        return out
    except Exception as exc:  # any unreadable file: zip errors, truncation, wrong contents
        invalid(path, f"{type(exc).__name__}: {exc}")
        return None


def invalid(path: str | Path, reason: str) -> None:
    """Report a cache file that cannot be trusted (it is rebuilt by the caller).

    Parameters
    ----------
    path : str or Path
    reason : str
    """
    msg = f"cache file {str(path)!r} is corrupt or stale ({reason}); rebuilding it"
    log.warning(msg)
    warnings.warn(msg, CacheWarning, stacklevel=3)


__all__ = ["CACHE_FORMAT", "CacheWarning", "NO_CACHE_ENV", "cache_dir", "cache_enabled", "cache_key", "file_digest",
           "invalid", "load_arrays", "save_arrays", "spaceevo_home", "stat_digest"]
