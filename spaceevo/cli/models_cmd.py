"""Any ONNX model, kernel by kernel: ``measure``, ``fusion-rules``, and the ONNX side of predict/train/validate.

``spaceevo predict MODEL.onnx``, ``spaceevo train --kind kernel`` and ``spaceevo validate --models DIR`` are
the existing commands; they hand ONNX models to the functions here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from spaceevo.latency import MODEL_ROUNDS, ROUNDS

from ._common import JsonOpt, emit, table


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``1,3,224,224`` -> (1, 3, 224, 224); the error names the option and the expected form."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--input-shape {text!r} must be integers like 1,3,224,224") from None
    if len(shape) < 2 or any(v < 1 for v in shape):
        raise ValueError(f"--input-shape {text!r} must be positive integers like 1,3,224,224")
    return shape


def is_onnx_path(text: str | None) -> bool:
    """Whether a positional argument names an ONNX file rather than a subnet string."""
    return text is not None and (text.endswith(".onnx") or (Path(text).is_file() and "#" not in text))


def _kernel_predictor(name: str):
    from spaceevo.predictors import KernelLatencyPredictor, load_predictor

    pred = load_predictor(name)
    if not isinstance(pred, KernelLatencyPredictor):
        raise ValueError(f"--predictor {name!r} is a block predictor of search-space subnets; ONNX models need a "
                         "kernel predictor (spaceevo train --kind kernel)")
    return pred


def predict_onnx(model: str, predictor: str, input_shape: str | None, as_json: bool) -> None:
    """``spaceevo predict MODEL.onnx --predictor P``: latency, the kernels and what is unsupported."""
    pred = _kernel_predictor(predictor)
    out = pred.predict_model(model, parse_shape(input_shape))
    for u in out["unsupported"]:
        sys.stderr.write(f"warning: {model}: {u['count']} {u['op']} op(s) ({100 * u['macs_share']:.1f}% of MACs) have "
                         f"no kernel model; estimated by the fallback ({u['estimate_ms']:.3f} ms)\n")

    def render(d):
        table(f"{d['model']}: {d['latency_ms']:.3f} ms ({d['device']}, {d['backend']} {d['dtype']}; "
              f"{len(d['kernels'])} kernels, {d['macs'] / 1e6:.1f} MMACs)",
              ["#", "type", "config", "ops", "latency (ms)", "source"],
              [[i, k["type"], " ".join(f"{a}={b}" for a, b in k["config"].items()), ",".join(k["op_types"]),
                f"{k['latency_ms']:.4f}", k["source"]] for i, k in enumerate(d["kernels"])])
        typer.echo(f"sum of kernels {d['kernels_sum_ms']:.3f} ms, with the composition term {d['latency_ms']:.3f} ms")
    emit(out, as_json, render)


def train_kernels(db: str, device: str | None, dtype: str, output: Path, estimator: str, folds: int, seed: int,
                  target: str, models_db: list[str], as_json: bool, backend: str | None = None) -> None:
    """``spaceevo train --kind kernel``: one estimator per kernel type + the composition term on whole models."""
    from spaceevo.predictors import auto_target, train_kernel_predictor, training_rows

    df, device = training_rows(db, device, dtype, models_db, note=sys.stderr.write)
    if target == "auto":
        target = auto_target(df)
    backend = backend or (sorted(set(df["backend"].dropna()))[0] if "backend" in df.columns and len(df) else "ort")
    rules = None
    if Path(db).suffix not in (".csv", ".parquet"):
        from spaceevo.datasets import LatencyStore, load_fusion_rules

        with LatencyStore(db) as st:
            rules = load_fusion_rules(st, device, backend, dtype)
    if rules is None:
        sys.stderr.write(f"no fusion rules measured for {device} {backend} {dtype} in {db}: the shipped defaults "
                         "apply (spaceevo fusion-rules measures them)\n")
    pred = train_kernel_predictor(df, device=device, dtype=dtype, backend=backend, estimator=estimator, target=target,
                                  rules=rules, source=str(db), cv_folds=folds, seed=seed)
    for w in pred.warnings:
        sys.stderr.write(f"warning: {w}\n")
    path = pred.save(output)
    man = pred.manifest
    data = {"predictor": str(output), "bytes": path.stat().st_size, "kind": "kernel",
            **{k: man[k] for k in ("device", "dtype", "backend", "estimator", "target", "dataset", "metrics",
                                   "composition", "fallback")}, "warnings": pred.warnings}

    def render(d):
        rows = [[k, v["n"], f"{v['mape']:.2f}", f"{v['acc_10pct']:.1f}", f"{v['kendall_tau']:.3f}"]
                for k, v in d["metrics"].items() if isinstance(v, dict) and "n" in v]
        table(f"kernel predictor of {d['device']} -> {d['predictor']} ({d['bytes'] / 1e6:.2f} MB, "
              f"{len(d['dataset']['kernel_types'])} kernel types)", ["level", "n", "MAPE (%)", "+-10% (%)", "tau"],
              rows)
    emit(data, as_json, render)


def validate_onnx(predictor: str, models: Path, backend: str, dtype: str, threads: int, rounds: int,
                  repeats: int | None, db: str | None, seed: int, as_json: bool, progress: bool = True) -> None:
    """``spaceevo validate --models DIR``: measure every model whole, compare, per family."""
    from spaceevo.predictors import validate_models

    pred = _kernel_predictor(predictor)
    data = validate_models(pred, models, backend=backend, dtype=dtype, threads=threads, rounds=rounds,
                           repeats=repeats, db=db, progress=progress and not as_json, seed=seed)

    def render(d):
        rows = [["all", d["samples"], f"{d['acc_10pct']:.1f}", f"{d['acc_5pct']:.1f}", f"{d['mape']:.2f}",
                 f"{d['kendall_tau']:.3f}"]]
        rows += [[f, m["n"], f"{m['acc_10pct']:.1f}", f"{m['acc_5pct']:.1f}", f"{m['mape']:.2f}",
                  f"{m['kendall_tau']:.3f}"] for f, m in d["per_family"].items()]
        table(f"{d['samples']} models measured with {d['backend']} {d['dtype']} vs {predictor}",
              ["family", "n", "+-10% (%)", "+-5% (%)", "MAPE (%)", "Kendall tau"], rows)
        if d["excluded"]:
            typer.echo(f"left out (training models): {len(d['excluded'])}")
    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    """Add ``measure`` and ``fusion-rules`` to ``app``."""

    @app.command("measure")
    def measure(model: str = typer.Argument(..., help="ONNX model file (FP32; quantised for --dtype int8)"),
                backend: str = typer.Option("ort", "--backend"),
                dtype: str = typer.Option("int8", "--dtype", help="int8 or fp32"),
                threads: int = typer.Option(1, "--threads"),
                rounds: int = typer.Option(MODEL_ROUNDS, "--rounds", help="fresh sessions spread over the run"),
                repeats: Optional[int] = typer.Option(None, "--repeats", help="timed samples per round"),
                reference: bool = typer.Option(True, "--reference/--no-reference",
                                               help="time the reference block beside every sample (ratio)"),
                input_shape: Optional[str] = typer.Option(None, "--input-shape", help="e.g. 1,3,224,224 when the "
                                                                                     "model's input is symbolic"),
                as_json: bool = JsonOpt) -> None:
        """Time a whole ONNX model with the collector's protocol."""
        from spaceevo.latency import check_dtype
        from spaceevo.predictors import measure_model

        check_dtype(dtype)
        data = measure_model(model, backend, dtype, threads, rounds, repeats, reference, progress=not as_json,
                             input_shape=parse_shape(input_shape))
        emit(data, as_json, lambda d: table(f"{d['model']} ({d['backend']} {d['dtype']}, {d['threads']} thread(s), "
                                            f"{d['rounds']} rounds)", ["median (ms)", "min (ms)", "p90 (ms)", "CV",
                                                                       "ratio"],
                                            [[f"{d['median_ms']:.4f}", f"{d['min_ms']:.4f}", f"{d['p90_ms']:.4f}",
                                              f"{100 * d['cv']:.2f}%", d["ratio"] if d["ratio"] is None
                                              else f"{d['ratio']:.4f}"]]))

    @app.command("fusion-rules")
    def fusion_rules(backend: str = typer.Option("ort", "--backend"),
                     dtype: str = typer.Option("int8", "--dtype", help="int8 or fp32"),
                     db: Optional[Path] = typer.Option(None, "--db", help="latency store of the device (the pairs' "
                                                                          "rows and the rules go there; default: a "
                                                                          "file under $SPACEEVO_HOME)"),
                     device: Optional[str] = typer.Option(None, "--device", help="device id (default "
                                                                                 "<backend>-<cpu slug>)"),
                     threads: int = typer.Option(1, "--threads"),
                     rounds: int = typer.Option(ROUNDS, "--rounds", help="the collector's rounds per unit"),
                     as_json: bool = JsonOpt) -> None:
        """Measure which ops fuse on this device (nn-Meter's test on op1, op2, op1+op2) and store the rules."""
        from spaceevo.datasets import LatencyStore, save_fusion_rules
        from spaceevo.latency import (ROUND_REPEATS, ROUND_WARMUP, check_dtype, create_backend, default_device,
                                      list_backends, measure_fusion_rules)
        from spaceevo.predictors import spaceevo_home

        if backend not in list_backends():
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(list_backends())}")
        check_dtype(dtype)
        protocol = {"warmup": ROUND_WARMUP, "repeats": ROUND_REPEATS} if rounds > 1 else {}
        be = create_backend(backend, threads=threads, reference=backend != "adb", **protocol)
        be.require()
        path = db or (spaceevo_home() / "fusion" / f"{device or default_device(be)}.db")
        with LatencyStore(path) as st:
            rules = measure_fusion_rules(be, dtype, db=st, device=device, rounds=rounds, progress=not as_json,
                                         statistic="ratio" if be.reference else "min_ms")
            save_fusion_rules(st, rules)
        rules["db"] = str(path)
        emit(rules, as_json, lambda d: (
            table(f"fusion rules of {d['device']} ({d['backend']} {d['dtype']}) -> {d['db']}",
                  ["op1", "op2", "T1", "T2", "T12", "fused"],
                  [[m["op1"], m["op2"], f"{m['t1_ms']:.4f}", f"{m['t2_ms']:.4f}", f"{m['t12_ms']:.4f}",
                    "yes" if m["fused"] else "no"] for m in d["measured"]]),
            typer.echo(f"conv fuses {d['conv_acts']}; fc fuses {d['fc_acts']}; add fuses {d['add_acts']}; "
                       f"FP32 inside INT8: {d['float_ops']}")))
