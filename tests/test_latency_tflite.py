"""tflite backend: full-integer INT8 conversion really yields int8 tensors; LiteRT timing works."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from spaceevo.latency import BlockUnit, create_backend, make_kernel
from spaceevo.space import BlockConfig

pytestmark = [pytest.mark.tflite, pytest.mark.slow]

if not all(importlib.util.find_spec(m) for m in ("tensorflow", "ai_edge_litert")):
    pytest.skip("TensorFlow / ai-edge-litert are not installed (pip install 'spaceevo[tflite]')",
                allow_module_level=True)

from spaceevo.latency._tflite import tflite_tensor_types, unit_to_tflite  # noqa: E402

FAST = {"repeats": 5, "warmup": 2, "min_sample_ms": 0.0, "max_attempts": 1}


@pytest.fixture(scope="module")
def int8_block() -> bytes:
    cfg = BlockConfig("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1, "relu6")
    return unit_to_tflite(BlockUnit(cfg), "int8", seed=0)


def test_int8_model_has_int8_io_and_weights(int8_block):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=int8_block)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8
    types = tflite_tensor_types(int8_block)
    assert "float32" not in types.values()
    assert list(types.values()).count("int8") >= 5  # activations and conv weights
    assert set(types.values()) <= {"int8", "int32"}  # int32 only for biases and shape constants


def test_fp32_model_stays_float():
    m = unit_to_tflite(make_kernel("conv-bn-act", hw=8, cin=8, cout=8), "fp32")
    assert "int8" not in tflite_tensor_types(m).values()


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_litert_measurement(dtype):
    be = create_backend("tflite", **FAST)
    s = be.measure(make_kernel("dwconv-bn-act", hw=8, cin=16), dtype)
    assert s.n == 5 and 0 < s.min_ms <= s.median_ms
    fp = be.fingerprint(dtype)
    assert fp["settings"]["xnnpack"] is True and "ai-edge-litert" in fp["runtime"]


def test_xnnpack_can_be_switched_off(int8_block):
    be = create_backend("tflite", xnnpack=False, **FAST)
    assert be.measure_model(int8_block).n == 5
    assert be.fingerprint("int8")["settings"]["xnnpack"] is False
