"""Block-wise distillation tables: NSR, the public CSV format, and the Q-T table reader on the result."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the train extra) is not installed")

from spaceevo.datasets.block_lut import parse_stage_config, read_lut  # noqa: E402
from spaceevo.search.supernet import Supernet  # noqa: E402
from spaceevo.search.supernet._distill import (  # noqa: E402
    DistillConfig,
    StageSupernet,
    config_string,
    distill_tables,
    nsr_loss,
    teacher_stage_features,
)

pytestmark = pytest.mark.torch

SPACE = "onnxw-000000-000000"


class SumOfMacs:
    """A stand-in latency model: 1 ms per GMAC (keeps the test off the built-in predictor's files)."""

    def predict_blocks(self, configs):
        return np.array([c.macs / 1e9 for c in configs])


def test_nsr_loss():
    t = torch.ones(2, 3, 4, 4)
    assert float(nsr_loss(t, t)) == 0.0
    assert float(nsr_loss(torch.zeros_like(t), t)) == pytest.approx(1.0)
    assert float(nsr_loss(t * 1.5, t)) == pytest.approx(0.25)


def test_config_string_matches_public_format():
    assert config_string([(3, 48, 0.0), (5, 32, 0.0)], (0.0,)) == "3#48#None_5#32#None"
    assert config_string([(5, 96, 8.0)], (4.0, 6.0, 8.0)) == "5#96#8"
    assert config_string([(3, 64, 1.5), (7, 64, 1.0)], (0.5, 1.0, 1.5)) == "3#64#1.5_7#64#1.0"


def test_teacher_features_chain():
    net = Supernet(SPACE, n_classes=10).eval()
    teacher = net.extract(net.min_subnet()).eval()
    x = torch.randn(3, 3, 16, 16)
    feats = teacher_stage_features(teacher, x, x[:2])
    assert [f.stage for f in feats] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(feats, feats[1:]):
        torch.testing.assert_close(a.train_out, b.train_in)
    h = net.space.hyperspace
    stage = StageSupernet(h, 1, 0, 0, cin=feats[0].train_in.shape[1], teacher_cout=feats[0].train_out.shape[1])
    out = stage(feats[0].train_in, stage.max_config())
    assert out.shape == feats[0].train_out.shape
    static = stage.extract(stage.max_config()).eval()
    stage.eval()
    torch.testing.assert_close(static(feats[0].train_in), stage(feats[0].train_in, stage.max_config()))


def test_distill_tables_written_and_read_by_qt_reader(tmp_path):
    from spaceevo.search._qt import qt_score
    from spaceevo.search._tables import QTTables

    net = Supernet(SPACE, n_classes=10).eval()
    teacher = net.extract(net.min_subnet()).eval()
    g = torch.Generator().manual_seed(0)
    train, val = torch.randn(16, 3, 8, 8, generator=g), torch.randn(8, 3, 8, 8, generator=g)
    keys = [(s, 0, 0) for s in range(1, 7)]
    cfg = DistillConfig(steps=2, qat_steps=1, batch_size=8, rows=2, bn_batches=1)
    summary = distill_tables(teacher, train, val, tmp_path, keys, SumOfMacs(), cfg)
    assert [r["table"] for r in summary] == [f"stage{s}_0_0.csv" for s in range(1, 7)]
    h = net.space.hyperspace
    df = read_lut(tmp_path / "onnxw" / "stage3_0_0.csv")
    assert len(df) == 2 * len(h.lut_resolutions)
    assert sorted(set(df["hw"] * h.total_stride_before("stage3"))) == sorted(h.lut_resolutions)
    assert (df["loss"] > 0).all() and (df["latency_ms"] > 0).all() and (df["flops_m"] > 0).all()
    first = parse_stage_config(df["config"][0])
    assert all(w in h.stages[2].window(0) for _k, w, _e in first)
    tables = QTTables.load(tmp_path, "onnxw", fixed_predictor=SumOfMacs(), latency="table")
    assert not [k for k in tables.tables if k[1] != 0]
    score = qt_score(SPACE, tables, [1e6], n_samples=200, seed=0, batch_size=100)
    assert np.isfinite(score.score) and score.score > 0


def test_distill_errors():
    with pytest.raises(ValueError, match="'steps' parameter of DistillConfig"):
        DistillConfig(steps=0)
    h = Supernet(SPACE, n_classes=10).space.hyperspace
    with pytest.raises(ValueError, match="not a width window"):
        StageSupernet(h, 1, 0, 5, cin=16, teacher_cout=32)
    with pytest.raises(ValueError, match="not a block-type digit"):
        StageSupernet(h, 1, 9, 0, cin=16, teacher_cout=32)
