"""Fusion rules measured on a device, kept in its latency store (the ``meta`` table), next to its rows."""

from __future__ import annotations

import json

from .store import LatencyStore

_PREFIX = "fusion_rules"


def _key(device: str, backend: str, dtype: str) -> str:
    return f"{_PREFIX}:{device}:{backend}:{dtype}"


def save_fusion_rules(store: LatencyStore, rules: dict) -> str:
    """Store ``rules`` (with their ``device``, ``backend`` and ``dtype``) in the store; returns the key.

    Parameters
    ----------
    store : LatencyStore
    rules : dict
        From ``spaceevo.latency.measure_fusion_rules``.

    Returns
    -------
    str
        The ``meta`` key they are stored under.

    Raises
    ------
    ValueError
        ``rules`` lack ``device``, ``backend`` or ``dtype``.
    """
    missing = [f for f in ("device", "backend", "dtype") if not rules.get(f)]
    if missing:
        raise ValueError(f"fusion rules lack {missing}: measure them with spaceevo fusion-rules")
    key = _key(rules["device"], rules["backend"], rules["dtype"])
    with store.conn:
        store.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(rules, sort_keys=True)))
    return key


def load_fusion_rules(store: LatencyStore, device: str, backend: str, dtype: str) -> dict | None:
    """The rules measured for ``device``/``backend``/``dtype`` in this store, or None.

    Parameters
    ----------
    store : LatencyStore
    device : str
    backend : str
    dtype : str

    Returns
    -------
    dict or None
    """
    row = store.conn.execute("SELECT value FROM meta WHERE key=?", (_key(device, backend, dtype),)).fetchone()
    return json.loads(row[0]) if row else None


def stored_fusion_rules(store: LatencyStore) -> list[dict]:
    """Every set of rules in the store.

    Parameters
    ----------
    store : LatencyStore

    Returns
    -------
    list of dict
    """
    rows = store.conn.execute("SELECT value FROM meta WHERE key LIKE ?", (_PREFIX + ":%",)).fetchall()
    return [json.loads(r[0]) for r in rows]
