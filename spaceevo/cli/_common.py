"""Shared CLI plumbing: JSON or table output, and clean errors."""

from __future__ import annotations

import typer

from ._output import _default, console, emit, fail, table  # noqa: F401  (the typer-free half)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
