"""The latency dataset: an SQLite file (WAL), one row per (unit, device, dtype, threads).

Every measurement is committed in its own transaction, so a process killed at any moment loses at
most the unit in flight; a UNIQUE constraint makes reruns skip (or, for failed rows, replace)
what is already there and never duplicate a row. A unit timed in several rounds (sessions spread
over the run) has one ``rounds`` row per finished round with its raw samples, so a killed run
loses at most the round in flight and a rerun times only the missing rounds.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 4
STAT_FIELDS: tuple[str, ...] = ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "cv", "n", "attempts", "loops",
                               "rounds", "round_cv", "ratio", "ref_ms", "ref_min_ms", "other_cpu", "steal")
FLAT_FIELDS: tuple[str, ...] = ("hw", "cin", "cout", "k", "e", "stride", "act")
COLUMNS: tuple[str, ...] = (
    "id", "kind", "type", *FLAT_FIELDS, "macs", "config", "key", "device", "backend", "dtype", "threads",
    *STAT_FIELDS, "status", "error", "fingerprint_id", "seed", "created_at",
)
STATUSES: tuple[str, ...] = ("ok", "failed")
DEVICE_STATUSES: tuple[str, ...] = ("ok", "quarantined")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (
    id TEXT PRIMARY KEY, backend TEXT NOT NULL, json TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('block', 'kernel', 'model')),
    type TEXT NOT NULL,
    hw INTEGER, cin INTEGER, cout INTEGER, k INTEGER, e REAL, stride INTEGER, act TEXT, macs INTEGER,
    config TEXT NOT NULL,
    key TEXT NOT NULL,
    device TEXT NOT NULL, backend TEXT NOT NULL, dtype TEXT NOT NULL, threads INTEGER NOT NULL,
    median_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, p90_ms REAL, cv REAL,
    n INTEGER, attempts INTEGER, loops INTEGER, rounds INTEGER, round_cv REAL,
    ratio REAL, ref_ms REAL, ref_min_ms REAL, other_cpu REAL, steal REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    fingerprint_id TEXT REFERENCES fingerprints(id),
    seed INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (kind, key, device, dtype, threads)
);
CREATE INDEX IF NOT EXISTS measurements_device ON measurements (device, dtype, status);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, key TEXT NOT NULL, device TEXT NOT NULL, dtype TEXT NOT NULL, threads INTEGER NOT NULL,
    round INTEGER NOT NULL, stats TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (kind, key, device, dtype, threads, round)
);
CREATE TABLE IF NOT EXISTS farm_devices (
    name TEXT PRIMARY KEY, device TEXT, backend TEXT NOT NULL, fingerprint_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'quarantined')), reason TEXT, updated_at TEXT NOT NULL
);
"""
_MIGRATIONS = {  # from version -> statements that bring a store to the next version
    1: ("ALTER TABLE measurements ADD COLUMN rounds INTEGER", "ALTER TABLE measurements ADD COLUMN round_cv REAL"),
    2: ("ALTER TABLE measurements ADD COLUMN ratio REAL", "ALTER TABLE measurements ADD COLUMN ref_ms REAL",
        "ALTER TABLE measurements ADD COLUMN ref_min_ms REAL"),
    3: ("ALTER TABLE measurements ADD COLUMN other_cpu REAL", "ALTER TABLE measurements ADD COLUMN steal REAL"),
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _check(name: str, value: Any, allowed: Iterable[str]) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name}={value!r} is not in {list(allowed)}")


