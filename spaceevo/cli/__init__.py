"""The ``spaceevo`` command line: one sub-app per pipeline layer, all with ``--json``."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="INT8 latency profiling, latency predictors and SpaceEvo search-space design.")

# Each module registers its commands on ``app``; modules import their heavy dependencies lazily.
_COMMAND_MODULES = ("space_cmd", "profile_cmd", "predict_cmd", "search_cmd", "train_cmd")
for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a command group still being built in this checkout
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; user errors print one line to stderr and exit 2, no traceback."""
    try:
        app(args=argv)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
