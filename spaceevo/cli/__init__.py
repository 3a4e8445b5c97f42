"""The ``spaceevo`` command line: one sub-app per pipeline layer, all with ``--json``.

``main`` first offers the command line to ``_fast`` (a plain parser for the hottest table queries, which
loads neither typer nor any model library); anything it does not fully understand goes to the typer app.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; user errors print one line to stderr and exit 2, no traceback."""
    try:
        from ._fast import run_fast

        args = sys.argv[1:] if argv is None else list(argv)
        if args in ([], ["--help"]) and "typer" not in sys.modules:
            # the command list in click's plain layout: rich's help renderer alone costs more than NumPy's import
            os.environ.setdefault("TYPER_USE_RICH", "0")
        if run_fast(args):
            return
        from ._app import app

        app(args=argv)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
