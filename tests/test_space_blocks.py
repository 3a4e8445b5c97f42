"""Every registered block type: ONNX validity, runtime output shape, Keras shape, MACs and params."""

from __future__ import annotations

import numpy as np
import pytest

from spaceevo.space import BlockConfig, block_to_keras, block_to_onnx, get_block, list_blocks, make_divisible

# (hw, cin, cout, k, stride, act): identity residual, strided width change, big kernel, odd hw
_SHAPES = [(14, 16, 16, 3, 1, "relu"), (15, 16, 24, 5, 2, "relu6"), (8, 24, 16, 7, 1, "hswish"),
           (9, 8, 8, 3, 2, "swish")]


def _configs(name: str) -> list[BlockConfig]:
    if name == "LogitsBlock":
        return [BlockConfig(name, 1, 64, 10, k=1), BlockConfig(name, 1, 24, 1000, k=1, act="relu6")]
    uses_e = get_block(name).uses_expand
    out = []
    for i, (hw, cin, cout, k, s, act) in enumerate(_SHAPES):
        e = (1.0, 4.0, 6.0, 0.5)[i] if uses_e else 0.0
        if name in ("FinalExpandBlock", "FeatureMixBlock"):
            k, s = 1, 1
        out.append(BlockConfig(name, hw, cin, cout, k, e, s, act))
    return out


CONFIGS = [cfg for name in list_blocks() for cfg in _configs(name)]


def test_registry_is_complete() -> None:
    expected = {"FirstConv", "FinalExpand", "FeatureMix", "Logits", "MobileNetV1Dual", "MobileNetV2", "MobileNetV2Res",
                "MobileNetV3Res", "MobileNetV2K3Res", "MobileNetV3K3Res", "ResNet", "ResNetSE", "FusedMBConvRes",
                "FusedMBConvSERes"}
    assert set(list_blocks()) == {f"{n}Block" for n in expected}


def _onnx_macs(model) -> int:
    """MACs of Conv / Gemm / MatMul counted from the inferred shapes of the ONNX graph."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = weights[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            w = weights[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * w[1]  # transB=1: w is (N, K)
        elif node.op_type == "MatMul":
            total += int(np.prod(shapes[node.output[0]])) * shapes[node.input[0]][-1]
    return total


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.to_string().replace(" ", ","))
def test_onnx_block_checks_runs_and_counts(cfg: BlockConfig) -> None:
    import onnx
    import onnxruntime as ort

    model = block_to_onnx(cfg, seed=1)
    onnx.checker.check_model(model, full_check=True)
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]  # folded away
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(cfg.input_shape).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == cfg.output_shape
    assert np.isfinite(y).all()
    assert _onnx_macs(model) == cfg.macs
    # deterministic weights from the seed
    assert block_to_onnx(cfg, seed=1).SerializeToString() == model.SerializeToString()
    assert block_to_onnx(cfg, seed=2).SerializeToString() != model.SerializeToString()


def _onnx_weight_params(model) -> int:
    """Elements of the ONNX weight tensors (conv kernels and FC matrices, not biases or scalars)."""
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) >= 2)


def _bn(c: int) -> int:
    return 2 * c


def _se(ch: int, mid: int) -> int:
    return 2 * ch * mid + mid + ch


def _expected_params(cfg: BlockConfig) -> int:
    """Trainable parameters written out by hand from SPACEEVO.md section 3 (BN affine = 2 per channel)."""
    t, ci, co, k, e, s = cfg.type, cfg.cin, cfg.cout, cfg.k, cfg.e, cfg.stride
    short = 0 if (s == 1 and ci == co) else ci * co + _bn(co)
    if t == "FirstConvBlock":
        return ci * co * k * k + _bn(co)
    if t == "FinalExpandBlock":
        return ci * co + _bn(co)
    if t == "FeatureMixBlock":
        return ci * co
    if t == "LogitsBlock":
        return ci * co + co
    if t == "MobileNetV1DualBlock":
        return ci * k * k + _bn(ci) + ci * co + _bn(co) + co * k * k + _bn(co) + co * co + _bn(co) + short
    if t in ("MobileNetV2Block", "MobileNetV2ResBlock", "MobileNetV3ResBlock", "MobileNetV2K3ResBlock",
             "MobileNetV3K3ResBlock"):
        h = make_divisible(ci * e)
        n = (h * ci + _bn(h)) if h != ci else 0
        n += h * 9 * (k - 1) // 2 + _bn(h) if "K3" in t else h * k * k + _bn(h)
        n += _se(h, make_divisible(h / 4)) if "V3" in t else 0
        n += h * co + _bn(co)
        return n + (0 if t == "MobileNetV2Block" else short)
    if t in ("ResNetBlock", "ResNetSEBlock"):
        h = make_divisible(co * e)
        n = ci * h + _bn(h) + h * h * k * k + _bn(h) + h * co + _bn(co)
        return n + (_se(h, make_divisible(ci / 4)) if "SE" in t else 0) + short
    if t in ("FusedMBConvResBlock", "FusedMBConvSEResBlock"):
        h = make_divisible(ci * e)
        n = ci * h * k * k + _bn(h) + h * co + _bn(co)
        return n + (_se(h, make_divisible(ci / 4)) if "SE" in t else 0) + short
    raise AssertionError(f"no hand formula for {t}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.to_string().replace(" ", ","))
def test_params_match_hand_count_and_onnx_weights(cfg: BlockConfig) -> None:
    assert cfg.params == _expected_params(cfg)
    # BN is folded in the ONNX graph; the kernels themselves must match the trainable model's kernels
    model = block_to_onnx(cfg)
    weights = _onnx_weight_params(model)
    biases = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) == 1)
    assert weights <= cfg.params <= weights + 2 * biases
    assert weights + biases <= cfg.params


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (1, 12, 16, 20, 67.2, 100)] == [8, 16, 16, 24, 64, 104]


def test_k3_stack_and_plain_residual_structure() -> None:
    import onnx  # noqa: F401

    k7 = BlockConfig("MobileNetV2K3Res", 14, 16, 16, 7, 3.0, 1, "relu")
    dw = [n for n in block_to_onnx(k7).graph.node if n.op_type == "Conv" and
          next(a.i for a in n.attribute if a.name == "group") > 1]
    assert len(dw) == 3
    plain = BlockConfig("MobileNetV2", 14, 16, 24, 3, 3.0, 1, "relu6")
    assert not [n for n in block_to_onnx(plain).graph.node if n.op_type == "Add"]
    res = BlockConfig("MobileNetV2Res", 14, 16, 24, 3, 3.0, 1, "relu6")
    assert len([n for n in block_to_onnx(res).graph.node if n.op_type == "Add"]) == 1


# -- Keras: TensorFlow is slow to import, so one module-scoped fixture builds one config per type ----------
KERAS_CONFIGS = {name: _configs(name)[1] for name in list_blocks()}


@pytest.fixture(scope="module")
def keras_shapes() -> dict[str, tuple[int, ...]]:
    pytest.importorskip("tensorflow", reason="the Keras builder needs the 'tflite' extra (tensorflow)")
    return {name: tuple(block_to_keras(cfg, seed=0).output_shape) for name, cfg in KERAS_CONFIGS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_blocks())
def test_keras_block_shape(keras_shapes: dict, name: str) -> None:
    cfg = KERAS_CONFIGS[name]
    nchw = cfg.output_shape
    expected = nchw if len(nchw) == 2 else (nchw[0], nchw[2], nchw[3], nchw[1])  # Keras is NHWC
    assert keras_shapes[name] == expected
