"""Extracted subnets to ONNX, INT8 with onnxruntime, and the accuracy / predicted-vs-measured latency report.

Latency goes through the collector (``spaceevo.latency``): the FP32 export at the subnet's resolution
is quantised by the collector's ``quantize_onnx_int8`` (seeded random calibration, QDQ, per-channel
s8 weights, u8 activations) and timed by ``OrtBackend.measure_model`` under the collector's protocol,
exactly as the rows a latency predictor is trained on. Accuracy needs real calibration data, so the
accuracy model is quantised by onnxruntime's ``quantize_static`` with the *same* backend settings but
a reader over training images.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from spaceevo.latency import CALIBRATE_METHODS, create_backend, quantize_onnx_int8
from spaceevo.predictors import load_predictor

from ._data import load_dataset
from ._supernet import StaticSubnet, subnet_blocks
from ._train import evaluate, load_supernet, recalibrate_bn

log = logging.getLogger(__name__)


def export_onnx(model: StaticSubnet, path: str | Path, resolution: int | None = None, opset: int = 17,
                dynamic_batch: bool = False) -> Path:
    """Export a static subnet (fake quantisation off) to ONNX at ``resolution`` (default: the subnet's).

    Parameters
    ----------
    model : StaticSubnet
    path : str or Path
    resolution : int, optional
    opset : int
    dynamic_batch : bool

    Returns
    -------
    Path
    """
    path = Path(path)
    r = resolution or model.subnet.resolution
    model = model.eval().set_fake_quant(False)
    x = torch.zeros(1, model.space.hyperspace.in_channels, r, r)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], opset_version=opset,
                      dynamic_axes=axes, dynamo=False)
    return path


def _ort_backend(**opts):
    return create_backend("ort", **{"threads": 1, **opts})


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[np.ndarray] | None = None,
                  backend=None, calibrate_method: str = "minmax") -> Path:
    """INT8 copy of an ONNX model with the collector's ``ort`` backend settings.

    ``calibration=None`` uses the collector's own ``quantize_onnx_int8`` (seeded random inputs, as
    for latency measurement); otherwise the given input batches calibrate the activation ranges
    (needed for accuracy), with the same format, types, per-channel and symmetry settings, and
    ``calibrate_method`` (``minmax`` as the collector, ``percentile`` at 99.999 %, or ``entropy``); the
    method changes only the scales, not the graph that the collector times.

    Parameters
    ----------
    fp32_path, int8_path : str or Path
    calibration : iterable of numpy.ndarray, optional
    backend : Backend, optional
        Its quantisation settings are used (default: ``ort``, one thread).
    calibrate_method : str

    Returns
    -------
    Path
        ``int8_path``.

    Raises
    ------
    ValueError
        Unknown ``calibrate_method`` or empty ``calibration``.
    """
    if calibrate_method not in CALIBRATE_METHODS:
        raise ValueError(f"calibrate_method={calibrate_method!r} is not in {list(CALIBRATE_METHODS)}")
    import onnx

    be = backend or _ort_backend()
    q = quantize_onnx_int8(onnx.load(str(fp32_path)), seed=be.seed, n_calib=be.n_calib, quant_format=be.quant_format,
                           activation_type=be.activation_type, weight_type=be.weight_type, per_channel=be.per_channel,
                           calibration=calibration, calibrate_method=calibrate_method)
    onnx.save(q, str(int8_path))
    return Path(int8_path)


def onnx_accuracy(path: str | Path, loader) -> float:
    """Top-1 accuracy of an ONNX classifier on ``loader`` (whole batches if the model allows, else one by one).

    Parameters
    ----------
    path : str or Path
    loader : iterable of (images, labels)

    Returns
    -------
    float
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    dim0 = sess.get_inputs()[0].shape[0]
    batched = not isinstance(dim0, int)
    correct = total = 0
    for x, y in loader:
        xs = [x.numpy().astype(np.float32)] if batched else [xi[None] for xi in x.numpy().astype(np.float32)]
        out = np.concatenate([sess.run(None, {"input": xi})[0] for xi in xs])
        correct += int((out.argmax(1) == y.numpy()).sum())
        total += len(y)
    return correct / max(1, total)


def measure_latency_ms(fp32_path: str | Path, backend=None) -> dict:
    """INT8 latency of an FP32 ONNX model with the collector: ``quantize_onnx_int8`` + ``measure_model``.

    Returns the collector's ``TimingStats`` as a dict (``median_ms``, ``cv``, ``n``, ...).

    Parameters
    ----------
    fp32_path : str or Path
    backend : Backend, optional
        Default: ``ort``, one thread.

    Returns
    -------
    dict
    """
    import onnx

    be = backend or _ort_backend()
    return be.measure_model(onnx.load(str(fp32_path)), dtype="int8").as_dict()


