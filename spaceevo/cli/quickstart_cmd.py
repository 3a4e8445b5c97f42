"""``spaceevo quickstart``: profile this CPU in INT8, train its predictor, predict subnets (the README's command 1)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from spaceevo.latency import MODEL_ROUNDS, ROUND_REPEATS, ROUNDS

from ._common import JsonOpt, emit, table


def _render(d: dict) -> None:
    p = d["profile"]
    cv = "n/a" if p["median_cv"] is None else f"{100 * p['median_cv']:.2f}%"
    table(f"profiled {p['device']} (onnxruntime INT8, 1 thread)",
          ["units", "measured now", "already in store", "failed", "median CV", "time (s)"],
          [[p["units"], p["measured"], p["skipped"], p["failed"], cv, p["seconds"]]])
    h = d["heldout"]
    table(f"unseen subnets of {d['space']} at r{d['resolution']}: measured whole vs predicted by "
          f"{d['predictor']['name']}",
          ["subnet", "measured (ms)", "predicted (ms)", "error"],
          [[r["subnet"], f"{r['measured_ms']:.3f}", f"{r['predicted_ms']:.3f}", f"{100 * r['rel_error']:+.1f}%"]
           for r in h["subnets"]])
    if h["metrics"]:
        m = h["metrics"]
        typer.echo(f"held-out: MAPE {m['mape']:.1f}%, within +-10% {m['acc_10pct']:.0f}%, "
                   f"Kendall tau {m['kendall_tau']:.2f}")
    if d["published"]:
        table("published SpaceEvo subnets: predicted INT8 latency",
              ["subnet", "space", "this CPU (ms)", "paper's VNNI CPU (ms, built-in vnni-ort-int8)"],
              [[r["name"], r["space"], f"{r['this_cpu_ms']:.3f}", f"{r['vnni_paper_cpu_ms']:.3f}"]
               for r in d["published"]])
    typer.echo(f"predictor saved as {d['predictor']['name']} ({d['predictor']['path']}); try\n"
               f"  spaceevo predict SUBNET --space {d['space']} --predictor {d['predictor']['name']}\n"
               f"done in {d['seconds']} s; measurements in {d['workdir']}/latency.db (a rerun resumes)")


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to ``app``."""

    @app.command("quickstart")
    def quickstart(
        workdir: Optional[Path] = typer.Option(None, "--workdir",
                                               help="where the dataset goes (default $SPACEEVO_HOME/quickstart)"),
        space: str = typer.Option("onnxw-151122-023231", "--space", help="onnxw search space to sample"),
        resolution: int = typer.Option(160, "--resolution", help="input resolution of the sampled subnets"),
        train_subnets: int = typer.Option(8, "--train-subnets", help="random subnets whose blocks and whole models "
                                                                      "train the predictor"),
        test_subnets: int = typer.Option(5, "--test-subnets", help="unseen subnets measured whole to check it"),
        repeats: int = typer.Option(ROUND_REPEATS, "--repeats", help="timed samples per session"),
        rounds: int = typer.Option(ROUNDS, "--rounds", help="sessions per block, spread over the run"),
        model_rounds: int = typer.Option(MODEL_ROUNDS, "--model-rounds",
                                         help="sessions per whole subnet (their rounds scatter more)"),
        target: str = typer.Option("min_ms", "--target",
                                   help="statistic the predictor learns: min_ms (fastest sample over the spread "
                                        "sessions) or norm_ms (relative to the reference block)"),
        seed: int = typer.Option(0, "--seed"),
        published: Optional[Path] = typer.Option(None, "--published",
                                                 help="search_result.yaml of the SpaceEvo authors (default: "
                                                      "../shared/data/spaceevo when present)"),
        as_json: bool = JsonOpt,
    ) -> None:
        """Profile this CPU in INT8 (onnxruntime), train its latency predictor and predict subnets with it."""
        from spaceevo.quickstart import run_quickstart

        data = run_quickstart(workdir=workdir, space=space, resolution=resolution, train_subnets=train_subnets,
                              test_subnets=test_subnets, repeats=repeats, rounds=rounds, seed=seed, published=published,
                              model_rounds=model_rounds, target=target,
                              progress=not as_json, log=lambda m: sys.stderr.write(m + "\n"))
        emit(data, as_json, _render)
