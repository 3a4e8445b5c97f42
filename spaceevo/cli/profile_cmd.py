"""``spaceevo profile``, ``devices``, ``dataset info|export`` and ``report int8-speedup``: the collector."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from spaceevo.latency import MODEL_ROUNDS, ROUND_REPEATS, ROUND_WARMUP, ROUNDS

from ._common import JsonOpt, emit, fail, table


def _make_backend(name: str, opts: dict):
    from spaceevo.latency import AdbError, create_backend

    be = create_backend(name, **opts)
    try:
        be.require()
    except AdbError as exc:
        fail(str(exc))
    return be


def _render_summary(s: dict) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    table(f"profile: {s['device']} ({s['backend']}, threads={s['threads']}, {s['rounds']} rounds a unit) -> {s['db']}",
          ["units", "to do", "skipped", "ok", "failed", "median CV", "round CV", "time (s)"],
          [[s["units"], s["total"], s["skipped"], s["ok"], s["failed"], pct(s["median_cv"]),
            pct(s.get("median_round_cv")), s["seconds"]]])
    if s.get("median_other_cpu") is not None:
        typer.echo(f"other processes kept {s['median_other_cpu']:.2f} cores busy while units were timed (median)")


def _farm_pool(backend: str, ray_address: str | None, pool: str | None, core: list[int] | None,
               serial: str | None, dry_run: bool) -> list | None:
    """The devices of ``--ray/--pool`` (None without them); Ray's presence and the pool file checked first."""
    if ray_address is None and pool is None:
        return None
    if core or serial:
        raise ValueError("--core/--serial do not combine with --ray/--pool: set cores and serial per device in the "
                         "pool file (--pool local: one device per core)")
    if dry_run:
        raise ValueError("--dry-run does not combine with --ray/--pool (the datasets depend on the devices' "
                         "fingerprints); run without --dry-run, a rerun skips what is done")
    from spaceevo.latency import check_address, import_ray, load_pool, local_pool

    import_ray()
    if ray_address not in (None, "local", "auto"):
        check_address(ray_address)
    return local_pool(backend) if pool in (None, "local") else load_pool(pool)


def _render_farm(s: dict) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    table(f"farm profile: {len(s['devices'])} devices, {s['rounds']} rounds a unit, {s['seconds']} s -> {s['db']}",
          ["dataset (device id)", "backend", "devices", "to do", "skipped", "ok", "failed", "pending", "median CV",
           "round CV"],
          [[d["device"], d["backend"], ", ".join(d["devices"]), d["total"], d["skipped"], d["ok"], d["failed"],
            d["pending"], pct(d["median_cv"]), pct(d["median_round_cv"])] for d in s["datasets"]])
    table("devices", ["device", "host", "dataset", "status", "units", "rounds", "timing (s)", "failures", "reason"],
          [[d["name"], d["host"] or "", d["dataset"] or "", d["status"], d["units"], d["rounds"], d["timing_s"],
            d["failures"], d["reason"] or ""] for d in s["devices"]])


def _adaptive_opts(predictor: str | None, db: Path, device: str | None, dtype: str) -> dict:
    """The adaptive sampler's inputs: the store's block rows and the predictor to improve."""
    if predictor is None:
        raise ValueError("--sampler adaptive needs --predictor (a trained predictor name or path)")
    from spaceevo.datasets import LatencyStore
    from spaceevo.predictors import load_predictor

    if not db.is_file():
        raise FileNotFoundError(f"--db {str(db)!r} does not exist (adaptive sampling starts from a dataset)")
    pred = load_predictor(predictor)
    with LatencyStore(db) as st:
        return {"measurements": st.read_measurements(device=device, dtype=dtype, kind="block"), "predictor": pred}


def _models_plan(models: Path, backend: str, dtype: str, db: Path, device: str | None, be, whole: bool) -> list:
    """The distinct kernels of ONNX models (the device's measured fusion rules if the store has them) and the models."""
    import sys

    from spaceevo.latency import default_device, model_profile_units

    rules = None
    if db.is_file():
        from spaceevo.datasets import LatencyStore, load_fusion_rules

        with LatencyStore(db) as st:
            rules = load_fusion_rules(st, device or default_device(be), backend, dtype)
    plan = model_profile_units(models, backend, dtype, rules, whole=whole)
    for op, n in sorted(plan["unsupported"].items()):
        sys.stderr.write(f"warning: {n} {op} op(s) have no kernel type; predictions estimate them by a flagged "
                         "fallback\n")
    sys.stderr.write(f"{len(plan['kernels'])} distinct kernels of {len(plan['per_model'])} models"
                     + (f", {len(plan['models'])} models whole" if whole else "")
                     + (" (measured fusion rules)" if rules else " (default fusion rules)") + "\n")
    return plan["kernels"] + plan["models"]


