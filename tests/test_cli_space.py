"""``spaceevo space ...`` and ``spaceevo subnet ...``: JSON output, tables, exports and user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from spaceevo.cli import main
from spaceevo.space import SearchSpace

SPACE = "onnxw-151122-023231"
SUB = ("d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w16#16#32#32#64#64#112#112#144#144#240#240#320_"
       "e0#0.5#4.0#4.0#1.0#1.0#4.0#4.0#4.0#4.0#4.0#4.0#4.0_r160")


def _run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_space_list(capsys) -> None:
    code, out, _ = _run(capsys, "space", "list", "--json")
    assert code == 0
    data = {d["hyperspace"]: d for d in json.loads(out)}
    assert set(data) == {"onnxw", "mobilew"}
    assert data["onnxw"]["n_search_spaces"] == 6**6 * 2 * 4 * 4 * 4 * 4 * 4
    assert [b["type"] for b in data["mobilew"]["block_types"]][5:] == ["MobileNetV3K3ResBlock",
                                                                       "MobileNetV2K3ResBlock"]
    code, out, _ = _run(capsys, "space", "list")
    assert code == 0 and "onnxw" in out and "mobilew" in out


def test_space_show_hyperspace_and_space(capsys) -> None:
    code, out, _ = _run(capsys, "space", "show", "onnxw", "--json")
    assert code == 0
    data = json.loads(out)
    stage2 = next(s for s in data["stages"] if s["stage"] == "stage2")
    assert stage2 == {"stage": "stage2", "widths": [32, 48, 64, 80, 96], "window_size": 2, "n_windows": 4,
                      "depths": [2, 3, 4], "stride": 2}
    code, out, _ = _run(capsys, "space", "show", SPACE, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["space"] == SPACE and data["n_subnets"] == SearchSpace.parse(SPACE).size
    assert [s["block"] for s in data["stages"][2:]] == ["MobileNetV2ResBlock", "FusedMBConvResBlock",
                                                        "MobileNetV2ResBlock", "MobileNetV2ResBlock",
                                                        "MobileNetV3ResBlock", "MobileNetV3ResBlock"]
    assert data["stages"][3]["widths"] == [64, 80]
    code, out, _ = _run(capsys, "space", "show", SPACE)
    assert code == 0 and f"{data['n_subnets']:.3e} subnets" in out and "stage6" in out


def test_subnet_info(capsys) -> None:
    code, out, _ = _run(capsys, "subnet", "info", SUB, "--space", SPACE, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["resolution"] == 160
    blocks = data["blocks"]
    assert len(blocks) == 13 + 3
    for b in blocks:
        assert {"type", "hw", "cin", "cout", "k", "e", "stride", "act"} <= set(b)
    assert blocks[0] == {"stage": "first_conv", "type": "FirstConvBlock", "hw": 160, "cin": 3, "cout": 16, "k": 3,
                         "e": 0.0, "stride": 2, "act": "relu"}
    assert [b["stride"] for b in blocks[:13]] == [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 2, 1, 1]
    assert blocks[-1]["type"] == "LogitsBlock" and blocks[-1]["cout"] == 1000
    sp = SearchSpace.parse(SPACE)
    macs = sum(b.config.macs for b in sp.blocks(sp.parse_subnet(SUB)))
    assert data["flops_m"] == round(macs / 1e6, 4)
    assert 0 < data["params_m"] < 20
    code, out, _ = _run(capsys, "subnet", "info", SUB, "--space", SPACE)
    assert code == 0 and f"flops={data['flops_m']} M MACs" in out and "first_conv" in out


def test_subnet_sample(capsys) -> None:
    code, out, _ = _run(capsys, "subnet", "sample", "--space", SPACE, "-n", "4", "--seed", "7", "--json")
    assert code == 0
    subnets = json.loads(out)
    assert subnets == [str(s) for s in SearchSpace.parse(SPACE).sample(4, 7)]
    code, out, _ = _run(capsys, "subnet", "sample", "--space", SPACE, "-n", "2", "--seed", "7")
    assert code == 0 and out.split() == subnets[:2]


def test_subnet_export(capsys, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    path = tmp_path / "sub" / "a.onnx"
    code, out, _ = _run(capsys, "subnet", "export", SUB, "--space", SPACE, "-o", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["output"] == str(path) and data["bytes"] == path.stat().st_size
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((1, 3, 160, 160), np.float32)})
    assert y.shape == (1, 1000)


@pytest.mark.parametrize(("args", "message"), [
    (["subnet", "info", SUB.replace("w16#16#32#32#64#64", "w16#16#32#32#64#72"), "--space", SPACE],
     "w[5]=72 is not in stage2 window 2 widths [64, 80]"),
    (["subnet", "info", "d1_k3", "--space", SPACE], "must have the fields d, k, w, e, r"),
    (["subnet", "info", SUB, "--space", "onnxw-171122-023231"], "block digit 1 (stage2)=7 is not in 0..5"),
    (["subnet", "sample", "--space", "onnxw-151122-02323"], "window digits '02323' must have 6 digits"),
    (["space", "show", "nopew"], "nopew"),
    (["subnet", "export", SUB, "--space", "mobilew-122222-155400", "-o", "x.onnx"],
     "e[1]=0.5 is not in stage0 MobileNetV2Block expand ratios [1.0]"),
])
def test_user_errors_exit_2_without_traceback(capsys, args: list[str], message: str) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_subprocess_error_and_info_speed(shared_data: Path) -> None:
    """The installed entry point: a bad input exits 2 with one line; info answers for every published subnet."""
    exe = [sys.executable, "-m", "spaceevo.cli"] if not Path(sys.executable).with_name("spaceevo").exists() \
        else [str(Path(sys.executable).with_name("spaceevo"))]
    bad = subprocess.run([*exe, "subnet", "info", "d1_k3", "--space", SPACE], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    doc = yaml.safe_load((shared_data / "search_result.yaml").read_text())
    spaces = doc["specific_supernet_encoding_dict"]
    for name, (key, subnet) in doc["specific_subnet_encoding_dict"].items():
        res = subprocess.run([*exe, "subnet", "info", subnet, "--space", spaces[key], "--json"],
                             capture_output=True, text=True)
        assert res.returncode == 0, (name, res.stderr)
        assert json.loads(res.stdout)["subnet"] == subnet