class LatencyStore:
    """An SQLite latency dataset (WAL journal); created on first use.

    Parameters
    ----------
    path : str or Path
        The SQLite file (its folder is created; an older schema is migrated).
    timeout : float
        Seconds to wait for a lock held by another writer.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() in (".csv", ".parquet"):
            raise ValueError(f"db={str(path)!r} looks like an export; the store is an SQLite file (e.g. x.db)")
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None

    # -- connection ----------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (WAL, foreign keys on); the schema is created if needed."""
        if self._conn is None:
            if self.path.exists() and self.path.is_dir():
                raise ValueError(f"db={str(self.path)!r} is a directory, not an SQLite file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=self.timeout)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process never loses a commit
                conn.execute("PRAGMA foreign_keys=ON")
                with conn:
                    fresh = not conn.execute("SELECT 1 FROM sqlite_master WHERE name='measurements'").fetchone()
                    if fresh:
                        conn.executescript(_DDL)
                        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                     (str(SCHEMA_VERSION),))
                self._migrate(conn)
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise ValueError(f"db={str(self.path)!r} is not a spaceevo latency store ({exc})") from None
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            if int(version) != SCHEMA_VERSION:
                conn.close()
                raise ValueError(f"db={str(self.path)!r} has schema version {version}; this spaceevo reads "
                                 f"version {SCHEMA_VERSION}")
            self._conn = conn
        return self._conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring a store written by an older spaceevo to :data:`SCHEMA_VERSION` (one transaction per step)."""
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else SCHEMA_VERSION
        while version in _MIGRATIONS and version < SCHEMA_VERSION:
            with conn:
                for stmt in _MIGRATIONS[version]:
                    conn.execute(stmt)
                version += 1
                conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
        with conn:
            conn.executescript(_DDL)  # tables and indexes added since (IF NOT EXISTS)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "LatencyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def add_fingerprint(self, fp_id: str, fingerprint: dict) -> str:
        """Record a device fingerprint (idempotent); returns its id."""
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?, ?)",
                              (fp_id, str(fingerprint.get("backend", "")), json.dumps(fingerprint, sort_keys=True),
                               _now()))
        return fp_id

    def add(self, unit, device: str, backend: str, dtype: str, threads: int, stats: Any = None,
            error: str | None = None, fingerprint_id: str | None = None, seed: int | None = None) -> None:
        """Write one measurement (``stats``: a TimingStats or dict) or one failure (``error``) atomically.

        An existing row for the same (unit, device, dtype, threads) is replaced.
        """
        status = "ok" if error is None else "failed"
        if status == "ok" and stats is None:
            raise ValueError("add() needs stats for an ok row, or error for a failed one")
        s = stats.as_dict() if hasattr(stats, "as_dict") else dict(stats or {})
        flat = dict(getattr(unit, "flat", None) or {})
        try:
            macs = int(unit.macs)
        except Exception:  # a unit without a MAC count
            macs = None
        row = {"kind": unit.kind, "type": unit.type, **{f: flat.get(f) for f in FLAT_FIELDS}, "macs": macs,
               "config": json.dumps(unit.config, sort_keys=True), "key": unit.key, "device": device,
               "backend": backend, "dtype": dtype, "threads": int(threads),
               **{f: s.get(f) for f in STAT_FIELDS}, "status": status, "error": error,
               "fingerprint_id": fingerprint_id, "seed": seed, "created_at": _now()}
        cols = list(row)
        sql = (f"INSERT OR REPLACE INTO measurements ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' * len(cols))})")
        with self.conn:
            self.conn.execute(sql, [row[c] for c in cols])

    def add_round(self, unit, device: str, dtype: str, threads: int, round: int, stats: Any) -> None:
        """Write one finished timing round (a TimingStats with its raw samples) of a unit, atomically."""
        d = stats.as_dict(samples=True) if hasattr(stats, "as_dict") else dict(stats)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO rounds (kind, key, device, dtype, threads, round, stats, "
                              "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (unit.kind, unit.key, device, dtype, int(threads), int(round), json.dumps(d), _now()))

    def rounds_done(self, device: str, dtype: str, threads: int) -> dict[tuple[str, str], dict[int, dict]]:
        """Finished timing rounds of units without a final row: ``{(kind, key): {round: stats with samples}}``."""
        out: dict[tuple[str, str], dict[int, dict]] = {}
        sql = ("SELECT kind, key, round, stats FROM rounds r WHERE device=? AND dtype=? AND threads=? AND NOT EXISTS "
               "(SELECT 1 FROM measurements m WHERE m.kind=r.kind AND m.key=r.key AND m.device=r.device "
               "AND m.dtype=r.dtype AND m.threads=r.threads)")
        for kind, key, rnd, stats in self.conn.execute(sql, (device, dtype, int(threads))):
            out.setdefault((kind, key), {})[int(rnd)] = json.loads(stats)
        return out

    def read_rounds(self, device: str | None = None, dtype: str | None = None, threads: int | None = None,
                    stats: bool = False):
        """Finished timing rounds as a ``pandas.DataFrame``: kind, key, device, dtype, threads, round, created_at.

        ``created_at`` (ISO time, ms) is when the round was stored, so the gaps between consecutive rounds of
        a run are what timing each round cost; ``stats=True`` adds the round's statistics (dicts, with samples).
        """
        import pandas as pd

        where, args = [], []
        for col, value in (("device", device), ("dtype", dtype), ("threads", threads)):
            if value is not None:
                where.append(f"{col}=?")
                args.append(int(value) if col == "threads" else value)
        cols = "kind, key, device, dtype, threads, round, created_at" + (", stats" if stats else "")
        sql = f"SELECT {cols} FROM rounds" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        df = pd.read_sql_query(sql, self.conn, params=args)
        if stats:
            df["stats"] = [json.loads(s) for s in df["stats"]]
        return df

    def set_device_status(self, name: str, backend: str, status: str = "ok", reason: str | None = None,
                          device: str | None = None, fingerprint_id: str | None = None) -> None:
        """Record a farm device's state: ``ok``, or ``quarantined`` with the reason (the last state is kept).

        Parameters
        ----------
        name : str
            The device's name in the pool file.
        backend : str
            Its backend.
        status : str
            ``'ok'`` or ``'quarantined'``.
        reason : str or None
            Why it was quarantined.
        device, fingerprint_id : str or None
            The dataset (rows' device id) and the fingerprint it times for.
        """
        _check("status", status, DEVICE_STATUSES)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO farm_devices VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (name, device, backend, fingerprint_id, status, reason, _now()))

    def device_status(self) -> dict[str, dict]:
        """The farm devices recorded in this store: ``{name: {device, backend, fingerprint_id, status, reason}}``."""
        sql = ("SELECT name, device, backend, fingerprint_id, status, reason, updated_at FROM farm_devices "
               "ORDER BY name")
        return {n: {"device": d, "backend": b, "fingerprint_id": f, "status": s, "reason": r, "updated_at": u}
                for n, d, b, f, s, r, u in self.conn.execute(sql)}

    # -- reading -------------------------------------------------------------------------------
    def done(self, device: str, dtype: str, threads: int, include_failed: bool = True) -> set[tuple[str, str]]:
        """``(kind, key)`` of units already measured for this device/dtype/threads."""
        sql = "SELECT kind, key FROM measurements WHERE device=? AND dtype=? AND threads=?"
        if not include_failed:
            sql += " AND status='ok'"
        return {(k, key) for k, key in self.conn.execute(sql, (device, dtype, int(threads)))}

    def read_measurements(self, device: str | None = None, dtype: str | None = None, kind: str | None = None,
                          status: str | None = "ok"):
        """Rows as a ``pandas.DataFrame`` (all columns), filtered by device, dtype, kind and status."""
        import pandas as pd

        _check("kind", kind, ("block", "kernel", "model"))
        _check("status", status, STATUSES)
        where, args = [], []
        for col, value in (("device", device), ("dtype", dtype), ("kind", kind), ("status", status)):
            if value is not None:
                where.append(f"{col}=?")
                args.append(value)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        df = pd.read_sql_query(sql, self.conn, params=args)
        return df[list(COLUMNS)]

    def fingerprints(self) -> dict[str, dict]:
        """All recorded fingerprints by id."""
        return {i: json.loads(j) for i, j in self.conn.execute("SELECT id, json FROM fingerprints")}

    def count(self) -> int:
        """Number of rows."""
        return int(self.conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``'ok'`` when sound)."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def info(self) -> dict:
        """Counts per type/device/dtype/status and the CV distribution (JSON-ready)."""
        import numpy as np

        df = self.read_measurements(status=None)
        ok = df[df["status"] == "ok"]
        cv = ok["cv"].dropna().to_numpy(dtype=float)
        q = (lambda p: float(np.percentile(cv, p))) if cv.size else (lambda p: None)
        rc = ok["round_cv"].dropna().to_numpy(dtype=float)
        rcv = float(np.median(rc)) if rc.size else None
        groups = []
        if len(df):
            g = df.groupby(["device", "dtype", "kind", "type", "status"]).size().reset_index(name="rows")
            groups = g.to_dict("records")
        return {"db": str(self.path), "rows": int(len(df)), "ok": int(len(ok)),
                "failed": int((df["status"] == "failed").sum()),
                "devices": sorted(df["device"].unique().tolist()), "dtypes": sorted(df["dtype"].unique().tolist()),
                "median_cv": q(50), "cv_p90": q(90), "cv_max": float(cv.max()) if cv.size else None,
                "cv_over_5pct": int((cv > 0.05).sum()), "median_round_cv": rcv,
                "fingerprints": len(self.fingerprints()),
                "groups": groups}

    def export(self, out: str | Path, status: str | None = None) -> int:
        """Write the rows to ``.parquet`` or ``.csv`` (by suffix); returns the number of rows."""
        out = Path(out)
        df = self.read_measurements(status=status)
        if out.suffix == ".parquet":
            try:
                df.to_parquet(out, index=False)
            except ImportError as exc:
                raise ImportError(f"writing Parquet needs pyarrow: pip install 'spaceevo[parquet]' ({exc})") from None
        elif out.suffix == ".csv":
            df.to_csv(out, index=False)
        else:
            raise ValueError(f"-o {str(out)!r}: the export format is chosen by suffix; allowed: .parquet, .csv")
        return int(len(df))


def read_rows(path: str | Path, device: str | None = None, dtype: str | None = None):
    """The ok rows of a latency store (SQLite), or all rows of its CSV / Parquet export, of one device and dtype.

    Parameters
    ----------
    path : str or Path
        A store, or a ``.csv`` / ``.parquet`` export of one (``LatencyStore.export``).
    device, dtype : str, optional
        Only these rows.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--db {str(path)!r} does not exist")
    if p.suffix in (".csv", ".parquet"):
        df = pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
        if device is not None and "device" in df.columns:
            df = df[df["device"] == device]
        if dtype is not None and "dtype" in df.columns:
            df = df[df["dtype"] == dtype]
        return df
    return LatencyStore(p).read_measurements(device=device, dtype=dtype, kind=None, status="ok")