def register(app: typer.Typer) -> None:
    """Add ``profile``, ``devices``, the ``dataset`` group and the ``report`` group to ``app``."""
    dataset_app = typer.Typer(no_args_is_help=True, help="Inspect and export latency datasets.")
    report_app = typer.Typer(no_args_is_help=True, help="Reports on latency datasets.")
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(report_app, name="report")

    @app.command("profile")
    def profile(
        db: Path = typer.Option(..., "--db", help="SQLite dataset to fill (created if missing; reruns resume)."),
        backend: str = typer.Option("ort", "--backend", help="ort | tflite | adb"),
        dtype: Optional[list[str]] = typer.Option(None, "--dtype", help="int8 and/or fp32 (repeatable; default int8)."),
        space: str = typer.Option("onnxw", "--space", help="Hyperspace (onnxw) or search space (onnxw-151122-023231)."),
        resolution: Optional[list[int]] = typer.Option(None, "--resolution", help="Input resolution(s) (repeatable)."),
        sampler: str = typer.Option("space", "--sampler",
                                    help="space | random | prior | adaptive | zoo (kernels of random zoo models)"),
        kind: str = typer.Option("block", "--kind", help="block | kernel (random and prior samplers)."),
        kernel: Optional[list[str]] = typer.Option(None, "--kernel", help="Kernel names to draw (repeatable)."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Measure at most N units (random subset, seeded)."),
        fraction: Optional[float] = typer.Option(None, "--fraction", help="Measure a random fraction of the units."),
        seed: int = typer.Option(0, "--seed", help="Seed for sampling, weights and inputs."),
        threads: int = typer.Option(1, "--threads", help="Intra-op threads."),
        repeats: int = typer.Option(ROUND_REPEATS, "--repeats", help="Timed samples per session (round)."),
        warmup: int = typer.Option(ROUND_WARMUP, "--warmup", help="Untimed warm-up runs per session (round)."),
        max_cv: float = typer.Option(0.05, "--max-cv", help="Re-measure a session whose CV exceeds this."),
        max_attempts: int = typer.Option(3, "--max-attempts", help="Sessions per round at most (re-measurements)."),
        rounds: int = typer.Option(ROUNDS, "--rounds", help="Time each unit in this many fresh sessions spread over "
                                                             "the run (1: one session; then raise --repeats)."),
        model_rounds: Optional[int] = typer.Option(None, "--model-rounds",
                                                   help="Sessions per whole network (default: MODEL_ROUNDS, 30, when "
                                                        "--rounds > 1; a farm uses --rounds for every unit)."),
        min_sample_ms: Optional[float] = typer.Option(None, "--min-sample-ms",
                                                      help="Loop faster units so a sample lasts this long "
                                                           "(default 2 for ort/tflite; 0: one run per sample)."),
        clock: str = typer.Option("auto", "--clock", help="auto (thread CPU time at 1 thread, else wall) | wall | cpu"),
        reference: Optional[bool] = typer.Option(None, "--reference/--no-reference",
                                                 help="Time a fixed reference block beside every sample (the "
                                                      "row's ratio; default on for ort and tflite)."),
        core: Optional[list[int]] = typer.Option(None, "--core", help="Pin timing to these cores (repeatable)."),
        device: Optional[str] = typer.Option(None, "--device", help="Device id (default <backend>-<cpu slug>)."),
        quant_format: str = typer.Option("qdq", "--quant-format", help="ort INT8 format: qdq | qoperator"),
        activation_type: str = typer.Option("uint8", "--activation-type", help="ort INT8 activations: uint8 | int8"),
        xnnpack: bool = typer.Option(True, "--xnnpack/--no-xnnpack", help="tflite/adb: use XNNPACK."),
        benchmark_model: Optional[str] = typer.Option(None, "--benchmark-model",
                                                      help="adb: local path of TFLite's Android benchmark_model."),
        serial: Optional[str] = typer.Option(None, "--serial", help="adb: device serial."),
        predictor: Optional[str] = typer.Option(None, "--predictor", help="adaptive: trained predictor name or path."),
        subnets: int = typer.Option(0, "--subnets", help="Time the blocks of N random subnets of --space and those N "
                                                         "subnets whole (what a predictor of whole subnets needs: "
                                                         "the composition term learns from them)."),
        published: bool = typer.Option(False, "--published", help="Also time the blocks of the published SpaceEvo "
                                                                  "subnets of --space's hyperspace."),
        published_file: Optional[Path] = typer.Option(None, "--published-file",
                                                      help="search_result.yaml for --published (default: "
                                                           "../shared/data/spaceevo, else the paper's example)."),
        fixed_blocks: bool = typer.Option(True, "--fixed-blocks/--no-fixed-blocks",
                                          help="With --limit/--fraction, also time the space's fixed blocks "
                                               "(first conv, stage0, head) that every subnet needs."),
        ray_address: Optional[str] = typer.Option(None, "--ray", help="Profile on a Ray cluster: local (start one "
                                                                     "here), auto (the one started on this host "
                                                                     "with 'ray start') or HOST:PORT of its head."),
        pool: Optional[str] = typer.Option(None, "--pool", help="Devices to time on with --ray: a pool file "
                                                                "(farm.yaml), or local (one --backend device per "
                                                                "core of this host; the default)."),
        models: Optional[Path] = typer.Option(None, "--models", help="Time the distinct kernels of these ONNX models "
                                                                     "(a zoo folder or any folder of *.onnx) and "
                                                                     "the models whole (a kernel predictor's data)."),
        whole_models: bool = typer.Option(True, "--whole-models/--no-whole-models",
                                          help="With --models, also time every model whole."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Measure failed units again."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only count the units and what is left to do."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Measure blocks or kernels on a backend (INT8 and/or FP32) into an SQLite dataset; resumable."""
        import sys

        from spaceevo.latency import (backend_options, check_dtype, create_backend, get_sampler, list_backends,
                                      plan_units, run_profile)

        if backend not in list_backends():
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(list_backends())}")
        dtypes = [check_dtype(d) for d in (dtype or ["int8"])]
        if kind not in ("block", "kernel"):
            raise ValueError(f"--kind {kind!r} is not in ['block', 'kernel']")
        get_sampler(sampler)
        farm = _farm_pool(backend, ray_address, pool, core, serial, dry_run)
        settings = dict(threads=threads, repeats=repeats, warmup=warmup, max_cv=max_cv, max_attempts=max_attempts,
                        seed=seed, xnnpack=xnnpack, quant_format=quant_format, activation_type=activation_type,
                        benchmark_model=benchmark_model, min_sample_ms=min_sample_ms, clock=clock, reference=reference)
        opts = backend_options(backend, cores=core, serial=serial, **settings)
        be = create_backend(backend, **opts)  # validates the options before anything is built
        sample_opts = {"space": space, "resolutions": resolution, "limit": limit, "fraction": fraction, "seed": seed,
                       "kind": kind, "kernels": kernel}
        if sampler == "adaptive":
            sample_opts.update(_adaptive_opts(predictor, db, device, dtypes[0]))
        if models is not None:
            if subnets or published:
                raise ValueError("--models does not combine with --subnets/--published (one plan at a time)")
            units = _models_plan(models, backend, dtypes[0], db, device, be, whole_models)
        else:
            if sampler == "space":
                sample_opts["fixed_blocks"] = fixed_blocks
            units = plan_units(space, sampler, sample_opts, subnets, published, published_file,
                               note=sys.stderr.write)
        if farm is not None:
            from spaceevo.datasets import LatencyStore
            from spaceevo.latency import run_farm

            common = {name: backend_options(name, **settings) for name in {d.backend for d in farm}}
            with LatencyStore(db) as store:
                summary = run_farm(units, farm, dtypes, db=store, address=ray_address or "local", backend_opts=common,
                                   device=device, seed=seed, rounds=rounds, retry_failed=retry_failed,
                                   progress=progress and not as_json)
            emit(summary, as_json, _render_farm)
            return
        if dry_run:
            from spaceevo.datasets import LatencyStore
            from spaceevo.latency import default_device

            dev = device or default_device(_make_backend(backend, opts))
            left = len(units) * len(dtypes)
            if db.is_file():
                with LatencyStore(db) as st:
                    left = sum((u.kind, u.key) not in st.done(dev, d, threads) for u in units for d in dtypes)
            emit({"units": len(units), "dtypes": dtypes, "device": dev, "to_measure": left}, as_json,
                 lambda d: table("dry run", ["units", "dtypes", "device", "to measure"],
                                 [[d["units"], ",".join(d["dtypes"]), d["device"], d["to_measure"]]]))
            return
        be = _make_backend(backend, opts)
        from spaceevo.datasets import LatencyStore

        with LatencyStore(db) as store:
            summary = run_profile(units, be, dtypes, db=store, device=device, seed=seed,
                                  progress=progress and not as_json, retry_failed=retry_failed, rounds=rounds,
                                  model_rounds=(model_rounds if model_rounds is not None
                                                else max(rounds, MODEL_ROUNDS) if rounds > 1 else rounds))
        emit(summary, as_json, _render_summary)

    @app.command("devices")
    def devices(as_json: bool = JsonOpt) -> None:
        """List the backends usable here with their device fingerprints."""
        from spaceevo.latency import default_device, fingerprint_id, get_backend, list_backends

        out = []
        for name in list_backends():
            be = get_backend(name)()
            ok = be.available()
            item = {"backend": name, "available": ok}
            if ok:
                fp = be.fingerprint("int8")
                item.update(device=default_device(be), fingerprint_id=fingerprint_id(fp), fingerprint=fp)
            else:
                try:
                    be.require()
                except Exception as exc:  # the reason it is unavailable
                    item["reason"] = str(exc)
            out.append(item)

        def render(items):
            rows = []
            for it in items:
                fp = it.get("fingerprint", {})
                isa = ", ".join(k for k, v in fp.get("isa", {}).items() if v)
                rows.append([it["backend"], "yes" if it["available"] else "no", it.get("device", ""),
                             fp.get("cpu", fp.get("model", "")), isa, ", ".join(f"{k} {v}" for k, v in
                                                                              fp.get("runtime", {}).items())
                             or it.get("reason", "")])
            table("backends", ["backend", "usable", "device id", "cpu", "INT8 ISA", "runtime / reason"], rows)

        emit(out, as_json, render)

    @dataset_app.command("info")
    def dataset_info(db: Path = typer.Argument(..., help="SQLite latency dataset."), as_json: bool = JsonOpt) -> None:
        """Counts per type/device/dtype/status and the CV distribution."""
        from spaceevo.datasets import LatencyStore

        if not db.is_file():
            raise FileNotFoundError(f"DB {str(db)!r} does not exist")
        with LatencyStore(db) as st:
            info = st.info()

        def render(d):
            pct = (lambda v: "n/a" if v is None else f"{100 * v:.2f}%")
            table(f"{d['db']}: {d['rows']} rows, {d['ok']} ok, {d['failed']} failed; CV median {pct(d['median_cv'])}, "
                  f"p90 {pct(d['cv_p90'])}; round CV median {pct(d['median_round_cv'])}",
                  ["device", "dtype", "kind", "type", "status", "rows"],
                  [[g["device"], g["dtype"], g["kind"], g["type"], g["status"], g["rows"]] for g in d["groups"]])

        emit(info, as_json, render)

    @dataset_app.command("export")
    def dataset_export(db: Path = typer.Argument(..., help="SQLite latency dataset."),
                       out: Path = typer.Option(..., "-o", "--output", help="FILE.parquet or FILE.csv"),
                       status: Optional[str] = typer.Option(None, "--status", help="ok | failed (default: all)"),
                       as_json: bool = JsonOpt) -> None:
        """Export the rows to Parquet or CSV (by the file suffix)."""
        from spaceevo.datasets import LatencyStore

        if not db.is_file():
            raise FileNotFoundError(f"DB {str(db)!r} does not exist")
        with LatencyStore(db) as st:
            n = st.export(out, status=status)
        emit({"rows": n, "output": str(out)}, as_json, lambda d: print(f"wrote {d['rows']} rows to {d['output']}"))

    @report_app.command("int8-speedup")
    def report_int8_speedup(
        db: Path = typer.Option(..., "--db", help="SQLite latency dataset with int8 and fp32 rows."),
        out: Optional[Path] = typer.Option(None, "-o", "--output",
                                           help="PNG plot path (default: <db>.int8-speedup.png)."),
        device: Optional[str] = typer.Option(None, "--device", help="Only this device."),
        as_json: bool = JsonOpt,
    ) -> None:
        """INT8/FP32 speed-up per unit type (below 1 means INT8 is slower) and a PNG plot."""
        from spaceevo.datasets import int8_speedup, plot_speedup
        from spaceevo.datasets import LatencyStore

        if not db.is_file():
            raise FileNotFoundError(f"--db {str(db)!r} does not exist")
        with LatencyStore(db) as st:
            df = st.read_measurements(device=device)
        per_unit, per_type = int8_speedup(df)
        png = plot_speedup(per_unit, out or db.with_suffix(".int8-speedup.png"))
        data = {"plot": str(png), "units": int(len(per_unit)), "types": per_type.to_dict("records")}
        emit(data, as_json, lambda d: (table(
            f"INT8 speed-up (FP32 ms / INT8 ms) over {d['units']} units; plot: {d['plot']}",
            ["device", "kind", "type", "units", "median", "min", "max", "INT8 slower"],
            [[t["device"], t["kind"], t["type"], t["units"], f"{t['median_speedup']:.2f}x", f"{t['min_speedup']:.2f}x",
              f"{t['max_speedup']:.2f}x", f"{100 * t['int8_slower_frac']:.0f}%"] for t in d["types"]])))
