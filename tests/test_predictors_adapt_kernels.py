"""Few-shot transfer of kernel predictors (issue 15 for any ONNX model): a simulated device is recovered from a
kernel predictor of another, the bundle keeps its provenance, bad input is named, and a tiny real run on
onnxruntime INT8."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaceevo.cli import main
from spaceevo.datasets import LatencyStore
from spaceevo.latency import (DEFAULT_RULES, OnnxModelUnit, create_backend, default_rules, model_profile_units,
                              register_backend, register_fusion_rules, run_profile)
from spaceevo.latency._backend import _BACKENDS
from spaceevo.predictors import (AdaptSource, KernelLatencyPredictor, adapt_kernel_predictor, latency_metrics,
                                 load_predictor, run_adapt, train_kernel_predictor)
from spaceevo.predictors._adapt import adaptation_info, check_source
from spaceevo.space import generate_zoo

FAMILIES = ["mobilenetv2", "resnet", "shufflenetv2", "squeezenet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two fake devices (fakek: the source's, fakek2: the new one), a training and a validation zoo, and a
    kernel predictor of fakek trained on every kernel of the training zoo."""
    root = tmp_path_factory.mktemp("kadapt")
    for name, cls in (("fakek", "KernelFakeBackend"), ("fakek2", "OtherKernelFakeBackend")):
        register_backend(name, f"kernel_fake_backend:{cls}")
        register_fusion_rules(name, "int8", default_rules("ort", "int8"))
    generate_zoo(root / "train", FAMILIES, 3, seed=0, resolution=32, tiny=True)
    generate_zoo(root / "val", FAMILIES, 2, seed=1, resolution=32, tiny=True)
    plan = model_profile_units(root / "train", "fakek", "int8")
    with LatencyStore(root / "src.db") as st:
        run_profile(plan["kernels"] + plan["models"], create_backend("fakek"), ["int8"], db=st, progress=False,
                    rounds=1, model_rounds=1)
        rows = st.read_measurements()
    src = train_kernel_predictor(rows, rows["device"].iloc[0], target="median_ms", cv_folds=0,
                                 estimator_params={"n_estimators": 200})
    path = src.save(root / "src.json.gz")
    yield {"root": root, "source": path, "n_kernels": len(plan["kernels"])}
    for name in ("fakek", "fakek2"):
        _BACKENDS.unregister(name)
        DEFAULT_RULES.unregister(f"{name}-int8")


def _truth(root, backend: str = "fakek2") -> dict[str, float]:
    be = create_backend(backend)
    return {str(p): float(be.prepare(OnnxModelUnit(str(p), p.stem), "int8")) for p in sorted((root / "val").glob("*.onnx"))}


@pytest.fixture(scope="module")
def adapted(world) -> dict:
    """``run_adapt`` on fakek2 from the fakek source: 30 kernels and 4 whole models (its summary)."""
    root = world["root"]
    return run_adapt("fakek2", "int8", 30, None, root / "new.json.gz", root / "new.db", sources=[str(world["source"])],
                     subnets=4, models=root / "train", rounds=1, progress=False, target="median_ms")


def test_a_simulated_device_is_recovered(world, adapted):
    root, out = world["root"], adapted
    assert out["kind"] == "kernel" and out["units"] == 30 and out["subnets"] == 4 and out["failed"] == 0
    pred = load_predictor(out["output"])
    assert isinstance(pred, KernelLatencyPredictor) and pred.estimator == "transfer"
    truth = _truth(root)
    y = np.array(list(truth.values()))
    p = np.array([pred.predict_model(path)["latency_ms"] for path in truth])
    src = load_predictor(world["source"])
    p0 = np.array([src.predict_model(path)["latency_ms"] for path in truth])
    adapted, unadapted = latency_metrics(y, p), latency_metrics(y, p0)
    # the other device is 2-3x faster with another exponent: the source alone is far off, the adapted one is not
    assert unadapted["mape"] > 40
    assert adapted["mape"] < 5 and adapted["acc_10pct"] >= 95 and adapted["kendall_tau"] > 0.9, adapted
    assert pred.composition["selected_by"].startswith("the composition of source")  # its structure transferred


