"""onnxruntime on the CPU: INT8 via ``quantize_static`` (QDQ by default), FP32 as built."""

from __future__ import annotations

import importlib.util
from typing import Any

from ._backend import Backend, check_dtype
from ._quantize import QUANT_FORMATS, QUANT_TYPES, _check, input_feeds, quantize_onnx_int8
from ._stats import TimingStats


class OrtBackend(Backend):
    """onnxruntime CPU execution provider; sequential execution, full graph optimisation."""

    name = "ort"
    extra = ""
    supports_reference = True

    def __init__(self, threads: int = 1, repeats: int = 50, warmup: int = 10, max_cv: float = 0.05,
                 max_attempts: int = 3, cores: list[int] | None = None, seed: int = 0,
                 min_sample_ms: float = 2.0, clock: str = "auto", quant_format: str = "qdq",
                 activation_type: str = "uint8", weight_type: str = "int8", per_channel: bool = True,
                 n_calib: int = 8, reference: bool = False, ref_sample_ms: float = 1.0) -> None:
        super().__init__(threads, repeats, warmup, max_cv, max_attempts, cores, seed, min_sample_ms, clock,
                         reference, ref_sample_ms)
        self.quant_format = _check("quant_format", quant_format, QUANT_FORMATS)
        self.activation_type = _check("activation_type", activation_type, QUANT_TYPES)
        self.weight_type = _check("weight_type", weight_type, QUANT_TYPES)
        self.per_channel = bool(per_channel)
        self.n_calib = n_calib

    def available(self) -> bool:
        """True when onnxruntime is importable."""
        return importlib.util.find_spec("onnxruntime") is not None

    def runtime_versions(self) -> dict:
        """onnxruntime and onnx versions."""
        import onnx
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def settings(self, dtype: str) -> dict:
        """Quantisation settings (INT8) and session settings."""
        out = {"execution": "sequential", "graph_optimization": "all", "provider": "CPUExecutionProvider"}
        if dtype == "int8":
            out.update(quant_format=self.quant_format, activation_type=self.activation_type,
                       weight_type=self.weight_type, per_channel=self.per_channel)
        return out

    def prepare(self, unit, dtype: str) -> Any:
        """The unit's ONNX model, quantised to INT8 when ``dtype == 'int8'``."""
        check_dtype(dtype)
        model = unit.to_onnx(seed=self.seed)
        if dtype == "int8":
            model = quantize_onnx_int8(model, seed=self.seed, n_calib=self.n_calib, quant_format=self.quant_format,
                                       activation_type=self.activation_type, weight_type=self.weight_type,
                                       per_channel=self.per_channel)
        return model

    def session(self, model, threads: int | None = None):
        """A fresh onnxruntime session with the backend's settings (``threads``: other than the backend's)."""
        import onnxruntime as ort

        threads = self.threads if threads is None else threads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads == 1:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])

    def open_runner(self, artifact: Any, threads: int | None = None):
        """One inference of ``artifact`` per call, in a fresh session (timed by the base ``time_once``)."""
        import onnx

        model = artifact if isinstance(artifact, onnx.ModelProto) else onnx.load_from_string(artifact)
        feeds = input_feeds(model, self.seed)
        run = self.session(model, threads).run
        return lambda: run(None, feeds)

    def reference_threads(self) -> int:
        """1: with more intra-op threads, the reference's idle pool spins on the cores the unit beside it needs
        (2 threads on this 2-core VM: units read 3.3x slower than with 1 thread, round CV 38%)."""
        return 1

    def open_reference_runner(self, artifact: Any):
        """The reference block in a one-thread session without spinning (see :meth:`reference_threads`)."""
        return self.open_runner(artifact, threads=1)

    def measure_model(self, model, dtype: str | None = None) -> TimingStats:
        """Time an ONNX model as given (already INT8 or FP32), or quantise it first with ``dtype='int8'``."""
        self.require()
        if dtype is not None and check_dtype(dtype) == "int8":
            model = quantize_onnx_int8(model, seed=self.seed, n_calib=self.n_calib, quant_format=self.quant_format,
                                       activation_type=self.activation_type, weight_type=self.weight_type,
                                       per_channel=self.per_channel)
        return self.measure_artifact(model)
