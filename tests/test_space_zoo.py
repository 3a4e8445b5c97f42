"""The model zoo: every family writes valid ONNX that onnxruntime runs; seeds decide models; disjoint seeds."""

import json

import numpy as np
import onnx
import pytest

from spaceevo.space import build_zoo_model, generate_zoo, list_zoo_families, read_zoo, zoo_seeds


def test_fourteen_families():
    assert set(list_zoo_families()) == {"alexnet", "vgg", "resnet", "densenet", "squeezenet", "googlenet",
                                        "mobilenetv1", "mobilenetv2", "mobilenetv3", "shufflenetv2", "mnasnet",
                                        "proxylessnas", "efficientnet", "regnet"}


@pytest.mark.parametrize("family", list_zoo_families())
def test_family_is_valid_onnx_and_runs(family):
    import onnxruntime as ort

    model, entry = build_zoo_model(family, 3, 32, tiny=True)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.ones((1, 3, 32, 32), np.float32)})[0]
    assert y.shape == (1, 1000) and np.isfinite(y).all()
    assert entry["family"] == family and entry["macs"] > 0 and entry["config"]


def test_seed_decides_the_model_and_varies_it():
    a, ea = build_zoo_model("mobilenetv2", 5, 32, tiny=True)
    b, eb = build_zoo_model("mobilenetv2", 5, 32, tiny=True)
    assert a.SerializeToString() == b.SerializeToString() and ea == eb
    configs = {json.dumps(build_zoo_model("resnet", s, None)[1]["config"]) for s in range(4)}
    assert len(configs) > 1


def test_generate_writes_manifest_and_disjoint_seeds(tmp_path):
    man = generate_zoo(tmp_path / "z", ["vgg", "squeezenet"], per_family=2, seed=1, resolution=32, tiny=True)
    assert len(man["models"]) == 4
    assert read_zoo(tmp_path / "z") == man
    for m in man["models"]:
        onnx.checker.check_model(str(tmp_path / "z" / m["file"]))
    train = {s for f in list_zoo_families() for s in zoo_seeds(f, 0, 99)}
    val = {s for f in list_zoo_families() for s in zoo_seeds(f, 1, 99)}
    assert not train & val and len(train) == 14 * 99


def test_bad_family_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="valid families: alexnet"):
        generate_zoo(tmp_path, ["lenet"], 1)


def _run(capsys, *args):
    from spaceevo.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_zoo_json(tmp_path, capsys):
    code, out, _ = _run(capsys, "zoo", "-o", str(tmp_path / "z"), "--families", "mobilenetv3", "--per-family", "2",
                        "--seed", "4", "--resolution", "32", "--tiny", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["models"] == 2 and {e["family"] for e in data["entries"]} == {"mobilenetv3"}
    code, _, err = _run(capsys, "zoo", "-o", str(tmp_path / "y"), "--families", "lenet")
    assert code == 2 and "valid families" in err and len(err.strip().splitlines()) == 1
