"""onnxruntime backend: real INT8 quantisation (QDQ / QOperator) and real INT8 and FP32 timing."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from spaceevo.latency import (
    BlockUnit,
    TimingStats,
    cpu_isa_features,
    fingerprint_id,
    create_backend,
    list_backends,
    make_kernel,
    parse_cpuinfo,
    quantize_onnx_int8,
)
from spaceevo.latency._quantize import RandomCalibrationReader, input_feeds
from spaceevo.space import BlockConfig

FAST = {"repeats": 5, "warmup": 2, "min_sample_ms": 0.0, "max_attempts": 1}


def conv_model():
    return make_kernel("conv-bn-act", hw=8, cin=8, cout=16, act="relu").to_onnx(seed=0)


def test_qdq_graph_holds_int8_weights_per_channel():
    q = quantize_onnx_int8(conv_model())
    ops = [n.op_type for n in q.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    int8 = [a for a in inits.values() if a.dtype == np.int8 and a.ndim == 4]
    assert len(int8) == 1 and int8[0].shape == (16, 8, 3, 3)
    # per-channel: the weight's DequantizeLinear carries one scale per output channel
    w_name = next(n for n, a in inits.items() if a.dtype == np.int8 and a.ndim == 4)
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == w_name)
    assert inits[dq.input[1]].shape == (16,)
    # activations are uint8 by default
    assert any(a.dtype == np.uint8 for a in inits.values())


def test_qoperator_format_and_int8_activations():
    q = quantize_onnx_int8(conv_model(), quant_format="qoperator", activation_type="int8")
    ops = {n.op_type for n in q.graph.node}
    assert "QLinearConv" in ops
    zero_points = [numpy_helper.to_array(i) for i in q.graph.initializer if "zero_point" in i.name]
    assert zero_points and all(z.dtype == np.int8 for z in zero_points)


def test_quantized_model_stays_close_to_fp32():
    import onnxruntime as ort

    m = make_kernel("conv-bn-act", hw=8, cin=8, cout=8, act="relu6").to_onnx(seed=0)
    feeds = input_feeds(m, seed=0)
    run = lambda model: ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
    ref, q = run(m), run(quantize_onnx_int8(m, seed=0))
    assert np.abs(ref - q).mean() < 0.1 * np.abs(ref).mean() + 1e-3


def test_bad_quantisation_options_name_the_field():
    with pytest.raises(ValueError, match=r"quant_format='qlinear' is not in \['qdq', 'qoperator'\]"):
        quantize_onnx_int8(conv_model(), quant_format="qlinear")
    with pytest.raises(ValueError, match="activation_type='int4'"):
        create_backend("ort", activation_type="int4")


def test_calibration_reader_rewinds_and_is_seeded():
    r = RandomCalibrationReader(conv_model(), n=3, seed=5)
    first = [r.get_next() for _ in range(4)]
    assert first[-1] is None
    r.rewind()
    again = r.get_next()
    np.testing.assert_array_equal(again["input"], first[0]["input"])


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_real_measurement_of_tiny_units(dtype):
    be = create_backend("ort", **FAST)
    for unit in (make_kernel("relu", hw=8, cin=8), BlockUnit(BlockConfig("MobileNetV2ResBlock", 8, 16, 16, 3, 4.0, 1,
                                                                           "relu6"))):
        s = be.measure(unit, dtype)
        assert isinstance(s, TimingStats)
        assert s.n == 5 and s.loops == 1 and s.attempts == 1
        assert 0 < s.min_ms <= s.median_ms <= s.p90_ms
        assert s.cv == pytest.approx(s.std_ms / s.mean_ms)
        assert s["median_ms"] == s.median_ms and set(s.as_dict()) >= {"median_ms", "cv", "n"}


def test_short_units_are_timed_in_loops_of_min_sample_ms():
    be = create_backend("ort", repeats=3, warmup=3, min_sample_ms=1.0, max_attempts=1)
    s = be.measure(make_kernel("relu", hw=4, cin=8), "int8")
    assert s.loops > 1 and s.n == 3


def test_high_cv_triggers_remeasurement():
    be = create_backend("ort", repeats=3, warmup=1, min_sample_ms=0.0, max_cv=1e-9, max_attempts=3)
    s = be.measure(make_kernel("relu", hw=4, cin=8), "fp32")
    assert s.attempts == 3


def test_measure_model_times_a_ready_model():
    be = create_backend("ort", **FAST)
    assert be.measure_model(quantize_onnx_int8(conv_model()))["median_ms"] > 0
    assert be.measure_model(conv_model(), dtype="int8").n == 5


def test_timing_pins_then_restores_affinity():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("this OS has no sched_getaffinity")
    before = os.sched_getaffinity(0)
    be = create_backend("ort", **FAST)
    assert len(be.pin_cores()) == 1 and be.pin_cores()[0] in before
    be.measure(make_kernel("relu", hw=4, cin=8), "fp32")
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="not allowed for this process"):
        create_backend("ort", cores=[10_000]).pin_cores()


def test_fingerprint_records_what_makes_a_number_reproducible():
    be = create_backend("ort")
    fp = be.fingerprint("int8")
    assert fp["backend"] == "ort" and fp["dtype"] == "int8" and fp["threads"] == 1
    assert set(fp["runtime"]) == {"onnxruntime", "onnx"}
    assert {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx"} <= set(fp["isa"]) or fp["machine"] != "x86_64"
    assert fp["settings"]["quant_format"] == "qdq" and fp["pinned_cores"]
    assert {"cpu", "os", "python"} <= set(fp)
    assert fingerprint_id(fp) == be.fingerprint_id("int8") != be.fingerprint_id("fp32")


def test_cpuinfo_parsing_for_x86_and_arm():
    x86 = "processor : 0\nmodel name : AMD EPYC 9R14\nflags : fpu avx2 avx512f avx512_vnni avx_vnni\n"
    name, flags = parse_cpuinfo(x86)
    assert name == "AMD EPYC 9R14"
    assert cpu_isa_features(flags) == {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx_vnni": True,
                                       "amx": False}
    arm = "processor : 0\nFeatures : fp asimd evtstrm aes asimddp i8mm\nHardware : Qualcomm SM8150\n"
    name, flags = parse_cpuinfo(arm)
    assert name == "Qualcomm SM8150"
    assert cpu_isa_features(flags) == {"dotprod": True, "i8mm": True, "sve": False, "sve2": False}


def test_backend_registry_errors_list_valid_names():
    assert list_backends() == ["adb", "ort", "tflite"]
    with pytest.raises(ValueError, match="unknown backend 'openvino'; valid backends: adb, ort, tflite"):
        create_backend("openvino")
    with pytest.raises(ValueError, match="backend 'ort': bad option"):
        create_backend("ort", thread=2)
    with pytest.raises(ValueError, match="repeats=1 must be an integer >= 2"):
        create_backend("ort", repeats=1)
    with pytest.raises(ValueError, match=r"dtype='int4' is not in \['int8', 'fp32'\]"):
        create_backend("ort").measure(make_kernel("relu", hw=4, cin=4), "int4")


def test_quantized_model_is_valid_onnx():
    onnx.checker.check_model(quantize_onnx_int8(conv_model()))


def test_clock_choice():
    assert create_backend("ort").resolved_clock() == "cpu"
    assert create_backend("ort", threads=2).resolved_clock() == "wall"
    assert create_backend("ort", clock="wall").fingerprint("int8")["protocol"]["clock"] == "wall"
    with pytest.raises(ValueError, match="clock='cpu' times the calling thread only"):
        create_backend("ort", threads=2, clock="cpu")
    with pytest.raises(ValueError, match=r"clock='tsc' is not in \['auto', 'wall', 'cpu'\]"):
        create_backend("ort", clock="tsc")
    s = create_backend("ort", clock="wall", **FAST).measure(make_kernel("relu", hw=4, cin=8), "fp32")
    assert s.median_ms > 0
