"""The Python facade: spaceevo.load_predictor(name).predict(x) for each input kind; import spaceevo stays light."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

import spaceevo
from spaceevo.space import EXAMPLE_SPACE, EXAMPLE_SUBNET, generate_zoo


@pytest.fixture(scope="module")
def kernel_pred(tmp_path_factory):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from kernel_fake_backend import KernelFakeBackend

    from spaceevo.datasets import LatencyStore
    from spaceevo.latency import model_profile_units, run_profile
    from spaceevo.predictors import train_kernel_predictor

    root = tmp_path_factory.mktemp("facade")
    generate_zoo(root / "z", ["mobilenetv2", "resnet", "vgg"], 2, seed=0, resolution=32, tiny=True)
    plan = model_profile_units(root / "z")
    with LatencyStore(root / "k.db") as st:
        run_profile(plan["kernels"] + plan["models"], KernelFakeBackend(), ["int8"], db=st, device="fake",
                    progress=False)
        df = st.read_measurements(device="fake")
    pred = train_kernel_predictor(df, "fake", cv_folds=0, estimator_params={"n_estimators": 50})
    return pred, root


def test_import_is_light():
    code = "import sys, spaceevo; print(any(m in sys.modules for m in ('numpy', 'onnx', 'pandas', 'torch')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_predict_onnx_path_and_modelproto(kernel_pred, tmp_path, monkeypatch):
    pred, root = kernel_pred
    monkeypatch.setenv("SPACEEVO_HOME", str(tmp_path / "home"))
    from spaceevo.predictors import install_predictor

    install_predictor(pred, "fake-kernels")
    p = spaceevo.load_predictor("fake-kernels")
    assert p.kind == "kernel" and p.device == "fake"
    assert "fake-kernels" in spaceevo.list_predictors() and spaceevo.list_predictors("fake-*") == ["fake-kernels"]
    assert {r["name"]: r["unit_kind"] for r in spaceevo.describe_predictors()}["fake-kernels"] == "kernel"
    path = next((root / "z").glob("resnet*.onnx"))
    ms = p.predict(str(path))
    assert isinstance(ms, float) and ms > 0
    assert p.predict(onnx.load(str(path))) == pytest.approx(ms)
    detail = p.predict(path, detail=True)
    assert detail["latency_ms"] == pytest.approx(ms) and detail["kernels"][0]["source"] == "model"
    with pytest.raises(ValueError, match="block predictor"):
        p.predict(EXAMPLE_SUBNET, space=EXAMPLE_SPACE)


def test_predict_torch_module(kernel_pred):
    torch = pytest.importorskip("torch")
    pred, _ = kernel_pred
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                              torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Hardswish(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    p = spaceevo.Predictor(pred, "fake")
    detail = p.predict(net, input_shape=(1, 3, 32, 32), detail=True)
    assert [k["type"] for k in detail["kernels"]][:3] == ["conv", "dwconv", "act"]
    assert detail["kernels"][0]["config"]["act"] == "relu6" and detail["latency_ms"] > 0
    with pytest.raises(ValueError, match="needs input_shape"):
        p.predict(net)


def test_predict_subnet_with_block_predictor():
    p = spaceevo.load_predictor("vnni-ort-int8")
    assert p.kind == "block"
    ms = p.predict(EXAMPLE_SUBNET, space=EXAMPLE_SPACE)
    assert isinstance(ms, float) and ms > 0
    assert len(p.predict(EXAMPLE_SUBNET, space=EXAMPLE_SPACE, detail=True)["blocks"]) > 5
    with pytest.raises(ValueError, match="kernel predictor"):
        p.predict("model.onnx")
