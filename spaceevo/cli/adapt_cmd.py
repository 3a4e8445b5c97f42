"""``spaceevo adapt``: a new device's predictor from other devices' predictors and a few measured units."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, emit, table


def _render(s: dict) -> None:
    src = ", ".join(f"{x['name']} (w {x['weight']:.2f})" for x in s["sources"])
    whole = "models" if s.get("kind") == "kernel" else "subnets"
    table(f"adapted {s.get('kind', 'block')} predictor -> {s['output']} ({s['device']}, {s['dtype']}; from {src}; "
          f"method {s['method']})",
          [s.get("kind", "block") + "s", whole, "failed", "profiling (s)", "fit (s)", "total (s)", "unit MAPE (fit)"],
          [[s["units"], s["subnets"], s["failed"], s["profile_seconds"], s["fit_seconds"], s["adapt_seconds"],
            f"{s['unit_train']['mape']:.2f}%"]])
    table("sources ranked on the measured units (leave-one-out RMSE of log latency)", ["source", "LOO RMSE", "tau"],
          [[r["name"], f"{r['loo_log_rmse']:.4f}", f"{r['kendall_tau']:.3f}"] for r in s["source_ranking"]])


def register(app: typer.Typer) -> None:
    """Add ``adapt`` to ``app``."""

    @app.command("adapt")
    def adapt(
        backend: str = typer.Option(..., "--backend", help="Collector backend of the new device: ort | tflite | adb."),
        dtype: str = typer.Option("int8", "--dtype", help="int8 | fp32"),
        budget: int = typer.Option(..., "--budget", help="Blocks (or kernels) to measure on the new device (N)."),
        output: Path = typer.Option(..., "-o", "--output", help="Predictor file to write (NAME.json.gz)."),
        sources: Optional[list[str]] = typer.Option(None, "--from", help="Source predictor (name or path; "
                                                                          "repeatable). Default: every installed "
                                                                          "predictor that fits."),
        subnets: int = typer.Option(5, "--subnets", help="Random whole subnets (with --models: whole models) timed "
                                                         "for the composition term."),
        space: Optional[str] = typer.Option(None, "--space", help="Search space (onnxw-151122-023231) or hyperspace: "
                                                                  "the candidate units, as 'profile' plans them."),
        hyperspace: Optional[str] = typer.Option(None, "--hyperspace", help="Hyperspace (onnxw, mobilew) instead of "
                                                                            "--space."),
        resolution: Optional[list[int]] = typer.Option(None, "--resolution", help="Input resolution(s) (repeatable)."),
        kind: str = typer.Option("block", "--kind", help="block | kernel (kernel: needs --models)"),
        models: Optional[Path] = typer.Option(None, "--models", help="ONNX models (a zoo folder or *.onnx): their "
                                                                     "distinct kernels are the candidates; adapts "
                                                                     "kernel predictors (implies --kind kernel)."),
        threads: int = typer.Option(1, "--threads", help="Intra-op threads."),
        device: Optional[str] = typer.Option(None, "--device", help="Device id (default <backend>-<cpu slug>)."),
        db: Path = typer.Option(Path("adapt.db"), "--db", help="SQLite store of the measurements (a rerun resumes)."),
        cross_dtype: bool = typer.Option(False, "--cross-dtype", help="Allow sources of another dtype."),
        strategy: str = typer.Option("diverse", "--strategy", help="Unit choice: diverse | disagree | random"),
        method: str = typer.Option("auto", "--method", help="auto | scale | linear | per-type | boost"),
        target: str = typer.Option("auto", "--target", help="Statistic to learn: auto (norm_ms with the reference) "
                                                            "| min_ms (fastest sample; repeats across runs) | "
                                                            "norm_ms | median_ms | mean_ms."),
        rounds: Optional[int] = typer.Option(None, "--rounds", help="Rounds a unit (default: the collector's, "
                                                                              "more for whole subnets)."),
        repeats: Optional[int] = typer.Option(None, "--repeats", help="Timed samples per round (default: the "
                                                                      "collector's)."),
        core: Optional[list[int]] = typer.Option(None, "--core", help="Pin timing to these cores (repeatable)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the unit and subnet choice."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Adapt source predictors to a new device with N measured blocks or kernels (+ a few whole subnets or
        models); resumable."""
        from spaceevo.latency import ROUND_REPEATS, ROUND_WARMUP, list_backends
        from spaceevo.predictors import ADAPT_METHODS, TARGETS, run_adapt, uses_reference

        if backend not in list_backends():
            raise ValueError(f"--backend {backend!r} is not one of {list_backends()}")
        if kind not in ("block", "kernel"):
            raise ValueError(f"--kind {kind!r} is not one of ['block', 'kernel']")
        if models is not None or kind == "kernel":
            if models is None:
                raise ValueError("--kind kernel needs --models DIR (the ONNX models whose kernels are the candidates)")
            if space is not None or hyperspace is not None or resolution:
                raise ValueError("--models does not combine with --space/--hyperspace/--resolution (the models fix "
                                 "the candidates and their input shapes)")
            if not models.exists():
                raise ValueError(f"--models {str(models)!r} does not exist")
            kind = "kernel"
        elif (space is None) == (hyperspace is None):
            raise ValueError("give exactly one of --space (a search space or hyperspace) and --hyperspace "
                             "(or --models DIR for kernels)")
        from spaceevo.predictors import ADAPT_STRATEGIES

        if strategy not in ADAPT_STRATEGIES:
            raise ValueError(f"--strategy {strategy!r} is not one of {list(ADAPT_STRATEGIES)}")
        if method not in ADAPT_METHODS:
            raise ValueError(f"--method {method!r} is not one of {list(ADAPT_METHODS)}")
        if target != "auto" and target not in TARGETS:
            raise ValueError(f"--target {target!r} is not one of {['auto', *TARGETS]}")
        if budget < 1:
            raise ValueError(f"--budget {budget} must be >= 1")
        if subnets < 0:
            raise ValueError(f"--subnets {subnets} must be >= 0")
        opts = {"threads": threads, "repeats": repeats or ROUND_REPEATS, "warmup": ROUND_WARMUP, "cores": core or None}
        if backend != "adb":
            opts["reference"] = uses_reference(target)
        summary = run_adapt(backend, dtype, budget, space or hyperspace, output, db, sources=sources, subnets=subnets,
                            resolutions=resolution, kind=kind, device=device, seed=seed, strategy=strategy,
                            method=method, cross_dtype=cross_dtype, backend_opts=opts, rounds=rounds,
                            progress=progress and not as_json, target=target, models=models)
        emit(summary, as_json, _render)
