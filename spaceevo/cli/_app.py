"""The typer app: one sub-app per pipeline layer, all with ``--json`` (built when a command needs it)."""

from __future__ import annotations

import typer

from . import adapt_cmd, models_cmd, predict_cmd, profile_cmd, quickstart_cmd, search_cmd, space_cmd, train_cmd, zoo_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="INT8 latency profiling, latency predictors and SpaceEvo search-space design.")

# Each module registers its commands on ``app`` and imports its heavy dependencies lazily.
for _module in (quickstart_cmd, space_cmd, profile_cmd, predict_cmd, search_cmd, train_cmd, adapt_cmd, zoo_cmd,
                models_cmd):
    _module.register(app)