def test_bundle_round_trip_keeps_the_provenance(world, adapted, tmp_path):
    root = world["root"]
    with LatencyStore(adapted["db"]) as st:  # the measurements of the new device
        rows = st.read_measurements(status="ok")
    src = AdaptSource("fakek-source", load_predictor(world["source"]))
    pred = adapt_kernel_predictor([src], rows, device="fakek2-device", backend="fakek2", target="median_ms",
                                  info={"budget": 30})
    loaded = load_predictor(pred.save(tmp_path / "k.json.gz"))
    info = adaptation_info(loaded)
    assert info["sources"][0]["name"] == "fakek-source" and info["sources"][0]["unit_kind"] == "kernel"
    assert info["sources"][0]["digest"].startswith("sha256:") and info["budget"] == 30
    assert info["n_units"] == 30 and info["n_subnets"] == 4
    assert loaded.manifest["unit_kind"] == "kernel" and loaded.composition == pred.composition
    model = str(next((root / "val").glob("resnet*.onnx")))
    assert loaded.predict_model(model)["latency_ms"] == pytest.approx(pred.predict_model(model)["latency_ms"])


def test_bad_sources_and_input_are_named(world, tmp_path, capsys):
    block = AdaptSource("vnni-ort-int8", load_predictor("vnni-ort-int8"))
    with pytest.raises(ValueError, match="'vnni-ort-int8' is a block predictor; kernel units need a kernel"):
        check_source(block, "int8", ["conv"], kind="kernel")
    kernel = AdaptSource("k", load_predictor(world["source"]))
    with pytest.raises(ValueError, match="is a kernel predictor; block units need a block"):
        check_source(kernel, "int8", ["MobileNetV2ResBlock"], kind="block")
    with pytest.raises(ValueError, match="has no model of any kernel type"):
        check_source(kernel, "int8", ["resize"], kind="kernel")
    with pytest.raises(ValueError, match="dtype='int8', the target dtype='fp32'"):
        check_source(kernel, "fp32", ["conv"], kind="kernel")
    base = ["adapt", "--backend", "fakek2", "--from", str(world["source"]), "-o", str(tmp_path / "a.json.gz"),
            "--db", str(tmp_path / "a.db")]
    cases = [(["--budget", "5", "--kind", "kernel"], "--kind kernel needs --models"),
             (["--budget", "5", "--models", str(world["root"] / "train"), "--space", "onnxw-151122-023231"],
              "--models does not combine with --space"),
             (["--budget", "5", "--models", str(tmp_path / "nowhere")], "does not exist"),
             (["--budget", "5", "--kind", "kernels"], "--kind 'kernels' is not one of ['block', 'kernel']"),
             (["--budget", str(world["n_kernels"] + 1), "--models", str(world["root"] / "train")],
              f"must be between 1 and the {world['n_kernels']} candidate units of the distinct kernels")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(base + extra)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.count("\n") == 0 and message in err, (extra, err)
    with pytest.raises(SystemExit):  # a block source for kernel units, through the command line
        main(["adapt", "--backend", "fakek2", "--from", "vnni-ort-int8", "--budget", "5", "--models",
              str(world["root"] / "train"), "-o", str(tmp_path / "b.json.gz"), "--db", str(tmp_path / "b.db")])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a block predictor" in err


def test_cli_kernel_adapt_json(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["adapt", "--backend", "fakek2", "--from", str(world["source"]), "--budget", "12", "--subnets", "2",
              "--models", str(world["root"] / "train"), "-o", str(tmp_path / "c.json.gz"), "--db",
              str(tmp_path / "c.db"), "--rounds", "1", "--target", "median_ms", "--no-progress", "--json"])
    assert exc.value.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "kernel" and out["units"] == 12 and out["subnets"] == 2
    assert isinstance(load_predictor(out["output"]), KernelLatencyPredictor)


@pytest.mark.slow
def test_tiny_real_kernel_adapt_on_ort_int8(world, tmp_path):
    """Real onnxruntime INT8: 6 kernels and 1 whole model of two tiny zoo models, adapted from the fake source."""
    generate_zoo(tmp_path / "zoo", ["mobilenetv2", "resnet"], 1, seed=3, resolution=32, tiny=True)
    fast = {"repeats": 3, "warmup": 1, "min_sample_ms": 0.0, "max_attempts": 1}
    out = run_adapt("ort", "int8", 6, None, tmp_path / "k.json.gz", tmp_path / "k.db", sources=[str(world["source"])],
                    subnets=1, models=tmp_path / "zoo", backend_opts=fast, rounds=1, progress=False, target="min_ms")
    assert out["units"] == 6 and out["subnets"] == 1 and out["failed"] == 0
    pred = load_predictor(out["output"])
    info = adaptation_info(pred)
    assert pred.target == "min_ms" and info["models"] == str(tmp_path / "zoo") and info["adapt_seconds"] > 0
    for model in (tmp_path / "zoo").glob("*.onnx"):
        assert 0 < pred.predict_model(str(model))["latency_ms"] < 1000
