"""Extracted subnets to ONNX, INT8 with onnxruntime, and the accuracy / predicted-vs-measured latency report."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ._supernet import StaticSubnet

log = logging.getLogger(__name__)


def export_onnx(model: StaticSubnet, path: str | Path, resolution: int | None = None, opset: int = 17) -> Path:
    """Export a static subnet (fake quantisation off) to ONNX at ``resolution`` (default: the subnet's)."""
    path = Path(path)
    r = resolution or model.subnet.resolution
    model = model.eval().set_fake_quant(False)
    x = torch.zeros(1, model.space.hyperspace.in_channels, r, r)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], opset_version=opset,
                      dynamo=False)
    return path


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray]) -> Path:
    """onnxruntime static INT8 quantisation (QDQ, per-channel s8 weights, u8 activations) on real data."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"input": b}

        def rewind(self) -> None:
            self.it = iter(batches)

    quantize_static(str(fp32_path), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(int8_path)


def onnx_accuracy(path: str | Path, loader) -> float:
    """Top-1 accuracy of an ONNX classifier (batch 1 input) on ``loader``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    correct = total = 0
    for x, y in loader:
        for xi, yi in zip(x.numpy(), y.numpy()):
            out = sess.run(None, {"input": xi[None].astype(np.float32)})[0]
            correct += int(out.argmax() == yi)
            total += 1
    return correct / max(1, total)


def measure_latency_ms(model_path: str | Path) -> float:
    """Median INT8 latency (ms, one thread) with the collector's backend, else the predictors' ORT timer."""
    import onnx

    model = onnx.load(str(model_path))
    try:
        from spaceevo.latency import get_backend  # the collector's timer, once it is installed

        backend = get_backend("ort")
        return float(backend.measure_model(model)["median_ms"])
    except (ImportError, AttributeError, TypeError, ValueError):
        from spaceevo.predictors._ort_measure import time_onnx

        return float(time_onnx(model, threads=1, warmup=5, repeats=20)["median_ms"])


def latency_report(checkpoint: str | Path, subnets: Sequence[str] | None = None, n_random: int = 2,
                   predictor: str | None = None, measure: bool = True, seed: int = 0,
                   eval_limit: int | None = None) -> list[dict]:
    """Per subnet: INT8 (ORT) and fake-quant accuracy on held-out data, predicted and measured INT8 latency."""
    from torch.utils.data import DataLoader, Subset

    from ._data import load_dataset
    from ._train import evaluate, load_supernet, recalibrate_bn

    net, state = load_supernet(checkpoint)
    cfg = state["config"]
    data = load_dataset(cfg["dataset"], cfg["image_size"], cfg["val_fraction"], cfg["seed"])
    bn_loader = DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=False)
    bn_batches = [x for _, (x, _y) in zip(range(cfg["bn_batches"]), bn_loader)]
    val = data.val if eval_limit is None else Subset(data.val, range(min(eval_limit, len(data.val))))
    val_loader = DataLoader(val, batch_size=64)
    names = list(subnets or []) or [str(net.min_subnet()), str(net.max_subnet())] + \
        [str(s) for s in net.space.sample(n_random, seed)]
    pred = None
    if predictor:
        from spaceevo.predictors import load_predictor

        pred = load_predictor(predictor)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            static = recalibrate_bn(net.extract(name), bn_batches)
            row = {"subnet": name, "flops_m": net.space.subnet_info(static.subnet)["flops_m"],
                   "acc_fp32": round(evaluate(static.set_fake_quant(False), val_loader), 4)}
            if net.qat:
                row["acc_lsq"] = round(evaluate(static.set_fake_quant(True), val_loader), 4)
            small = export_onnx(static, Path(tmp) / f"s{i}.onnx", resolution=cfg["image_size"])
            quantize_int8(small, Path(tmp) / f"s{i}_int8.onnx", [b[:1].numpy() for b in bn_batches]
                          + [b[j:j + 1].numpy() for b in bn_batches[:1] for j in range(1, 16)])
            row["acc_int8_ort"] = round(onnx_accuracy(Path(tmp) / f"s{i}_int8.onnx", val_loader), 4)
            if pred is not None:
                row["predicted_ms"] = round(float(pred.predict_subnet(net.space, name)["latency_ms"]), 3)
            if measure:
                full = export_onnx(static, Path(tmp) / f"f{i}.onnx")
                rng = np.random.default_rng(seed)
                r = static.subnet.resolution
                calib = [rng.standard_normal((1, 3, r, r)).astype(np.float32) for _ in range(4)]
                quantize_int8(full, Path(tmp) / f"f{i}_int8.onnx", calib)
                row["measured_ms"] = round(measure_latency_ms(Path(tmp) / f"f{i}_int8.onnx"), 3)
            rows.append(row)
            log.info("%s", row)
    return rows
