"""Static INT8 quantisation of ONNX models with onnxruntime's own ``quantize_static``."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

log = logging.getLogger(__name__)

QUANT_FORMATS: tuple[str, ...] = ("qdq", "qoperator")
QUANT_TYPES: tuple[str, ...] = ("uint8", "int8")
CALIBRATE_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")

_ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def input_feeds(model, seed: int = 0) -> dict[str, np.ndarray]:
    """One seeded standard-normal array per graph input (batch 1), keyed by input name.

    Parameters
    ----------
    model : onnx.ModelProto
    seed : int

    Returns
    -------
    dict of str to numpy.ndarray
    """
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
    """A ``CalibrationDataReader`` over ``n`` seeded random inputs, with ``rewind()``.

    Parameters
    ----------
    model : onnx.ModelProto
    n : int
        Inputs.
    seed : int
        Seed of the first input (the others follow).
    """

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


class BatchCalibrationReader:
    """A ``CalibrationDataReader`` over given input batches of a one-input model, with ``rewind()``.

    Parameters
    ----------
    name : str
        The model's input name.
    batches : iterable of numpy.ndarray
        Input batches (converted to contiguous float32).

    Raises
    ------
    ValueError
        ``batches`` is empty.
    """

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self.name = name
        self.data = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
        if not self.data:
            raise ValueError("calibration is empty: give at least one input batch, or None for random calibration")
        self._it = iter(self.data)

    def get_next(self) -> dict | None:
        """The next calibration feed, or None at the end."""
        b = next(self._it, None)
        return None if b is None else {self.name: b}

    def rewind(self) -> None:
        """Start over."""
        self._it = iter(self.data)


def _inline_identity_initializers(model):
    """A copy of ``model`` where each Identity of an initializer is replaced by a copy of that initializer.

    ``torch.onnx`` constant folding shares equal tensors (e.g. the zero biases of freshly folded BatchNorms)
    through Identity nodes; ``quantize_static`` sees no initializer behind them and leaves those
    convolutions in FP32. onnxruntime's own pre-processing removes such Identities the same way.
    """
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    identities = [n for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits]
    if not identities:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph_outputs = {o.name for o in out.graph.output}
    keep = []
    for n in out.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in graph_outputs:
            out.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[n.input[0]]),
                                                                 n.output[0]))
        else:
            keep.append(n)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


def quantize_onnx_int8(model, seed: int = 0, n_calib: int = 8, quant_format: str = "qdq",
                       activation_type: str = "uint8", weight_type: str = "int8", per_channel: bool = True,
                       calibration: Iterable[np.ndarray] | None = None, calibrate_method: str = "minmax"):
    """INT8 copy of an FP32 ``onnx.ModelProto`` with onnxruntime's ``quantize_static``.

    Defaults: QDQ format, per-channel int8 weights, uint8 activations (VNNI's u8 x s8 path), asymmetric
    activations and symmetric weights, calibrated on ``n_calib`` seeded random inputs (as for latency).
    Identity nodes of initializers (shared tensors of a ``torch.onnx`` export) are inlined first, as
    onnxruntime's quantisation pre-processing does, so that every convolution gets its integer kernel.

    Parameters
    ----------
    model : onnx.ModelProto
        The FP32 model.
    seed, n_calib : int
        Seed and number of the random calibration inputs (when ``calibration`` is None).
    quant_format : str
        One of ``QUANT_FORMATS``.
    activation_type, weight_type : str
        One of ``QUANT_TYPES``.
    per_channel : bool
        Per-channel weight scales.
    calibration : iterable of numpy.ndarray, optional
        Input batches of the model's first input to calibrate the activation ranges on (accuracy needs real
        data); the format, types, per-channel and symmetry settings stay the same.
    calibrate_method : str
        One of ``CALIBRATE_METHODS`` (``minmax``; ``percentile`` at 99.999 %; ``entropy``): it changes the
        scales only, not the graph that the collector times.

    Returns
    -------
    onnx.ModelProto
        The INT8 (QDQ or QOperator) model.

    Raises
    ------
    ValueError
        A setting is not one of its allowed values, or ``calibration`` is empty.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    _check("quant_format", quant_format, QUANT_FORMATS)
    _check("activation_type", activation_type, QUANT_TYPES)
    _check("weight_type", weight_type, QUANT_TYPES)
    if calibrate_method not in CALIBRATE_METHODS:
        raise ValueError(f"calibrate_method={calibrate_method!r} is not in {list(CALIBRATE_METHODS)}")
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[quant_format]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    options = {}
    if calibration is None:
        class _Reader(RandomCalibrationReader, CalibrationDataReader):
            pass

        reader = _Reader(model, n=n_calib, seed=seed)
    else:
        class _Batches(BatchCalibrationReader, CalibrationDataReader):
            pass

        reader = _Batches(model.graph.input[0].name, calibration)
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        options["calibrate_method"] = methods[calibrate_method]
        extra["CalibPercentile"] = 99.999
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quantize_static logs a pre-processing hint per model
    ort.set_default_logger_severity(3)  # its calibration sessions warn about every folded initializer
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            onnx.save(_inline_identity_initializers(model), str(src))
            quantize_static(str(src), str(dst), reader, quant_format=fmt, per_channel=per_channel,
                            activation_type=qtype[activation_type], weight_type=qtype[weight_type],
                            extra_options=extra, **options)
            return onnx.load(str(dst))
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # onnxruntime's default
