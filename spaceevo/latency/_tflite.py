"""TFLite: full-integer INT8 (or FP32) conversion with ``tf.lite.TFLiteConverter``, timed with LiteRT."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
from typing import Any

import numpy as np

from ._backend import Backend, check_dtype
from ._stats import TimingStats

log = logging.getLogger(__name__)


def _import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_native():  # TensorFlow logs start-up notes from C++ before its log level applies
            import tensorflow as tf
    except ImportError as exc:
        raise ImportError(f"the tflite backend needs TensorFlow: pip install 'spaceevo[tflite]' ({exc})") from None
    return tf


def _keras_input_shapes(model) -> list[tuple[int, ...]]:
    return [tuple(int(d or 1) for d in t.shape) for t in model.inputs]


def convert_keras_to_tflite(model, dtype: str = "int8", seed: int = 0, n_calib: int = 8) -> bytes:
    """A ``.tflite`` flatbuffer of a Keras model: FP32, or full-integer INT8 (int8 input and output).

    INT8 uses a representative dataset of ``n_calib`` seeded random inputs.
    """
    check_dtype(dtype)
    tf = _import_tf()
    shapes = _keras_input_shapes(model)

    def representative():
        rng = np.random.default_rng(seed)
        for _ in range(n_calib):
            yield [rng.standard_normal(s).astype(np.float32) for s in shapes]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with quiet_native():  # Keras prints the SavedModel it writes; the converter logs from C++
        return conv.convert()


@contextlib.contextmanager
def quiet_native():
    """Silence Python and native (C++) stdout/stderr chatter of TensorFlow and LiteRT in the block."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    saved = []
    try:
        import sys
        import warnings

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        logger.setLevel(level)


def unit_to_tflite(unit, dtype: str = "int8", seed: int = 0, n_calib: int = 8) -> bytes:
    """Build the unit's Keras model and convert it (see :func:`convert_keras_to_tflite`)."""
    _import_tf()
    return convert_keras_to_tflite(unit.to_keras(seed=seed), dtype, seed, n_calib)


def tflite_tensor_types(model: bytes) -> dict[str, str]:
    """Tensor name -> numpy dtype name of a ``.tflite`` model (via the LiteRT interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    return {d["name"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(s) for s in detail["shape"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


class TfliteBackend(Backend):
    """TFLite models timed on this host with the LiteRT interpreter (XNNPACK on by default)."""

    name = "tflite"
    supports_reference = True
    extra = "tflite"

    def __init__(self, threads: int = 1, repeats: int = 50, warmup: int = 10, max_cv: float = 0.05,
                 max_attempts: int = 3, cores: list[int] | None = None, seed: int = 0, min_sample_ms: float = 2.0,
                 clock: str = "auto", xnnpack: bool = True, n_calib: int = 8, reference: bool = False,
                 ref_sample_ms: float = 1.0) -> None:
        super().__init__(threads, repeats, warmup, max_cv, max_attempts, cores, seed, min_sample_ms, clock,
                         reference, ref_sample_ms)
        self.xnnpack = bool(xnnpack)
        self.n_calib = n_calib

    def available(self) -> bool:
        """True when TensorFlow (converter) and ai-edge-litert (interpreter) are importable."""
        return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "ai_edge_litert"))

    def runtime_versions(self) -> dict:
        """TensorFlow and LiteRT versions."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for name in ("tensorflow-cpu", "tensorflow", "ai-edge-litert", "keras"):
            try:
                out[name] = version(name)
            except PackageNotFoundError:
                pass
        return out

    def settings(self, dtype: str) -> dict:
        """Interpreter and conversion settings."""
        out = {"xnnpack": self.xnnpack, "interpreter": "ai_edge_litert"}
        if dtype == "int8":
            out.update(quantization="full-integer", io_type="int8", n_calib=self.n_calib)
        return out

    def prepare(self, unit, dtype: str) -> bytes:
        """The unit converted to a ``.tflite`` flatbuffer."""
        return unit_to_tflite(unit, dtype, self.seed, self.n_calib)

    def interpreter(self, model: bytes):
        """A fresh LiteRT interpreter with the backend's threads and delegate settings."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if self.xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with quiet_native():
            it = Interpreter(model_content=model, num_threads=self.threads, experimental_op_resolver_type=resolver)
            it.allocate_tensors()
        return it

    def open_runner(self, artifact: bytes):
        """One inference of ``artifact`` per call, in a fresh interpreter (timed by the base ``time_once``)."""
        it = self.interpreter(artifact)
        rng = np.random.default_rng(self.seed)
        for d in it.get_input_details():
            it.set_tensor(d["index"], _random_input(d, rng))
        return it.invoke

    def measure_model(self, model: bytes) -> TimingStats:
        """Time a ready ``.tflite`` flatbuffer under the protocol."""
        self.require()
        return self.measure_artifact(model)
