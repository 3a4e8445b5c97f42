"""``spaceevo train | predict | eval | validate`` and ``spaceevo predictors ...``: latency predictors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from spaceevo.latency import MODEL_ROUNDS

from ._common import JsonOpt, emit, table
from ._queries import predict_block, predict_subnet

# Sub-app for predictor management; other modules add commands with ``@predictors_app.command(...)``.
predictors_app = typer.Typer(no_args_is_help=True, help="Registered latency predictors (built-in and user).")


def _metric_row(name: str, m: dict) -> list:
    return [name, m["n"], f"{m['rmse_ms']:.4f}", f"{m['mape']:.2f}", f"{m['acc_5pct']:.1f}", f"{m['acc_10pct']:.1f}",
            f"{m['kendall_tau']:.3f}"]


_METRIC_COLS = ["level", "n", "RMSE (ms)", "MAPE (%)", "+-5% (%)", "+-10% (%)", "Kendall tau"]


def _render_metrics(title: str, metrics: dict) -> None:
    table(title, _METRIC_COLS, [_metric_row(k, v) for k, v in metrics.items() if isinstance(v, dict) and "n" in v])


def _composition_text(c: dict) -> str:
    from spaceevo.predictors import terms_of

    terms = " + ".join(f"{v:.4g} * sum({k})" for k, v in terms_of(c).items())
    return f"latency = {terms} + {c.get('offset_ms', 0.0):.4f} ms ({c.get('n_models', 0)} whole subnets)"


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict``, ``eval``, ``validate`` and the ``predictors`` group to ``app``."""
    app.add_typer(predictors_app, name="predictors")

    @app.command("train")
    def train(db: str = typer.Option(..., "--db", help="latency store (SQLite) or its CSV/Parquet export"),
              device: Optional[str] = typer.Option(None, "--device", help="device id of the measurements "
                                                                          "(default: the store's only device)"),
              dtype: str = typer.Option("int8", "--dtype", help="int8 or fp32"),
              output: Path = typer.Option(..., "-o", "--output", help="predictor file to write (.json or .json.gz)"),
              estimator: str = typer.Option("lgbm", "--estimator", help="lgbm, rf (nn-Meter baseline) or lut"),
              folds: int = typer.Option(5, "--folds", help="k of the k-fold unit-level metrics (0 to skip)"),
              seed: int = typer.Option(0, "--seed"),
              target: str = typer.Option("auto", "--target",
                                         help="timing statistic to learn: norm_ms (relative to the reference "
                                              "block timed beside each sample; steadiest within a run), min_ms "
                                              "(fastest sample; what repeats across runs for whole networks, "
                                              "the quick start's), median_ms or mean_ms; auto: norm_ms when every "
                                              "row has a ratio, else min_ms, else median_ms (e.g. imported tables)"),
              models_db: Optional[list[str]] = typer.Option(None, "--models-db",
                                                            help="more stores with whole-subnet rows for the "
                                                                 "composition term (repeatable)"),
              kind: str = typer.Option("block", "--kind", help="block (subnets of a search space) or kernel "
                                                               "(any ONNX model, from spaceevo profile --models)"),
              as_json: bool = JsonOpt) -> None:
        """Train a predictor for one device and dtype from profiled block (and whole-subnet) rows."""
        if kind not in ("block", "kernel"):
            raise ValueError(f"--kind {kind!r} is not in ['block', 'kernel']")
        if kind == "kernel":
            from .models_cmd import train_kernels

            train_kernels(db, device, dtype, output, estimator, folds, seed, target, models_db or [], as_json)
            return
        from spaceevo.predictors import train_from_store

        pred = train_from_store(db, device, dtype, estimator, folds, seed, target, models_db or [],
                                note=sys.stderr.write)
        for w in pred.warnings:
            sys.stderr.write(f"warning: {w}\n")
        path = pred.save(output)
        data = {"predictor": str(output), "bytes": path.stat().st_size,
                **{k: pred.manifest[k] for k in ("device", "dtype", "estimator", "dataset", "metrics", "composition")},
                "warnings": pred.warnings}
        emit(data, as_json, lambda d: (_render_metrics(f"trained {d['estimator']} predictor of {d['device']} -> "
                                                       f"{d['predictor']} ({d['bytes'] / 1e6:.2f} MB)", d["metrics"]),
                                       typer.echo(f"composition: {_composition_text(d['composition'])}")))

    @app.command("predict")
    def predict(subnet: Optional[str] = typer.Argument(None, help="subnet string d..._k..._w..._e..._r..., or an "
                                                                  "ONNX model file (needs a kernel predictor)"),
                space: Optional[str] = typer.Option(None, "--space", help="search space, e.g. onnxw-151122-023231"),
                predictor: str = typer.Option(..., "--predictor", "-p", help="registered name or file"),
                file: Optional[Path] = typer.Option(None, "--file", help="subnets, one per line"),
                block: Optional[str] = typer.Option(None, "--block",
                                                    help="one block: 'MobileNetV2ResBlock hw=112 cin=16 cout=32 "
                                                         "k=3 e=4 s=2 act=relu6'"),
                fmt: str = typer.Option("csv", "--format", help="output of --file: csv or jsonl"),
                input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                                          help="ONNX model: static input shape, e.g. 1,3,224,224"),
                as_json: bool = JsonOpt) -> None:
        """Predict the latency of a subnet (with its blocks), of many subnets, of one block or of an ONNX model."""
        from .models_cmd import is_onnx_path

        if is_onnx_path(subnet) and file is None and block is None:
            from .models_cmd import predict_onnx

            predict_onnx(subnet, predictor, input_shape, as_json)
            return
        chosen = sum(x is not None for x in (subnet, file, block))
        if chosen != 1:
            raise ValueError("give exactly one of SUBNET, --file or --block")
        if block is not None:
            predict_block(block, predictor, as_json)
            return
        if space is None:
            raise ValueError("--space is required with SUBNET or --file")
        # SUBNET and --file are answered from the compiled (predictor, space) table: NumPy only once it is cached
        from spaceevo.predictors import compiled_subnet_table

        if file is not None:
            if fmt not in ("csv", "jsonl"):
                raise ValueError(f"--format {fmt!r} is not one of ['csv', 'jsonl']")
            if not file.is_file():
                raise FileNotFoundError(f"--file {str(file)!r} does not exist")
            lines = [ln.strip() for ln in file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            lat = compiled_subnet_table(predictor, space).predict_subnets(lines)
            if fmt == "jsonl" or as_json:
                for s, v in zip(lines, lat):
                    sys.stdout.write(json.dumps({"subnet": s, "latency_ms": float(v)}) + "\n")
            else:
                sys.stdout.write("subnet,latency_ms\n")
                for s, v in zip(lines, lat):
                    sys.stdout.write(f"{s},{v:.6f}\n")
            return
        predict_subnet(subnet, space, predictor, as_json)

    @app.command("eval")
    def evaluate(predictor: str = typer.Option(..., "--predictor", "-p", help="registered name or file"),
                 db: str = typer.Option(..., "--db", help="latency store (SQLite) or its CSV/Parquet export"),
                 device: Optional[str] = typer.Option(None, "--device", help="default: the predictor's device"),
                 folds: int = typer.Option(5, "--folds", help="k-fold retraining on --db (0 to skip)"),
                 plot: Path = typer.Option(Path("predicted_vs_measured.png"), "--plot", help="scatter PNG"),
                 as_json: bool = JsonOpt) -> None:
        """Score a predictor on stored rows (unit and model level), k-fold on the same rows, and plot."""
        from spaceevo.datasets import read_rows
        from spaceevo.predictors import evaluate_on_rows, load_predictor

        pred = load_predictor(predictor)
        df = read_rows(db, device=device or pred.device, dtype=pred.dtype)
        if df.empty:
            raise ValueError(f"no rows for device {device or pred.device!r} dtype {pred.dtype!r} in {db}")
        data = evaluate_on_rows(pred, df, folds=folds, plot=plot)
        emit(data, as_json, lambda d: (_render_metrics(f"{predictor} on {db}", d["metrics"]),
                                       typer.echo(f"scatter plot: {d['plot']}")))

    @app.command("validate")
    def validate(predictor: str = typer.Option(..., "--predictor", "-p", help="registered name or file"),
                 space: Optional[str] = typer.Option(None, "--space", help="search space, e.g. onnxw-151122-023231"),
                 models: Optional[Path] = typer.Option(None, "--models", help="ONNX models to measure instead (a zoo "
                                                                              "folder or any folder of *.onnx); "
                                                                              "needs a kernel predictor"),
                 samples: int = typer.Option(50, "--samples", help="number of random subnets"),
                 backend: str = typer.Option("ort", "--backend"),
                 dtype: str = typer.Option("int8", "--dtype"),
                 threads: int = typer.Option(1, "--threads"),
                 resolution: Optional[int] = typer.Option(None, "--resolution", help="fix the input resolution"),
                 seed: int = typer.Option(0, "--seed"),
                 repeats: Optional[int] = typer.Option(None, "--repeats", help="timed runs per subnet "
                                                                                "(default: the backend's)"),
                 db: Optional[str] = typer.Option(None, "--db", help="keep the whole-subnet measurements in this "
                                                                     "store; a rerun reuses them"),
                 recheck: int = typer.Option(0, "--recheck", help="re-measure this many subnets in fresh sessions "
                                                                  "to report the measurement's repeatability"),
                 rounds: int = typer.Option(MODEL_ROUNDS, "--rounds", help="time each subnet in this many short "
                                                                     "sessions spread over the run, as `spaceevo "
                                                                     "profile` does (1: one session)"),
                 progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
                 as_json: bool = JsonOpt) -> None:
        """Measure random whole subnets (or ONNX models) and compare with the predictor: +-10%, +-5%, MAPE, tau."""
        if (space is None) == (models is None):
            raise ValueError("give exactly one of --space (subnets of a search space) or --models (ONNX models)")
        if models is not None:
            from .models_cmd import validate_onnx

            validate_onnx(predictor, models, backend, dtype, threads, rounds, repeats, db, seed, as_json,
                          progress=progress)
            return
        from spaceevo.predictors import load_predictor, validate_predictor

        pred = load_predictor(predictor)
        data = validate_predictor(pred, space, samples=samples, backend=backend, dtype=dtype, seed=seed,
                                  threads=threads, resolution=resolution, repeats=repeats, db=db, recheck=recheck,
                                  rounds=rounds, progress=progress and not as_json)

        def render(d):
            table(f"{d['space']}: {d['samples']} subnets measured with {d['backend']} {d['dtype']} "
                  f"({d['statistic']}, {d['rounds']} rounds)",
                  ["", "+-10% (%)", "+-5% (%)", "MAPE (%)", "Kendall tau"],
                  [["with composition", f"{d['acc_10pct']:.1f}", f"{d['acc_5pct']:.1f}", f"{d['mape']:.2f}",
                    f"{d['kendall_tau']:.3f}"],
                   ["sum of blocks", f"{d['without_composition']['acc_10pct']:.1f}",
                    f"{d['without_composition']['acc_5pct']:.1f}", f"{d['without_composition']['mape']:.2f}",
                    f"{d['without_composition']['kendall_tau']:.3f}"]])
            typer.echo(f"composition: {_composition_text(d['composition'])}")
            for w in d["predictor_warnings"]:
                typer.echo(f"warning (predictor): {w}")
            if "repeatability" in d:
                r = d["repeatability"]
                typer.echo(f"repeatability ({r['n']} subnets measured twice): median |difference| "
                           f"{100 * r['median_abs_rel_diff']:.2f}%, max {100 * r['max_abs_rel_diff']:.2f}%, "
                           f"median second/first {100 * r.get('median_rel_diff', 0.0):+.2f}%")
                if r.get("within_10pct") is not None:
                    tau = "" if r.get("kendall_tau") is None else f", Kendall tau {r['kendall_tau']:.3f}"
                    typer.echo(f"the second timing as a prediction of the first: +-10% {r['within_10pct']:.1f}%{tau}"
                               " (what a perfect predictor could score against one measurement)")
                if "error_within_noise" in r:
                    verdict = ("within the measurement's own noise" if r["error_within_noise"] else
                               f"{r['median_abs_error'] / max(r['median_abs_rel_diff'], 1e-9):.1f}x the "
                               "measurement's own noise")
                    typer.echo(f"prediction error: median |error| {100 * r['median_abs_error']:.2f}%, {verdict}")
        emit(data, as_json, render)

    @predictors_app.command("list")
    def predictors_list(as_json: bool = JsonOpt) -> None:
        """List built-in and user predictors."""
        from spaceevo.predictors import describe_predictors

        data = describe_predictors()
        emit(data, as_json, lambda d: table("predictors", ["name", "origin", "kind", "device", "dtype", "estimator",
                                                           "path"],
                                            [[x["name"], x["origin"], x.get("unit_kind", ""),
                                              x.get("device", x.get("error")), x.get("dtype", ""),
                                              x.get("estimator", ""), x["path"]] for x in d]))

    @predictors_app.command("show")
    def predictors_show(name: str = typer.Argument(..., help="registered name or file"),
                        as_json: bool = JsonOpt) -> None:
        """Show a predictor's manifest (device, runtime versions, dataset digest, metrics)."""
        from spaceevo.predictors import load_predictor

        man = load_predictor(name).manifest
        emit(man, as_json, lambda m: (typer.echo(json.dumps({k: v for k, v in m.items() if k != "metrics"},
                                                             indent=2, default=str)),
                                      _render_metrics("training metrics", m.get("metrics", {}))))

    @predictors_app.command("build-spaceevo")
    def predictors_build_spaceevo(lut_dir: str = typer.Option(..., "--lut-dir", help="block_lut folder (onnxw/, mobilew/)"),
                                  fixed_csv: Optional[str] = typer.Option(None, "--fixed-csv",
                                                                          help="vnni_fixed_blocks.csv"),
                                  out: Optional[str] = typer.Option(None, "-o", "--out",
                                                                    help="output folder (default: built-ins)"),
                                  db: Optional[str] = typer.Option(None, "--db",
                                                                   help="also write the recovered blocks to this "
                                                                        "latency store (SQLite)"),
                                  hyperspace: Optional[list[str]] = typer.Option(None, "--hyperspace",
                                                                                 help="onnxw and/or mobilew "
                                                                                      "(default: both)"),
                                  as_json: bool = JsonOpt) -> None:
        """Rebuild vnni-ort-int8 and pixel4-tflite-int8 from the public SpaceEvo look-up tables."""
        from spaceevo.predictors import build_spaceevo

        hypers = tuple(hyperspace or ("onnxw", "mobilew"))
        bad = [h for h in hypers if h not in ("onnxw", "mobilew")]
        if bad:
            raise ValueError(f"--hyperspace {bad[0]!r} is not one of ['onnxw', 'mobilew']")
        data = build_spaceevo(lut_dir, fixed_csv, out, hyperspaces=hypers, db=db)
        emit(data, as_json, lambda d: table("recovered predictors", ["device", "rows", "blocks", "rank def.",
                                                                     "unident.", "rows <=0.5%", "max rel. resid.",
                                                                     "db rows", "path"],
                                            [[k, v["rows"], v["distinct_blocks"], v["rank_deficiency"],
                                              v["unidentifiable_blocks"], f"{100 * v['rows_within_0.5pct']:.3f}%",
                                              f"{v['max_rel_residual']:.5f}", v.get("db_rows", "-"), v["path"]]
                                             for k, v in d.items()]))
