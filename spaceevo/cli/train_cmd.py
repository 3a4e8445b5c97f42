"""``spaceevo train-supernet``, ``spaceevo extract`` and ``spaceevo supernet-report``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, emit, table


def register(app: typer.Typer) -> None:
    """Register the supernet commands on ``app``."""

    @app.command("train-supernet")
    def train_supernet_cmd(
        space: str = typer.Option(..., "--space", help="Search space, e.g. onnxw-151122-023231."),
        out: Path = typer.Option(Path("supernet_run"), "-o", "--out", help="Output folder (checkpoints, metrics)."),
        dataset: str = typer.Option("digits", help="'digits', 'synthetic' or an ImageFolder directory."),
        image_size: int = typer.Option(32, help="Training/evaluation image side (px)."),
        epochs: int = typer.Option(4, help="FP32 sandwich-rule epochs."),
        qat_epochs: int = typer.Option(1, help="LSQ+ INT8 quantisation-aware epochs after FP32."),
        batch_size: int = typer.Option(64, help="Batch size per process."),
        lr: float = typer.Option(0.05, help="FP32 learning rate (SGD, cosine)."),
        qat_lr: float = typer.Option(0.005, help="QAT learning rate."),
        seed: int = typer.Option(0, help="Random seed."),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from OUT/checkpoint.pt."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Train a weight-sharing supernet (FP32 sandwich rule, then LSQ+ QAT); works under torchrun."""
        from spaceevo.search.supernet import TrainConfig, train_supernet

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cfg = TrainConfig(space=space, dataset=dataset, image_size=image_size, epochs=epochs, qat_epochs=qat_epochs,
                          batch_size=batch_size, lr=lr, qat_lr=qat_lr, seed=seed, device=device)
        result = train_supernet(cfg, out, resume=resume, progress=not as_json)

        def render(r: dict) -> None:
            cols = ["epoch", "phase", "loss_max", "loss_kd", "val_acc_max", "val_acc_min", "time_s"]
            table(f"supernet {space} -> {r['checkpoint']}", cols, [[h[c] for c in cols] for h in r["history"]])

        emit(result, as_json, render)

    @app.command("extract")
    def extract_cmd(
        subnet: str = typer.Argument(..., help="Subnet encoding d..._k..._w..._e..._r..."),
        space: str = typer.Option(..., "--space", help="Search space of the supernet."),
        checkpoint: Path = typer.Option(..., "--checkpoint", help="supernet.pt from train-supernet."),
        output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
        int8: bool = typer.Option(False, "--int8", help="Also write an onnxruntime INT8 model (FILE.int8.onnx)."),
        resolution: Optional[int] = typer.Option(None, help="Export resolution (default: the subnet's r)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Extract a subnet with inherited weights, recalibrate BatchNorm, export ONNX (and INT8)."""
        from torch.utils.data import DataLoader

        from spaceevo.search.supernet import export_onnx, load_dataset, load_supernet, recalibrate_bn
        from spaceevo.search.supernet._export import quantize_int8

        net, state = load_supernet(checkpoint)
        if str(net.space) != space:
            raise ValueError(f"--space {space!r} does not match the checkpoint's space {str(net.space)!r}")
        cfg = state["config"]
        data = load_dataset(cfg["dataset"], cfg["image_size"], cfg["val_fraction"], cfg["seed"])
        loader = DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=False)
        batches = [x for _, (x, _y) in zip(range(cfg["bn_batches"]), loader)]
        static = recalibrate_bn(net.extract(subnet), batches)
        path = export_onnx(static, output, resolution)
        result = {"subnet": subnet, "space": space, "onnx": str(path)}
        if int8:
            r = resolution or static.subnet.resolution
            import torch.nn.functional as F

            calib = [F.interpolate(b[:1], size=(r, r), mode="bilinear").numpy() for b in batches]
            result["onnx_int8"] = str(quantize_int8(path, path.with_suffix(".int8.onnx"), calib))
        emit(result, as_json, lambda r: table("extracted subnet", list(r), [list(r.values())]))

    @app.command("supernet-report")
    def report_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="supernet.pt from train-supernet."),
        subnet: list[str] = typer.Option([], "--subnet", help="Subnet to report (repeatable; default min, max, "
                                                              "random)."),
        n_random: int = typer.Option(2, help="Random subnets when no --subnet is given."),
        predictor: Optional[str] = typer.Option(None, help="Latency predictor name or path (spaceevo.predictors)."),
        measure: bool = typer.Option(True, "--measure/--no-measure", help="Measure INT8 latency with onnxruntime."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Accuracy (FP32, LSQ+, onnxruntime INT8) and predicted vs measured INT8 latency of subnets."""
        from spaceevo.search.supernet import latency_report

        rows = latency_report(checkpoint, subnet or None, n_random, predictor, measure)

        def render(rs: list[dict]) -> None:
            cols = ["subnet", "flops_m", "acc_fp32", "acc_lsq", "acc_int8_ort", "predicted_ms", "measured_ms"]
            table("supernet subnets (accuracy on held-out data, INT8 latency at the subnet's resolution)", cols,
                  [[r.get(c, "-") for c in cols] for r in rs])

        emit(rows, as_json, render)
