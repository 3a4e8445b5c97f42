"""A minimal onnxruntime INT8 timer, used by ``validate`` and the profiling helper only when the
collector's ``spaceevo.latency`` backends are not installed in this checkout.

Protocol (nn-Meter's, as the collector's): quantise ahead of timing (``quantize_static``, QDQ,
per-channel int8 weights, uint8 activations, seeded random calibration), one fresh session per model,
1 intra-op thread, sequential execution, full graph optimisation, process pinned to one core,
warm-up runs, then the median of timed runs.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _input_shape(model) -> tuple[int, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(max(1, d.dim_value) for d in dims)


def quantize_int8(model, seed: int = 0, n_calib: int = 4):
    """Static INT8 quantisation (QDQ, per-channel s8 weights, u8 activations) with random calibration."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    shape = _input_shape(model)
    name = model.graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(seed)
            self.data = [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n_calib)]
            self.it = iter(self.data)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(self.data)

    import onnx

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static logs a pre-processing hint per model at WARNING
    try:
        return _quantize(model, _Reader(), quantize_static, QuantFormat, QuantType, onnx)
    finally:
        root.setLevel(level)


def _quantize(model, reader, quantize_static, QuantFormat, QuantType, onnx):
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(dst)


def time_onnx(model, threads: int = 1, warmup: int = 10, repeats: int = 50, seed: int = 0) -> dict:
    """Median/mean/min/CV (ms) of ``repeats`` runs of a fresh session after ``warmup`` runs."""
    import onnxruntime as ort

    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[-1]})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(seed).standard_normal(_input_shape(model)).astype(np.float32)
    feed = {inp.name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(times)
    mean = statistics.fmean(times)
    std = statistics.pstdev(times)
    return {"median_ms": med, "mean_ms": mean, "std_ms": std, "min_ms": min(times),
            "p90_ms": float(np.percentile(times, 90)), "cv": std / mean if mean else 0.0, "n": repeats}


def measure_int8(model, threads: int = 1, warmup: int = 10, repeats: int = 50, seed: int = 0,
                 max_cv: float = 0.05) -> dict:
    """Quantise then time; re-measure once (keeping the steadier run) when the CV exceeds ``max_cv``."""
    q = quantize_int8(model, seed=seed)
    stats = time_onnx(q, threads=threads, warmup=warmup, repeats=repeats, seed=seed)
    if stats["cv"] > max_cv:
        again = time_onnx(q, threads=threads, warmup=warmup, repeats=repeats, seed=seed)
        stats = min(stats, again, key=lambda s: s["cv"])
    return stats


def cpu_slug() -> str:
    """Short id of this CPU, e.g. ``amd-epyc``, for default device ids."""
    import platform
    import re

    name = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1]
                break
    except OSError:
        pass
    words = re.findall(r"[a-z0-9]+", name.lower())
    words = [w for w in words if w not in ("processor", "cpu", "r", "tm", "core", "with")][:2]
    return "-".join(words) or "cpu"
