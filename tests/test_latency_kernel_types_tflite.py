"""The model kernel types' Keras builders (the non-trivial ones) convert to full-integer INT8 TFLite models."""

from __future__ import annotations

import importlib.util

import pytest

from spaceevo.latency import KernelUnit

pytestmark = [pytest.mark.tflite, pytest.mark.slow]

if not all(importlib.util.find_spec(m) for m in ("tensorflow", "ai_edge_litert")):
    pytest.skip("TensorFlow / ai-edge-litert are not installed (pip install 'spaceevo[tflite]')",
                allow_module_level=True)

from spaceevo.latency._tflite import unit_to_tflite  # noqa: E402

from test_latency_kernel_types import CONFIGS  # noqa: E402


@pytest.mark.parametrize("name", ["dwconv", "se-mid", "split", "shuffle", "eltwise", "resize"])
def test_model_kernel_converts_to_int8_tflite(name):
    blob = unit_to_tflite(KernelUnit(name, CONFIGS[name]), "int8", seed=0)
    assert isinstance(blob, bytes) and len(blob) > 100
