"""The model kernel types: each builds, runs FP32 and INT8 in onnxruntime, validates its config, draws at random."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from spaceevo.latency import MODEL_KERNELS, KernelUnit, input_feeds, kernel_shapes, make_unit, quantize_onnx_int8
from spaceevo.latency._samplers import sample_random

CONFIGS = {
    "conv": dict(hw=16, cin=8, cout=16, k=3, stride=2, act="relu6"),
    "dwconv": dict(hw=16, cin=8, cout=8, groups=8, k=5, act="hswish"),
    "gconv": dict(hw=8, cin=16, cout=16, groups=4, k=7, kw=1),
    "linear": dict(cin=32, cout=10, act="relu"),
    "eltwise": dict(hw=8, cin=8, op="mul", shape="channel"),
    "act": dict(hw=8, cin=8, act="gelu"),
    "pool": dict(hw=8, cin=4, k=2, stride=2, op="avg"),
    "gpool": dict(hw=7, cin=8),
    "concat-n": dict(hw=4, cout=10, n=3),
    "split": dict(hw=4, cin=8),
    "shuffle": dict(hw=4, cin=8),
    "layout": dict(hw=4, cin=8, op="transpose"),
    "resize": dict(hw=4, cin=8, mode="linear"),
    "pad": dict(hw=4, cin=3),
    "softmax": dict(cin=10),
    "se-mid": dict(hw=4, cin=16, mid=8, gate="sigmoid"),
    "bn": dict(hw=4, cin=3),
}


def _run(model):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, input_feeds(model))[0]


@pytest.mark.parametrize("name", MODEL_KERNELS)
def test_model_kernel_builds_and_runs_fp32_and_int8(name):
    unit = KernelUnit(name, CONFIGS[name])
    fp32 = unit.to_onnx(seed=0)
    out = _run(fp32)
    assert np.isfinite(out).all() and out.size == kernel_shapes(name, unit.config)[1] or name == "split"
    assert np.isfinite(_run(quantize_onnx_int8(fp32))).all()
    assert make_unit("kernel", name, unit.config).key == unit.key


def test_bad_model_kernel_configs_name_the_field():
    with pytest.raises(ValueError, match=r"act='mish' is not in \['none'"):
        KernelUnit("conv", dict(hw=8, cin=8, cout=8, act="mish"))
    with pytest.raises(ValueError, match="groups=3 must divide cin=8"):
        KernelUnit("gconv", dict(hw=8, cin=8, cout=8, groups=3))
    with pytest.raises(ValueError, match=r"needs field\(s\) \['cin'\]"):
        KernelUnit("pool", dict(hw=8))


def test_random_sampler_draws_model_kernels_only_when_asked():
    units = sample_random(limit=20, seed=0, kind="kernel", kernels=["conv", "eltwise", "se-mid"])
    assert {u.type for u in units} <= {"conv", "eltwise", "se-mid"} and len(units) == 20
    assert not {u.type for u in sample_random(limit=30, seed=0, kind="kernel")} & set(MODEL_KERNELS)


def test_zoo_sampler_draws_distinct_kernels_of_real_networks():
    from spaceevo.latency import get_sampler

    units = get_sampler("zoo")(limit=30, seed=1, families=["mobilenetv3", "shufflenetv2"], resolutions=[64])
    assert len(units) == 30 == len({u.key for u in units})
    assert {"se-mid", "shuffle"} & {u.type for u in units}
    only = get_sampler("zoo")(limit=5, seed=1, families=["resnet"], resolutions=[64], kernels=["eltwise"])
    assert {u.type for u in only} == {"eltwise"}
    with pytest.raises(ValueError, match="use kind='kernel'"):
        get_sampler("zoo")(kind="block")
