"""CLI output without typer: JSON or rich tables, and clean one-line errors (the fast query path uses it)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def emit(data: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON, or hand it to ``render`` for people."""
    if as_json or render is None:
        sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")
    else:
        render(data)


def console():
    """A rich console on stdout."""
    from rich.console import Console

    return Console()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a rich table."""
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    console().print(t)


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr and exit with ``code`` (no traceback)."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)
