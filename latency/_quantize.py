"""Static INT8 quantisation of ONNX models with onnxruntime's own ``quantize_static``."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

QUANT_FORMATS: tuple[str, ...] = ("qdq", "qoperator")
QUANT_TYPES: tuple[str, ...] = ("uint8", "int8")

_ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def input_feeds(model, seed: int = 0) -> dict[str, np.ndarray]:
    """One seeded standard-normal array per graph input (batch 1), keyed by input name."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = tuple(max(1, d.dim_value) for d in tt.shape.dim)
        feeds[inp.name] = rng.standard_normal(shape).astype(_ONNX_DTYPES.get(tt.elem_type, np.float32))
    return feeds


class RandomCalibrationReader:
    """A ``CalibrationDataReader`` over ``n`` seeded random inputs, with ``rewind()``."""

    def __init__(self, model, n: int = 8, seed: int = 0) -> None:
        self.data = [input_feeds(model, seed + i) for i in range(n)]
        self._it = iter(self.data)

    def get_next(self) -> dict | None:
        """The next calibration feed, or None at the end."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Start over."""
        self._it = iter(self.data)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not in {list(allowed)}")
    return value


def quantize_onnx_int8(model, seed: int = 0, n_calib: int = 8, quant_format: str = "qdq",
                       activation_type: str = "uint8", weight_type: str = "int8", per_channel: bool = True):
    """INT8 copy of an FP32 ``onnx.ModelProto``: static quantisation calibrated on seeded random inputs.

    Defaults: QDQ format, per-channel int8 weights, uint8 activations (VNNI's u8 x s8 path).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    _check("quant_format", quant_format, QUANT_FORMATS)
    _check("activation_type", activation_type, QUANT_TYPES)
    _check("weight_type", weight_type, QUANT_TYPES)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[quant_format]

    class _Reader(RandomCalibrationReader, CalibrationDataReader):
        pass

    reader = _Reader(model, n=n_calib, seed=seed)
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quantize_static logs a pre-processing hint per model
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            onnx.save(model, str(src))
            quantize_static(str(src), str(dst), reader, quant_format=fmt, per_channel=per_channel,
                            activation_type=qtype[activation_type], weight_type=qtype[weight_type],
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            return onnx.load(str(dst))
    finally:
        root.setLevel(level)
