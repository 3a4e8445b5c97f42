"""Supernet CLI: extract (ONNX and INT8) from a checkpoint, and its error paths."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the train extra) is not installed")

from spaceevo.cli import main  # noqa: E402
from spaceevo.search.supernet import Supernet, TrainConfig  # noqa: E402
from spaceevo.search.supernet._train import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.torch

TINY = "onnxw-111111-000000"


@pytest.fixture()
def checkpoint(tmp_path):
    cfg = TrainConfig(space=TINY, dataset="synthetic", image_size=16, batch_size=16, bn_batches=1)
    net = Supernet(TINY, n_classes=10)
    path = tmp_path / "supernet.pt"
    save_checkpoint(path, net, cfg, [str(i) for i in range(10)], 1, None, None, [])
    return path


def test_extract_writes_onnx_and_int8(tmp_path, checkpoint, capsys):
    onnx = pytest.importorskip("onnx")
    sub = str(Supernet(TINY, 10).space.min_subnet())
    out = tmp_path / "min.onnx"
    with pytest.raises(SystemExit) as exc:  # typer exits 0 on success
        main(["extract", sub, "--space", TINY, "--checkpoint", str(checkpoint), "-o", str(out), "--int8",
              "--resolution", "32", "--json"])
    assert exc.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["onnx"] == str(out) and out.is_file()
    q = onnx.load(result["onnx_int8"])
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert q.graph.input[0].type.tensor_type.shape.dim[2].dim_value == 32


def test_extract_errors(tmp_path, checkpoint, capsys):
    sub = str(Supernet(TINY, 10).space.min_subnet())
    with pytest.raises(SystemExit) as exc:
        main(["extract", sub, "--space", "onnxw-111111-000001", "--checkpoint", str(checkpoint), "-o",
              str(tmp_path / "x.onnx")])
    assert exc.value.code == 2 and "does not match the checkpoint's space" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["extract", "d9_k3_w16_e0_r160", "--space", TINY, "--checkpoint", str(checkpoint), "-o",
              str(tmp_path / "x.onnx")])
    assert exc.value.code == 2 and "d has 1 entries" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["extract", sub, "--space", TINY, "--checkpoint", str(tmp_path / "none.pt"), "-o",
              str(tmp_path / "x.onnx")])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


@pytest.fixture()
def cheap_checkpoint(tmp_path):
    space = "onnxw-000000-000000"
    cfg = TrainConfig(space=space, dataset="synthetic", image_size=8, batch_size=16, bn_batches=1)
    net = Supernet(space, n_classes=10)
    path = tmp_path / "cheap.pt"
    save_checkpoint(path, net, cfg, [str(i) for i in range(10)], 1, None, None, [])
    return path, net


def test_supernet_report_predicted_and_measured(cheap_checkpoint, capsys):
    path, net = cheap_checkpoint
    sub = str(net.space.min_subnet())
    with pytest.raises(SystemExit) as exc:
        main(["supernet-report", "--checkpoint", str(path), "--subnet", sub, "--predictor", "vnni-ort-int8",
              "--repeats", "3", "--json"])
    assert exc.value.code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["subnet"] == sub and row["chance"] == 0.1
    assert 0.0 <= row["acc_int8_ort"] <= 1.0 and 0.0 <= row["acc_fp32"] <= 1.0
    assert row["predicted_ms"] > 0 and row["measured_ms"] > 0
    assert row["pred_over_meas"] == pytest.approx(row["predicted_ms"] / row["measured_ms"], rel=1e-2)


def test_distill_tables_cli_errors(cheap_checkpoint, tmp_path, capsys):
    path, _net = cheap_checkpoint
    with pytest.raises(SystemExit) as exc:
        main(["distill-tables", "--teacher", str(path), "-o", str(tmp_path / "lut")])
    assert exc.value.code == 2 and "give --space SPACE and/or --table S_B_W" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["distill-tables", "--teacher", str(path), "-o", str(tmp_path / "lut"), "--table", "3-1-2"])
    assert exc.value.code == 2 and "must be S_B_W" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["distill-tables", "--teacher", str(path), "-o", str(tmp_path / "lut"), "--space",
              "mobilew-000000-000000"])
    assert exc.value.code == 2 and "not in the teacher's hyperspace" in capsys.readouterr().err
