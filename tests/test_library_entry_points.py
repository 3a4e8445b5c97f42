"""What the command line delegates to, called without it: the registry idiom, unit planning, backend options,
training from a store, the distillation table keys, and the one-home helpers (``as_search_space``,
``predict_network``, ``block_rows``)."""

from __future__ import annotations

import pandas as pd
import pytest

from spaceevo.datasets import read_rows
from spaceevo.latency import (backend_options, get_fusion_rules, list_backends, list_fusion_rules, list_kernels,
                              list_samplers, plan_units)
from spaceevo.predictors import block_rows, compose, list_estimators, only_device, train_from_store
from spaceevo.predictors._synthetic import synthetic_measurements
from spaceevo.registry import Registry
from spaceevo.space import (SearchSpace, as_search_space, get_block, get_hyperspace, get_zoo_family, list_blocks,
                            list_hyperspaces, list_zoo_families)

SPACE = "onnxw-151122-023231"


def test_registry_idiom():
    reg: Registry[int] = Registry("widget", normalize=lambda n, names: n if n in names else f"{n}-x")
    assert reg.register("b-x", 2) == 2 and reg.register("a", 1) == 1
    assert reg.names() == ["a", "b-x"] and reg.names("b*") == ["b-x"] and reg.names(["a", "z*"]) == ["a"]
    assert reg.get("b") == 2  # the alias rule
    with pytest.raises(ValueError, match=r"^unknown widget 'c'; valid widgets: a, b-x$"):
        reg.get("c")
    assert reg.unregister("a") == 1 and reg.unregister("a") is None and "a" not in reg


def test_every_registry_lists_sorted_names_and_filters():
    for names in (list_blocks(), list_hyperspaces(), list_kernels(), list_samplers(), list_backends(),
                  list_estimators(), list_zoo_families(), list_fusion_rules()):
        assert names == sorted(names) and all(isinstance(n, str) for n in names)
    assert list_kernels("*conv-bn-act") == ["conv-bn-act", "dwconv-bn-act"]
    assert list_zoo_families("mobilenet*") == ["mobilenetv1", "mobilenetv2", "mobilenetv3"]
    assert list_fusion_rules("*-int8") == ["ort-int8", "tflite-int8"]
    assert get_fusion_rules("ort-int8")["conv_acts"] == ["relu", "relu6"]
    with pytest.raises(ValueError, match="unknown zoo family 'x'; valid families: alexnet, densenet"):
        get_zoo_family("x")
    with pytest.raises(ValueError, match="no fusion rules 'x-int8'; known: ort-fp32, ort-int8"):
        get_fusion_rules("x-int8")
    assert list_hyperspaces("onnx*") == ["onnxw"]
    assert get_block("MobileNetV2Res").name == "MobileNetV2ResBlock"
    with pytest.raises(ValueError, match="unknown hyperspace 'x'; valid hyperspaces: mobilew, onnxw"):
        get_hyperspace("x")


def test_as_search_space():
    sp = SearchSpace.parse(SPACE)
    assert as_search_space(sp) is sp and as_search_space(SPACE) == sp


def test_backend_options_per_backend():
    ort = backend_options("ort", threads=2, cores=[1], reference=None)
    assert ort["threads"] == 2 and ort["cores"] == [1] and ort["reference"] is True and ort["quant_format"] == "qdq"
    assert "xnnpack" not in ort
    tfl = backend_options("tflite", reference=False)
    assert tfl["reference"] is False and tfl["xnnpack"] is True and "quant_format" not in tfl
    adb = backend_options("adb", serial="X", min_sample_ms=0.0)
    assert "reference" not in adb and "clock" not in adb and adb["serial"] == "X" and adb["min_sample_ms"] == 0.0


def test_plan_units_subnets_and_notes():
    notes: list[str] = []
    units = plan_units(SPACE, "space", {"resolutions": [160], "seed": 0, "kind": "block"}, subnets=2,
                       note=notes.append)
    whole = [u for u in units if u.kind == "model"]
    assert len(whole) == 2 and units[-2:] == whole
    n_blocks = len(units) - 2
    assert notes[0].endswith(f"distinct block configurations in {SPACE} at [160]\n")
    assert notes[1] == f"{n_blocks} blocks of 2 random subnets of {SPACE} (fixed blocks included), 2 subnets whole\n"
    with pytest.raises(ValueError, match="do not combine with --sampler 'random'"):
        plan_units(SPACE, "random", {"kind": "block"}, subnets=2)
    limited = plan_units(SPACE, "space", {"resolutions": [160], "limit": 3, "seed": 0, "kind": "block"})
    assert len(limited) == 3


def test_train_from_store_and_read_rows(tmp_path):
    db = tmp_path / "m.csv"
    synthetic_measurements(SPACE, n_subnets=12, n_models=6, seed=1, device="cpu-x").to_csv(db, index=False)
    notes: list[str] = []
    pred = train_from_store(db, estimator="lut", folds=0, note=notes.append)
    assert pred.device == "cpu-x" and pred.target == "median_ms" and pred.composition["n_models"] == 6
    assert notes == [f"training on device 'cpu-x' (the only device with int8 rows in {db})\n"]
    assert len(read_rows(db, device="nope")) == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_rows(tmp_path / "missing.db")
    two = pd.concat([pd.read_csv(db), pd.read_csv(db).assign(device="cpu-y")])
    with pytest.raises(ValueError, match=r"holds devices \['cpu-x', 'cpu-y'\] with int8 rows"):
        only_device(two, "x.db", "int8")

    # the predictor's own composition of a list of blocks is what predict_subnet reports
    sp = SearchSpace.parse(SPACE)
    sn = sp.sample(1, seed=3)[0]
    configs = [b.config for b in sp.blocks(sn)]
    assert pred.predict_network(configs) == pytest.approx(pred.predict_subnet(sp, sn)["latency_ms"])
    assert pred.predict_network(configs, composed=False) == pytest.approx(pred.predict_blocks(configs).sum())
    assert pred.predict_network(configs) == compose(pred.composition, configs, pred.predict_blocks(configs))
    rows = pd.DataFrame({"kind": ["block", "model", "block"], "status": ["ok", "ok", "failed"]})
    assert block_rows(rows).index.tolist() == [0]


def test_distill_table_keys():
    pytest.importorskip("torch", reason="PyTorch (the train extra) is not installed")
    from spaceevo.search.supernet import table_keys

    hyper = get_hyperspace("onnxw")
    assert table_keys(hyper, SPACE) == [(1, 1, 0), (2, 5, 2), (3, 1, 3), (4, 1, 2), (5, 2, 3), (6, 2, 1)]
    assert table_keys(hyper, None, ["3_1_2", "3_1_2", "1_0_0"]) == [(3, 1, 2), (1, 0, 0)]
    with pytest.raises(ValueError, match="must be S_B_W"):
        table_keys(hyper, None, ["3-1-2"])
    with pytest.raises(ValueError, match="is not in the teacher's hyperspace 'onnxw'"):
        table_keys(hyper, "mobilew-000000-000000")
    with pytest.raises(ValueError, match="give --space SPACE and/or --table S_B_W"):
        table_keys(hyper)


def test_get_backend_is_the_class_create_backend_the_instance():
    from spaceevo.latency import create_backend, get_backend

    cls = get_backend("ort")
    assert isinstance(cls, type) and isinstance(create_backend("ort", threads=1), cls)
    with pytest.raises(TypeError, match=r"create_backend\('ort', \*\*opts\) builds an instance"):
        get_backend("ort", threads=1)
