"""Supernet: dynamic blocks reproduce the IR exactly; extraction; LSQ+ vs integer arithmetic; ONNX; training."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the train extra) is not installed")

from spaceevo.search.supernet import (  # noqa: E402
    LsqActQuantizer,
    LsqWeightQuantizer,
    StaticSubnet,
    Supernet,
    TrainConfig,
    load_dataset,
    subnet_blocks,
    train_supernet,
)
from spaceevo.search.supernet._layers import DynamicBlock, StaticConv, StaticLinear  # noqa: E402
from spaceevo.space import BlockConfig, SearchSpace, get_hyperspace, list_hyperspaces  # noqa: E402

pytestmark = pytest.mark.torch

TINY = "onnxw-111111-000000"
CHEAP = "onnxw-000000-000000"  # MobileNetV1Dual everywhere: the cheapest space to train on a CPU


def _macs_and_params(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    macs = []

    def hook(mod, inp, out):
        conv = getattr(mod, "conv", mod)
        if isinstance(conv, torch.nn.Conv2d):
            macs.append(out.shape[2] * out.shape[3] * conv.out_channels * (conv.in_channels // conv.groups)
                        * conv.kernel_size[0] * conv.kernel_size[1])
        else:
            macs.append(mod.linear.in_features * mod.linear.out_features)

    kinds = (StaticConv, StaticLinear, torch.nn.Conv2d)  # SE convs are called as modules, the others are not
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    model.eval()(x)
    for h in hs:
        h.remove()
    return sum(macs), sum(p.numel() for n, p in model.named_parameters() if "_q." not in n)


def _block_cases():
    for name in list_hyperspaces():
        h = get_hyperspace(name)
        for choice in h.block_choices:
            for k in choice.kernel_sizes:
                e = choice.expand_ratios[-1]
                yield name, BlockConfig(choice.type, 16, 32, 48, k, e, 2, choice.act)
                yield name, BlockConfig(choice.type, 16, 48, 48, k, choice.expand_ratios[0], 1, choice.act)


@pytest.mark.parametrize("hyper,cfg", list(_block_cases()), ids=lambda v: getattr(v, "to_string", lambda: v)())
def test_dynamic_block_active_config_matches_ir_macs_and_params(hyper, cfg):
    big = BlockConfig(cfg.type, 16, 64, 64, max(7, cfg.k), cfg.e * 2 if cfg.e else 0.0, cfg.stride, cfg.act)
    dyn = DynamicBlock([cfg, big]).eval()
    static = dyn.extract(cfg).eval()
    x = torch.randn(2, cfg.cin, cfg.hw, cfg.hw)
    macs, params = _macs_and_params(static, x[:1])
    assert (macs, params) == (cfg.macs, cfg.params)
    y = dyn(x, cfg)
    assert tuple(y.shape[1:]) == cfg.output_shape[1:]
    torch.testing.assert_close(static(x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("space", ["onnxw-151122-023231", "mobilew-122222-155400"])
def test_extracted_subnet_matches_supernet_and_ir(space):
    net = Supernet(space, n_classes=10).eval()
    sp = net.space
    x = torch.randn(2, 3, 32, 32)
    for sub in [sp.min_subnet(), sp.max_subnet(), *sp.sample(2, seed=1)]:
        static = net.extract(sub).eval()
        torch.testing.assert_close(static(x), net(x, sub), rtol=1e-5, atol=1e-5)
        blocks = subnet_blocks(sp, sub, 10)
        assert sum(p.numel() for p in static.parameters()) == sum(b.config.params for b in blocks)


def test_extracted_qat_subnet_matches_fake_quant_supernet():
    net = Supernet(TINY, n_classes=10).enable_qat()
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    sub = net.space.sample(1, seed=3)[0]
    net(x, net.max_subnet())
    net(x, sub)
    static = net.extract(sub).eval()
    torch.testing.assert_close(static(x), net(x, sub), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(static.set_fake_quant(False)(x), net(x, sub))


def test_lsq_fake_quant_conv_matches_integer_arithmetic():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0.3, 1.0, (1, 4, 6, 6)).astype(np.float32))
    w = torch.from_numpy(rng.normal(0, 0.2, (5, 4, 3, 3)).astype(np.float32))
    aq, wq = LsqActQuantizer(), LsqWeightQuantizer()
    with torch.no_grad():
        aq.scale.fill_(0.021)
        aq.offset.fill_(-1.37)
        aq.initialized.fill_(1)
        wq.init_from(w)
        y_fake = torch.nn.functional.conv2d(aq(x), wq(w), padding=1)
    xi = aq.quantize(x).numpy().astype(np.int32)
    wi = wq.quantize(w).numpy().astype(np.int32)
    z = int(np.clip(np.round(1.37 / 0.021), 0, 255))
    assert xi.min() >= 0 and xi.max() <= 255 and np.abs(wi).max() <= 127
    xp = np.pad(xi[0] - z, ((0, 0), (1, 1), (1, 1)))  # zero in the real domain is the zero point
    acc = np.zeros((5, 6, 6), dtype=np.int32)
    for i in range(6):
        for j in range(6):
            acc[:, i, j] = np.tensordot(wi, xp[:, i:i + 3, j:j + 3], axes=([1, 2, 3], [0, 1, 2]))
    y_int = acc.astype(np.float64) * float(aq.scale.detach()) * float(wq.scale.detach())
    np.testing.assert_allclose(y_fake[0].numpy(), y_int, rtol=1e-4, atol=1e-4)


def test_lsq_quantizers_have_gradients():
    aq, wq = LsqActQuantizer(), LsqWeightQuantizer()
    x, w = torch.randn(8, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    with torch.no_grad():  # a range narrower than the data: the offset learns from the clipped values
        aq.scale.fill_(0.004)
        aq.offset.fill_(-0.5)
        aq.initialized.fill_(1)
    (aq(x) @ wq(w).t()).square().sum().backward()
    for t in (x.grad, w.grad, aq.scale.grad, aq.offset.grad, wq.scale.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0


def test_onnx_export_matches_pytorch_and_int8_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from spaceevo.search.supernet import export_onnx
    from spaceevo.search.supernet._export import quantize_int8

    net = Supernet(CHEAP, n_classes=10).eval()
    static = net.extract(net.space.sample(1, seed=5)[0]).eval()
    path = export_onnx(static, tmp_path / "s.onnx", resolution=16)
    x = torch.randn(1, 3, 16, 16)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], static(x).detach().numpy(),
                               rtol=1e-4, atol=1e-4)
    q = quantize_int8(path, tmp_path / "s_int8.onnx", [torch.randn(1, 3, 16, 16).numpy() for _ in range(4)])
    import onnx

    from spaceevo.search.supernet._export import measure_latency_ms

    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    out = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert out.shape == (1, 10) and np.isfinite(out).all()
    from spaceevo.latency import create_backend

    stats = measure_latency_ms(path, create_backend("ort", threads=1, repeats=3, warmup=1, max_attempts=1))
    assert stats["median_ms"] > 0 and stats["n"] == 3  # the collector quantised and timed it


def test_static_subnet_from_scratch_matches_ir():
    sp = SearchSpace.parse("mobilew-332160-134200")
    sub = sp.sample(1, seed=2)[0]
    model = StaticSubnet.from_subnet(sp, sub, n_classes=1000)
    macs, params = _macs_and_params(model, torch.randn(1, 3, sub.resolution, sub.resolution))
    info = sp.subnet_info(sub)
    assert params == sum(b["params"] for b in [{"params": blk.config.params} for blk in sp.blocks(sub)])
    assert macs == pytest.approx(info["flops_m"] * 1e6, abs=100)


def test_datasets_and_errors(tmp_path):
    d = load_dataset("digits", image_size=16)
    assert len(d.train) + len(d.val) == 1797 and d.classes == [str(i) for i in range(10)]
    x, y = d.train[0]
    assert tuple(x.shape) == (3, 16, 16) and 0 <= int(y) < 10
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((5, 7, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    f = load_dataset(str(tmp_path), image_size=8, val_fraction=0.34)
    assert f.classes == ["cat", "dog"] and len(f.train) + len(f.val) == 6
    assert tuple(f.train[0][0].shape) == (3, 8, 8)
    with pytest.raises(ValueError, match="neither a built-in dataset"):
        load_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=4)
    with pytest.raises(ValueError, match="'epochs' parameter of TrainConfig"):
        TrainConfig(space=TINY, epochs=-1)
    with pytest.raises(ValueError, match="n_classes"):
        Supernet(TINY, n_classes=1)
    with pytest.raises(ValueError, match="'optimizer' parameter of TrainConfig"):
        TrainConfig(space=TINY, optimizer="adam")
    with pytest.raises(ValueError, match="'limit_steps' parameter of TrainConfig"):
        TrainConfig(space=TINY, limit_steps=-1)
    with pytest.raises(ValueError, match="'label_weight' parameter of TrainConfig"):
        TrainConfig(space=TINY, label_weight=1.5)
    from spaceevo.search.supernet._export import quantize_int8

    with pytest.raises(ValueError, match="calibrate_method='kl' is not in"):
        quantize_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", [np.zeros((1, 3, 8, 8), np.float32)],
                      calibrate_method="kl")


def test_tiny_supernet_training_loss_goes_down_and_resumes(tmp_path):
    cfg = TrainConfig(space=CHEAP, dataset="synthetic", image_size=8, epochs=2, qat_epochs=1, batch_size=16,
                      lr=3e-3, qat_lr=1e-3, optimizer="adamw", warmup_steps=0, label_weight=0.5, n_random=1,
                      bn_batches=1, limit_steps=5, val_fraction=0.05, device="cpu")
    r = train_supernet(cfg, tmp_path, progress=False)
    h = r["history"]
    assert [x["phase"] for x in h] == ["fp32", "fp32", "qat"]
    assert h[1]["loss_max"] < h[0]["loss_max"]
    assert {"val_acc_max", "val_acc_min", "val_acc_rand"} <= set(h[-1])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    again = train_supernet(cfg, tmp_path, progress=False)  # resumes: nothing left to train
    assert len(again["history"]) == 3
    from spaceevo.search.supernet import load_supernet

    net, state = load_supernet(tmp_path / "supernet.pt")
    assert net.qat and state["epoch"] == 3
    with pytest.raises(ValueError, match="use another output folder"):
        train_supernet(TrainConfig(space=TINY, dataset="synthetic", image_size=8), tmp_path, progress=False)


@pytest.mark.parametrize("hw,k,stride,groups", [(1, 5, 1, 4), (1, 7, 2, 1), (2, 5, 1, 4), (2, 7, 2, 4), (3, 7, 1, 1),
                                                (4, 3, 2, 4)])
def test_kernel_crop_on_small_inputs_is_exact(hw, k, stride, groups):
    from spaceevo.search.supernet._layers import conv2d_same

    g = torch.Generator().manual_seed(hw * 10 + k)
    x = torch.randn(2, 4, hw, hw, generator=g)
    w = torch.randn(4, 4 // groups, k, k, generator=g)
    ref = torch.nn.functional.conv2d(x, w, None, stride, (k - 1) // 2, 1, groups)
    torch.testing.assert_close(conv2d_same(x, w, None, stride, groups, k), ref, rtol=1e-5, atol=1e-5)
