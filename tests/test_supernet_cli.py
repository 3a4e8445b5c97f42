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