def extract_subnet(checkpoint: str | Path, subnet: str, output: str | Path, space: str | None = None,
                   int8: bool = False, resolution: int | None = None) -> dict:
    """Extract ``subnet`` with its inherited weights, re-estimate BatchNorm, export ONNX (and an INT8 copy).

    BatchNorm statistics are re-estimated on the checkpoint's first ``bn_batches`` training batches with
    fake quantisation off (the float model is what onnxruntime quantises); the INT8 copy
    (``FILE.int8.onnx``) is calibrated on four of those images resized to the export resolution.

    Parameters
    ----------
    checkpoint : str or Path
        ``supernet.pt`` of ``train_supernet``.
    subnet : str
        Subnet encoding.
    output : str or Path
        The ONNX file.
    space : str, optional
        Checked against the checkpoint's search space when given.
    int8 : bool
    resolution : int, optional
        Export resolution (default: the subnet's).

    Returns
    -------
    dict
        ``subnet``, ``space``, ``onnx`` (and ``onnx_int8``).

    Raises
    ------
    ValueError
        ``space`` differs from the checkpoint's, or ``subnet`` is not a subnet of it.
    """
    net, state = load_supernet(checkpoint)
    if space is not None and str(net.space) != space:
        raise ValueError(f"--space {space!r} does not match the checkpoint's space {str(net.space)!r}")
    cfg = state["config"]
    data = load_dataset(cfg["dataset"], cfg["image_size"], cfg["val_fraction"], cfg["seed"])
    loader = DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=False)
    batches = [x for _, (x, _y) in zip(range(cfg["bn_batches"]), loader)]
    static = recalibrate_bn(net.extract(subnet).set_fake_quant(False), batches)  # BN as the float export runs
    path = export_onnx(static, output, resolution)
    result = {"subnet": subnet, "space": str(net.space), "onnx": str(path)}
    if int8:
        r = resolution or static.subnet.resolution
        calib = [F.interpolate(b[:1], size=(r, r), mode="bilinear").numpy() for b in batches]
        result["onnx_int8"] = str(quantize_int8(path, path.with_suffix(".int8.onnx"), calib[:4]))
    return result


def report_subnets(space, n_random: int, seed: int) -> list[str]:
    """Min, max and ``n_random`` seeded random subnets of ``space``, as encodings."""
    return [str(space.min_subnet()), str(space.max_subnet())] + [str(s) for s in space.sample(n_random, seed)]


def latency_report(checkpoint: str | Path, subnets: Sequence[str] | None = None, n_random: int = 3,
                   predictor: str | None = None, measure: bool = True, seed: int = 0,
                   eval_limit: int | None = None, repeats: int = 30, calibrate_method: str = "minmax"
                   ) -> list[dict]:
    """Per subnet: held-out top-1 (FP32, LSQ+ fake-quant, onnxruntime INT8), predicted and measured INT8 latency.

    Accuracy is at the training image size; latency at the subnet's resolution with the trained
    classifier. ``chance`` is ``1 / n_classes``.

    Parameters
    ----------
    checkpoint : str or Path
        ``supernet.pt`` of ``train_supernet``.
    subnets : sequence of str, optional
        Default: min, max and ``n_random`` random subnets.
    n_random : int
    predictor : str, optional
        Registered name or file of a latency predictor.
    measure : bool
        Time each subnet with the collector.
    seed : int
    eval_limit : int, optional
        Held-out images to score at most.
    repeats : int
    calibrate_method : str
        One of ``CALIBRATE_METHODS`` (of ``spaceevo.latency``).

    Returns
    -------
    list of dict
    """
    net, state = load_supernet(checkpoint)
    cfg = state["config"]
    data = load_dataset(cfg["dataset"], cfg["image_size"], cfg["val_fraction"], cfg["seed"])
    bn_loader = DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=False)
    bn_batches = [x for _, (x, _y) in zip(range(cfg["bn_batches"]), bn_loader)]
    calib = [b.numpy() for b in bn_batches[:4]]
    val = data.val if eval_limit is None else Subset(data.val, range(min(eval_limit, len(data.val))))
    val_loader = DataLoader(val, batch_size=128)
    names = list(subnets or []) or report_subnets(net.space, n_random, seed)
    pred = None
    if predictor:
        pred = load_predictor(predictor)
    backend = _ort_backend(repeats=repeats) if measure else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            # BN statistics follow what runs: float activations for the ONNX export (onnxruntime quantises
            # the float model), fake-quantised ones for the LSQ+ model
            static = recalibrate_bn(net.extract(name).set_fake_quant(False), bn_batches)
            sub = static.subnet
            row = {"subnet": name, "resolution": sub.resolution,
                   "flops_m": net.space.subnet_info(sub)["flops_m"], "chance": round(1.0 / net.n_classes, 4),
                   "acc_fp32": round(evaluate(static, val_loader), 4)}
            if net.qat:
                lsq = recalibrate_bn(net.extract(name).set_fake_quant(True), bn_batches)
                row["acc_lsq"] = round(evaluate(lsq, val_loader), 4)
            small = export_onnx(static, Path(tmp) / f"s{i}.onnx", resolution=cfg["image_size"], dynamic_batch=True)
            q = quantize_int8(small, Path(tmp) / f"s{i}_int8.onnx", calib, calibrate_method=calibrate_method)
            row["acc_int8_ort"] = round(onnx_accuracy(q, val_loader), 4)
            if pred is not None:
                # the exported model's blocks (the real classifier width), composed by the predictor itself
                blocks = [b.config for b in subnet_blocks(net.space, sub, net.n_classes)]
                row["predicted_ms"] = round(pred.predict_network(blocks), 3)
            if measure:
                full = export_onnx(static, Path(tmp) / f"f{i}.onnx")
                stats = measure_latency_ms(full, backend)
                row["measured_ms"] = round(stats["median_ms"], 3)
                row["measured_cv"] = round(stats["cv"], 3)
            if "predicted_ms" in row and "measured_ms" in row:
                row["pred_over_meas"] = round(row["predicted_ms"] / row["measured_ms"], 3)
            rows.append(row)
            log.info("%s", row)
    return rows
