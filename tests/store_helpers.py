"""Test helpers around the latency store (crash and resume tests poll a store another process writes)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def wait_for_rows(path: str | Path, n: int, timeout: float = 60.0, table: str = "measurements") -> int:
    """Poll until ``table`` of the store at ``path`` holds at least ``n`` rows (crash tests); returns the count."""
    if table not in ("measurements", "rounds"):
        raise ValueError(f"table={table!r} is not in ['measurements', 'rounds']")
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        if Path(path).exists():
            try:
                con = sqlite3.connect(str(path), timeout=5)
                try:
                    count = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.OperationalError:
                count = 0
            if count >= n:
                return count
        time.sleep(0.1)
    return count
