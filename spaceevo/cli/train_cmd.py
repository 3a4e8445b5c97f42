"""``spaceevo train-supernet``, ``extract``, ``supernet-report`` and ``distill-tables``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, console, emit, table


def register(app: typer.Typer) -> None:
    """Register the supernet commands on ``app``."""

    @app.command("train-supernet")
    def train_supernet_cmd(
        space: str = typer.Option(..., "--space", help="Search space, e.g. onnxw-151122-023231."),
        out: Path = typer.Option(Path("supernet_run"), "-o", "--out", help="Output folder (checkpoints, metrics)."),
        dataset: str = typer.Option("digits", help="'digits', 'synthetic' or an ImageFolder directory."),
        image_size: int = typer.Option(16, help="Training/evaluation image side (px)."),
        epochs: int = typer.Option(3, help="FP32 sandwich-rule epochs."),
        qat_epochs: int = typer.Option(1, help="LSQ+ INT8 quantisation-aware epochs after FP32."),
        batch_size: int = typer.Option(32, help="Batch size per process."),
        lr: float = typer.Option(2e-3, help="FP32 learning rate (cosine schedule)."),
        qat_lr: float = typer.Option(2e-4, help="QAT learning rate."),
        optimizer: str = typer.Option("adamw", help="sgd (momentum 0.9, Nesterov) or adamw."),
        warmup_steps: int = typer.Option(20, help="Linear learning-rate warm-up steps of the FP32 phase."),
        n_random: int = typer.Option(2, help="Random subnets per step besides the max and min subnets."),
        label_weight: float = typer.Option(0.5, help="Weight of the labels' cross-entropy in the min and random "
                                                     "subnets' loss (0: pure in-place distillation)."),
        seed: int = typer.Option(0, help="Random seed."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from OUT/checkpoint.pt."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Train a weight-sharing supernet (FP32 sandwich rule, then LSQ+ QAT); works under torchrun."""
        from spaceevo.search.supernet import TrainConfig, train_supernet

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cfg = TrainConfig(space=space, dataset=dataset, image_size=image_size, epochs=epochs, qat_epochs=qat_epochs,
                          batch_size=batch_size, lr=lr, qat_lr=qat_lr, seed=seed, device=device, optimizer=optimizer,
                          warmup_steps=warmup_steps, n_random=n_random, label_weight=label_weight)
        result = train_supernet(cfg, out, resume=resume, progress=not as_json)

        def render(r: dict) -> None:
            cols = ["epoch", "phase", "loss_max", "loss_kd", "val_acc_max", "val_acc_min", "val_acc_rand", "time_s"]
            table(f"supernet {space} -> {r['checkpoint']}", cols, [[h.get(c, "-") for c in cols] for h in r["history"]])

        emit(result, as_json, render)

    @app.command("extract")
    def extract_cmd(
        subnet: str = typer.Argument(..., help="Subnet encoding d..._k..._w..._e..._r..."),
        space: str = typer.Option(..., "--space", help="Search space of the supernet."),
        checkpoint: Path = typer.Option(..., "--checkpoint", help="supernet.pt from train-supernet."),
        output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
        int8: bool = typer.Option(False, "--int8", help="Also write an onnxruntime INT8 model (FILE.int8.onnx), "
                                                        "calibrated on training images."),
        resolution: Optional[int] = typer.Option(None, help="Export resolution (default: the subnet's r)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Extract a subnet with inherited weights, recalibrate BatchNorm, export ONNX (and INT8)."""
        from spaceevo.search.supernet import extract_subnet

        result = extract_subnet(checkpoint, subnet, output, space, int8=int8, resolution=resolution)
        emit(result, as_json, lambda r: table("extracted subnet", list(r), [list(r.values())]))

    @app.command("supernet-report")
    def report_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="supernet.pt from train-supernet."),
        subnet: list[str] = typer.Option([], "--subnet", help="Subnet to report (repeatable; default min, max, "
                                                              "random)."),
        n_random: int = typer.Option(3, help="Random subnets when no --subnet is given."),
        seed: int = typer.Option(0, help="Seed of the random subnets."),
        predictor: Optional[str] = typer.Option(None, help="Latency predictor name or file (spaceevo.predictors), "
                                                           "e.g. vnni-ort-int8."),
        measure: bool = typer.Option(True, "--measure/--no-measure",
                                     help="Measure INT8 latency with the collector (ort backend, 1 thread)."),
        repeats: int = typer.Option(30, help="Timed samples per subnet (collector protocol)."),
        calibrate_method: str = typer.Option("minmax", help="Activation calibration of the accuracy INT8 model: "
                                                            "minmax (as the collector), percentile or entropy."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Held-out top-1 (FP32, LSQ+, onnxruntime INT8) and predicted vs measured INT8 latency of subnets."""
        from spaceevo.search.supernet import latency_report

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        rows = latency_report(checkpoint, subnet or None, n_random, predictor, measure, seed=seed, repeats=repeats,
                              calibrate_method=calibrate_method)

        def render(rs: list[dict]) -> None:
            names = ["min", "max"] + [f"rand{i}" for i in range(len(rs))] if not subnet else \
                [f"s{i}" for i in range(len(rs))]
            cols = ["resolution", "flops_m", "acc_fp32", "acc_lsq", "acc_int8_ort", "predicted_ms", "measured_ms",
                    "pred_over_meas"]
            heads = ["res", "MMACs", "fp32", "lsq", "int8", "pred ms", "meas ms", "pred/meas"]
            table(f"held-out top-1 (chance {rs[0]['chance'] if rs else '-'}; fp32, LSQ+ fake-quant, onnxruntime "
                  "INT8) and INT8 latency at the subnet's resolution", ["name"] + heads,
                  [[n] + [round(r[c], 1) if c == "flops_m" else r.get(c, "-") for c in cols]
                   for n, r in zip(names, rs)])
            for n, r in zip(names, rs):
                console().print(f"{n}: {r['subnet']}")

        emit(rows, as_json, render)

    @app.command("distill-tables")
    def distill_cmd(
        teacher: Path = typer.Option(..., "--teacher", help="supernet.pt from train-supernet (teacher: its max "
                                                          "subnet, or --teacher-subnet)."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder; tables go to OUT/<hyperspace>/."),
        space: Optional[str] = typer.Option(None, "--space", help="Write the six tables of this search space."),
        tables: list[str] = typer.Option([], "--table", help="One table S_B_W (stage, block digit, window digit); "
                                                             "repeatable."),
        teacher_subnet: Optional[str] = typer.Option(None, help="Teacher subnet encoding (default: the max)."),
        data: Optional[str] = typer.Option(None, "--data", help="Dataset (default: the checkpoint's)."),
        image_size: Optional[int] = typer.Option(None, help="Image side (default: the checkpoint's)."),
        steps: int = typer.Option(200, help="Training steps per table (sandwich: max, min, one random config)."),
        qat_steps: int = typer.Option(0, help="LSQ+ QAT steps after the FP32 steps."),
        rows: int = typer.Option(20, help="Stage configs per table (each written at every LUT resolution)."),
        batch_size: int = typer.Option(32, help="Batch size."),
        lr: float = typer.Option(2e-3, help="AdamW learning rate."),
        predictor: Optional[str] = typer.Option(None, help="Latency predictor for the latency column (default: "
                                                           "the hyperspace's built-in one)."),
        seed: int = typer.Option(0, help="Random seed."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Block-wise distillation look-up tables (NSR loss vs a teacher) in the public CSV format."""
        from spaceevo.search.supernet import DistillConfig, distill_checkpoint

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cfg = DistillConfig(steps=steps, qat_steps=qat_steps, batch_size=batch_size, lr=lr, rows=rows, seed=seed)
        summary = distill_checkpoint(teacher, out, space, tables, teacher_subnet, data, image_size, predictor, cfg,
                                     progress=not as_json)
        cols = ["table", "rows", "nsr_max_config", "nsr_min_config", "nsr_min", "nsr_max", "time_s"]
        folder = Path(summary[0]["path"]).parent  # out / <hyperspace>
        emit(summary, as_json, lambda rs: table(f"distillation tables -> {folder}", cols,
                                                [[r[c] for c in cols] for r in rs]))
