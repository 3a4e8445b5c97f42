"""``spaceevo qt-score | search-space | search-subnet``: the Q-T score, evolution over spaces, subnet search."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, console, emit
from ._queries import _check_constraints, _space, _tables, _warn, qt_score

_LUT = typer.Option(..., "--lut-dir", help="block look-up tables (folder holding <hyperspace>/stage{S}_{B}_{W}.csv)")
_PRED = typer.Option(None, "--predictor", help="predictor name or file: recompute every table row's latency with it")
_LAT = typer.Option(None, "--latency", help="'table' (the tables' column; fixed stages from --predictor or the "
                   "device's built-in) or 'predictor' (needs --predictor); default: predictor when given, else table")


def register(app: typer.Typer) -> None:
    """Add ``qt-score``, ``search-space`` and ``search-subnet`` to ``app``."""

    @app.command("qt-score")
    def qt_score_cmd(space: str = typer.Argument(..., help="search space, e.g. onnxw-151122-023231"),
                     lut_dir: Path = _LUT,
                     constraint: Optional[list[float]] = typer.Option(None, "--constraint", help="latency constraint (ms); repeatable"),
                     predictor: Optional[str] = _PRED, latency: Optional[str] = _LAT,
                     samples: int = typer.Option(100_000, "--samples", help="sampled subnets per score"),
                     seed: int = typer.Option(0, "--seed"),
                     repeats: int = typer.Option(1, "--repeats", help="also score with seeds seed..seed+R-1 and report the sampling error"),
                     as_json: bool = JsonOpt) -> None:
        """Q-T score of a search space (SPACEEVO.md section 6) for one or more latency constraints."""
        qt_score(space, lut_dir, constraint, predictor, latency, samples, seed, repeats, as_json)

    @app.command("search-space")
    def search_space_cmd(hyperspace: str = typer.Option(..., "--hyperspace", help="onnxw or mobilew"),
                         lut_dir: Path = _LUT,
                         constraint: Optional[list[float]] = typer.Option(None, "--constraint", help="latency constraint (ms); repeatable"),
                         predictor: Optional[str] = _PRED, latency: Optional[str] = _LAT,
                         evaluations: int = typer.Option(5000, "--evaluations", help="spaces to evaluate in total"),
                         population: int = typer.Option(500, "--population"),
                         tournament: int = typer.Option(125, "--tournament", help="tournament sample size"),
                         samples: int = typer.Option(100_000, "--samples", help="sampled subnets per score"),
                         seed: int = typer.Option(0, "--seed"),
                         checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="JSON checkpoint to write"),
                         resume: Optional[Path] = typer.Option(None, "--resume", help="checkpoint to resume from (and keep writing)"),
                         checkpoint_every: int = typer.Option(250, "--checkpoint-every"),
                         top: int = typer.Option(10, "--top", help="how many spaces to report"),
                         plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of best score against evaluations"),
                         progress: bool = typer.Option(True, "--progress/--no-progress"),
                         as_json: bool = JsonOpt) -> None:
        """Aging evolution over the search spaces of a hyperspace by Q-T score (SPACEEVO.md section 7)."""
        from spaceevo.search import SpaceEvolution
        from spaceevo.space import get_hyperspace

        get_hyperspace(hyperspace)
        cons = _check_constraints(constraint)
        tabs = _tables(lut_dir, hyperspace, predictor, latency)
        evo = SpaceEvolution(tabs, cons, population, tournament, evaluations, samples, seed,
                             checkpoint=checkpoint or resume, checkpoint_every=checkpoint_every,
                             progress=progress and not as_json)
        res = evo.run(resume=resume)
        if plot is not None:
            res.plot(plot)
        out = res.to_dict(top)
        out["plot"] = str(plot) if plot else None
        out["checkpoint"] = str(checkpoint or resume) if (checkpoint or resume) else None
        if not as_json:
            out.pop("best_curve")
        emit(out, as_json, _render_spaces)

    @app.command("search-subnet")
    def search_subnet_cmd(space: str = typer.Option(..., "--space", help="search space, e.g. onnxw-151122-023231"),
                          lut_dir: Path = _LUT,
                          predictor: str = typer.Option(..., "--predictor", help="predictor name or file"),
                          constraint: Optional[list[float]] = typer.Option(None, "--constraint", help="latency constraint (ms); repeatable"),
                          population: int = typer.Option(512, "--population"),
                          iterations: int = typer.Option(30, "--iterations"),
                          seed: int = typer.Option(0, "--seed"),
                          plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of the latency/loss Pareto front"),
                          as_json: bool = JsonOpt) -> None:
        """Evolutionary search for the lowest summed block loss with predicted latency <= T."""
        from spaceevo.predictors import load_predictor
        from spaceevo.search import QTTables, SubnetSearch, pareto_front, plot_pareto

        sp = _space(space)
        cons = _check_constraints(constraint)
        pred = load_predictor(predictor)
        tabs = QTTables.load(lut_dir, sp.hyperspace.name, fixed_predictor=pred, latency="table")
        srch = SubnetSearch(sp, tabs, pred, population_size=population, iterations=iterations, seed=seed)
        chosen = {}
        for T in cons:
            c = srch.search(T)
            chosen[T] = c
            if c is None:
                _warn(f"no subnet of {sp} found with predicted latency <= {T:g} ms")
        front = pareto_front(srch.evaluated)
        if plot is not None:
            plot_pareto(srch.evaluated, front, chosen, plot, title=f"{sp} ({getattr(pred, 'device', predictor)})")
        out = {"space": str(sp), "predictor": str(predictor), "evaluated": len(srch.evaluated),
               "chosen": [{"constraint_ms": T, **(vars(c) if c else {"subnet": None})} for T, c in chosen.items()],
               "pareto_front": [vars(c) for c in front], "plot": str(plot) if plot else None}
        emit(out, as_json, _render_subnets)


def _wide_table(title: str, columns: list[str], rows: list[list], keep: int) -> None:
    """A rich table whose column ``keep`` (an encoding) is never truncated or wrapped."""
    from rich.table import Table

    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, no_wrap=i == keep, min_width=len(str(rows[0][i])) if (rows and i == keep) else None)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    console().print(t)


def _render_spaces(d: dict) -> None:
    rows = []
    for i, t in enumerate(d["top"], 1):
        rows.append([i, t["space"], f"{t['score']:.5f}", ", ".join(f"{x:.4f}" for x in t["latency_penalty"]),
                     ", ".join(f"{x:.4f}" for x in t["top_loss"]), f"{t['min_latency_ms']:.2f}",
                     f"{t['max_latency_ms']:.2f}"])
    c = d["config"]
    _wide_table(f"top spaces of {c['hyperspace']} (T={c['constraints']} ms, latency {c['latency']}; "
                f"{d['evaluations']} evaluations, {d['distinct_spaces']} distinct)",
                ["#", "space", "score", "latency penalty", "top loss", "min ms", "max ms"], rows, keep=1)
    if d.get("plot"):
        sys.stdout.write(f"plot: {d['plot']}\n")


def _render_subnets(d: dict) -> None:
    rows = [[i, f"{c['latency_ms']:.3f}", f"{c['loss']:.4f}", c["resolution"], c["subnet"].split("_")[0]]
            for i, c in enumerate(d["pareto_front"], 1)]
    _wide_table(f"Pareto front of {d['space']} ({d['evaluated']} subnets evaluated; full encodings with --json)",
                ["#", "latency (ms)", "loss", "res", "depths"], rows, keep=4)
    for c in d["chosen"]:
        if c.get("subnet"):
            sys.stdout.write(f"T={c['constraint_ms']:g} ms: loss {c['loss']:.4f}, {c['latency_ms']:.3f} ms, "
                             f"{c['subnet']}\n")
        else:
            sys.stdout.write(f"T={c['constraint_ms']:g} ms: no subnet found\n")
    if d.get("plot"):
        sys.stdout.write(f"plot: {d['plot']}\n")
