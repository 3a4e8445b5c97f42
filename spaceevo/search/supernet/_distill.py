"""Block-wise distillation look-up tables (SPACEEVO.md section 5) from a teacher and a dataset.

For one (stage S, block type B, width window W) of a hyperspace, a weight-sharing *stage* supernet
(every depth, kernel, width and expand ratio of B in W) is trained on the teacher's stage-S input
features to reproduce the teacher's stage-S output features, with the noise-to-signal ratio

    NSR = ||f_student - f_teacher||^2 / ||f_teacher||^2

(the student's last width is mapped to the teacher's by a shared 1x1 adapter, first channels of one
bank). Each step trains the largest, the smallest and one random stage config (sandwich rule);
optional LSQ+ QAT steps follow. Then ``rows`` random stage configs are extracted, their BatchNorm
re-estimated, and their NSR measured on held-out features. Each config is written once per look-up-
table resolution of the hyperspace, in the public format (no header: config, ``1xCxHxW``, loss,
FLOPs (M), params (M), INT8 latency (ms) from a latency predictor), so ``search/_tables.py`` and
``spaceevo qt-score --lut-dir`` read the result. The loss is measured at the training image size of
the features; FLOPs, params and latency at the row's resolution.

The teacher is a subnet of the same hyperspace (by default the largest subnet of a trained supernet
checkpoint), so stage strides and feature sizes line up.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from spaceevo.datasets import DEVICE_PREDICTORS
from spaceevo.predictors import load_predictor
from spaceevo.space import BlockConfig, Hyperspace, SearchSpace, conv_out_hw

from ._data import load_dataset
from ._layers import ConvBank, DynamicBlock
from ._supernet import StaticSubnet
from ._train import load_supernet, recalibrate_bn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one table's block-wise distillation (validated at construction)."""

    steps: int = 200
    qat_steps: int = 0
    batch_size: int = 64
    lr: float = 2e-3
    rows: int = 20
    bn_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("qat_steps", 0), ("batch_size", 2), ("rows", 1), ("bn_batches", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"The '{name}' parameter of DistillConfig must be an integer >= {low}. "
                                 f"Got {value!r} instead.")
        if not self.lr > 0:
            raise ValueError(f"The 'lr' parameter of DistillConfig must be > 0. Got {self.lr!r} instead.")


def nsr_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Noise-to-signal ratio ``||s - t||^2 / ||t||^2`` over the whole batch."""
    return (student - teacher).square().sum() / teacher.square().sum().clamp_min(1e-12)


@dataclass(frozen=True)
class StageFeatures:
    """The teacher's input and output features of one stage on the train and held-out splits."""

    stage: int
    train_in: torch.Tensor
    train_out: torch.Tensor
    val_in: torch.Tensor
    val_out: torch.Tensor


@torch.no_grad()
def teacher_stage_features(teacher: StaticSubnet, train: torch.Tensor, val: torch.Tensor,
                           batch_size: int = 256) -> list[StageFeatures]:
    """Input/output features of stages 1..6 of ``teacher`` (a static subnet) on image tensors."""
    depths = list(teacher.subnet.depths)
    bounds = np.cumsum([0] + depths)  # block index ranges: first_conv, stage0, stage1..6

    ends = {int(bounds[2 + s]) - 1: s for s in range(7)}  # last block index of stage0 (0) and stage1..6

    def run(images: torch.Tensor) -> list[torch.Tensor]:
        outs: list[list[torch.Tensor]] = [[] for _ in range(7)]  # stage0 output (= stage1 input), stage1..6
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            for b, block in enumerate(teacher.blocks[:int(bounds[-1])]):
                x = block(x)
                if b in ends:
                    outs[ends[b]].append(x)
        return [torch.cat(o) for o in outs]

    teacher.eval()
    tr, va = run(train), run(val)
    return [StageFeatures(s, tr[s - 1], tr[s], va[s - 1], va[s]) for s in range(1, 7)]


class StageSupernet(nn.Module):
    """Weight-sharing candidates of one stage (block type x width window) plus a 1x1 adapter to the teacher."""

    def __init__(self, hyper: Hyperspace, stage: int, block: int, window: int, cin: int, teacher_cout: int) -> None:
        super().__init__()
        spec = hyper.stages[stage - 1]
        if not 0 <= block < len(hyper.block_choices):
            raise ValueError(f"block={block!r} is not a block-type digit of {hyper.name} "
                             f"(0..{len(hyper.block_choices) - 1})")
        if not 0 <= window < spec.n_windows:
            raise ValueError(f"window={window!r} is not a width window of {hyper.name} stage{stage} "
                             f"(0..{spec.n_windows - 1})")
        self.hyper, self.stage, self.block, self.window = hyper, stage, block, window
        self.spec = spec
        self.choice = hyper.block_choices[block]
        self.widths = spec.window(window)
        self.cin = cin
        c = self.choice
        self.slots = nn.ModuleList()
        for i in range(max(spec.depths)):
            cins = (cin,) if i == 0 else self.widths
            stride = spec.stride if i == 0 else 1
            self.slots.append(DynamicBlock([BlockConfig(c.type, 8, ci, w, k, e, stride, c.act) for ci in cins
                                            for w in self.widths for k in c.kernel_sizes for e in c.expand_ratios]))
        self.adapter = ConvBank(teacher_cout, max(self.widths), 1, bn=False, bias=True)
        nn.init.normal_(self.adapter.weight, std=max(self.widths) ** -0.5)

    # -- stage configs: a list of (k, w, e) per block -------------------------------------------
    def max_config(self) -> list[tuple[int, int, float]]:
        c = self.choice
        return [(max(c.kernel_sizes), max(self.widths), max(c.expand_ratios))] * max(self.spec.depths)

    def min_config(self) -> list[tuple[int, int, float]]:
        c = self.choice
        return [(min(c.kernel_sizes), min(self.widths), min(c.expand_ratios))] * min(self.spec.depths)

    def sample_config(self, rng: np.random.Generator) -> list[tuple[int, int, float]]:
        c = self.choice
        d = int(rng.choice(self.spec.depths))
        return [(int(rng.choice(c.kernel_sizes)), int(rng.choice(self.widths)), float(rng.choice(c.expand_ratios)))
                for _ in range(d)]

    def block_configs(self, config: Sequence[tuple[int, int, float]], hw: int = 8) -> list[BlockConfig]:
        """Concrete blocks of a stage config at input size ``hw`` (first block: stage stride, ``cin``)."""
        out, cin = [], self.cin
        for i, (k, w, e) in enumerate(config):
            stride = self.spec.stride if i == 0 else 1
            out.append(BlockConfig(self.choice.type, hw, cin, w, k, e, stride, self.choice.act))
            hw, cin = conv_out_hw(hw, k, stride), w
        return out

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        w = self.adapter.weight[:, :x.shape[1]]
        return torch.nn.functional.conv2d(x, w, self.adapter.bias)

    def forward(self, x: torch.Tensor, config: Sequence[tuple[int, int, float]]) -> torch.Tensor:
        for slot, cfg in zip(self.slots, self.block_configs(config)):
            x = slot(x, cfg)
        return self._adapt(x)

    @torch.no_grad()
    def extract(self, config: Sequence[tuple[int, int, float]]) -> nn.Module:
        """A static model of ``config`` (blocks + adapter) with copied weights."""
        blocks = [slot.extract(cfg) for slot, cfg in zip(self.slots, self.block_configs(config))]
        width = config[-1][1]
        adapter = nn.Conv2d(width, self.adapter.weight.shape[0], 1)
        adapter.weight.copy_(self.adapter.weight[:, :width])
        adapter.bias.copy_(self.adapter.bias)
        return nn.Sequential(*blocks, adapter)

    def enable_qat(self) -> "StageSupernet":
        for slot in self.slots:
            slot.enable_qat()
        return self


def config_string(config: Sequence[tuple[int, int, float]], expand_ratios: Sequence[float]) -> str:
    """The public config string: blocks ``k#w#e`` joined by ``_`` (``None`` for no expand ratio)."""
    integral = all(float(e).is_integer() for e in expand_ratios)

    def fmt(e: float) -> str:
        if e == 0:
            return "None"
        return str(int(e)) if integral else str(float(e))

    return "_".join(f"{k}#{w}#{fmt(e)}" for k, w, e in config)


def distill_stage(net: StageSupernet, feats: StageFeatures, cfg: DistillConfig, progress: bool = False
                  ) -> list[tuple[list[tuple[int, int, float]], float]]:
    """Train ``net`` on ``feats`` (sandwich rule, NSR loss) and return ``rows`` (config, held-out NSR) pairs."""
    g = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, net.stage, net.block, net.window])
    n = len(feats.train_in)
    bs = min(cfg.batch_size, n)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    total = cfg.steps + cfg.qat_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / total)))
    net.train()
    for step in range(total):
        if step == cfg.steps and cfg.qat_steps:
            net.enable_qat()
            with torch.no_grad():  # initialise the activation quantisers on real features
                x0 = feats.train_in[:bs]
                for c in [net.max_config(), net.min_config()] + [net.sample_config(rng) for _ in range(4)]:
                    net(x0, c)
            opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr * 0.2,
                                    weight_decay=0.0)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        idx = torch.randint(0, n, (bs,), generator=g)
        x, t = feats.train_in[idx], feats.train_out[idx]
        loss = sum(nsr_loss(net(x, c), t) for c in (net.max_config(), net.min_config(), net.sample_config(rng)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        if progress and (step + 1) % max(1, total // 5) == 0:
            log.info("stage%d_%d_%d step %d/%d loss %.4f", net.stage, net.block, net.window, step + 1, total,
                     float(loss) / 3)
    bn = [feats.train_in[i:i + bs] for i in range(0, min(n, bs * cfg.bn_batches), bs)]
    configs = [net.max_config(), net.min_config()] + [net.sample_config(rng) for _ in range(max(0, cfg.rows - 2))]
    out = []
    for c in configs[:cfg.rows]:
        static = recalibrate_bn(net.extract(c), bn)
        with torch.no_grad():
            loss = float(nsr_loss(static(feats.val_in), feats.val_out))
        out.append((c, loss))
    return out


def write_table(path: str | Path, net: StageSupernet, rows: Sequence[tuple[list, float]], predictor) -> Path:
    """Write rows at every look-up-table resolution of the hyperspace, in the public CSV format."""
    hyper = net.hyper
    stride = hyper.total_stride_before(f"stage{net.stage}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for res in hyper.lut_resolutions:
        hw = res // stride
        blocks_per_row = [net.block_configs(c, hw) for c, _loss in rows]
        flat = [b for bl in blocks_per_row for b in bl]
        lat = np.asarray(predictor.predict_blocks(flat), dtype=float)
        pos = 0
        for (c, loss), bl in zip(rows, blocks_per_row):
            ms = float(lat[pos:pos + len(bl)].sum())
            pos += len(bl)
            lines.append([config_string(c, net.choice.expand_ratios), f"1x{net.cin}x{hw}x{hw}", f"{loss:.4f}",
                          f"{sum(b.macs for b in bl) / 1e6:.4f}", f"{sum(b.params for b in bl) / 1e6:.4f}",
                          f"{ms:.4f}"])
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    return path


def distill_tables(teacher: StaticSubnet, train_images: torch.Tensor, val_images: torch.Tensor, out_dir: str | Path,
                   tables: Sequence[tuple[int, int, int]], predictor, cfg: DistillConfig | None = None,
                   progress: bool = False) -> list[dict]:
    """Distil and write ``stage{S}_{B}_{W}.csv`` for each (S, B, W) of ``tables`` under ``out_dir/<hyperspace>/``.

    Parameters
    ----------
    teacher : StaticSubnet
    train_images, val_images : torch.Tensor
    out_dir : str or Path
    tables : sequence of (int, int, int)
        (stage, block digit, window digit) of each table.
    predictor : LatencyPredictor
        Fills the latency column.
    cfg : DistillConfig, optional
    progress : bool

    Returns
    -------
    list of dict
        One summary per table (``table``, ``path``, ``rows``, NSR range, ``time_s``).

    Raises
    ------
    ValueError
        A stage that is not searchable.
    """
    cfg = cfg or DistillConfig()
    hyper = teacher.space.hyperspace
    for s, b, w in tables:
        if not 1 <= s <= len(hyper.stages):
            raise ValueError(f"stage={s!r} is not a searchable stage of {hyper.name} (1..{len(hyper.stages)})")
    torch.manual_seed(cfg.seed)
    feats = teacher_stage_features(teacher, train_images, val_images)
    root = Path(out_dir) / hyper.name
    summary = []
    for s, b, w in tables:
        t0 = time.time()
        f = feats[s - 1]
        net = StageSupernet(hyper, s, b, w, cin=f.train_in.shape[1], teacher_cout=f.train_out.shape[1])
        rows = distill_stage(net, f, cfg, progress)
        path = write_table(root / f"stage{s}_{b}_{w}.csv", net, rows, predictor)
        losses = [r[1] for r in rows]
        summary.append({"table": path.name, "path": str(path), "rows": len(rows) * len(hyper.lut_resolutions),
                        "nsr_min": round(min(losses), 4), "nsr_max": round(max(losses), 4),
                        "nsr_max_config": round(rows[0][1], 4), "nsr_min_config": round(rows[1][1], 4)
                        if len(rows) > 1 else None, "time_s": round(time.time() - t0, 1)})
        log.info("%s", summary[-1])
    return summary


def table_keys(hyper: Hyperspace, space: str | None = None, tables: Sequence[str] = ()) -> list[tuple[int, int, int]]:
    """The tables to distil: the six of ``space`` (stage order), then each ``S_B_W`` of ``tables``, once each.

    Parameters
    ----------
    hyper : Hyperspace
        The teacher's hyperspace.
    space : str, optional
        A search space of ``hyper``: its six (stage, block, window) tables.
    tables : sequence of str
        More tables as ``S_B_W`` (stage, block digit, window digit), e.g. ``"3_1_2"``.

    Returns
    -------
    list of (int, int, int)

    Raises
    ------
    ValueError
        ``space`` of another hyperspace, a malformed ``S_B_W``, or neither given.
    """
    keys: list[tuple[int, int, int]] = []
    if space:
        sp = SearchSpace.parse(space)
        if sp.hyperspace.name != hyper.name:
            raise ValueError(f"--space {space!r} is not in the teacher's hyperspace {hyper.name!r}")
        keys += [(s, b, w) for s, (b, w) in enumerate(zip(sp.block_types, sp.windows), start=1)]
    for t in tables:
        parts = t.split("_")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"--table {t!r} must be S_B_W, e.g. 3_1_2")
        keys.append(tuple(int(p) for p in parts))
    if not keys:
        raise ValueError("give --space SPACE and/or --table S_B_W")
    return list(dict.fromkeys(keys))


def distill_checkpoint(checkpoint: str | Path, out_dir: str | Path, space: str | None = None,
                       tables: Sequence[str] = (), teacher_subnet: str | None = None, data: str | None = None,
                       image_size: int | None = None, predictor: str | None = None, cfg: DistillConfig | None = None,
                       progress: bool = False) -> list[dict]:
    """``distill_tables`` with a subnet of a trained supernet as the teacher (what ``spaceevo distill-tables`` runs).

    The teacher (``teacher_subnet``, default the largest subnet) is extracted with its weights, its
    BatchNorm statistics re-estimated on 512 training images (the float model, fake quantisation off),
    and its stage features computed on the whole dataset.

    Parameters
    ----------
    checkpoint : str or Path
        ``supernet.pt`` of ``train_supernet``.
    out_dir : str or Path
        Tables go to ``out_dir/<hyperspace>/``.
    space, tables
        Which tables (see ``table_keys``).
    teacher_subnet : str, optional
    data : str, optional
        Dataset (default: the checkpoint's).
    image_size : int, optional
        Image side (default: the checkpoint's).
    predictor : str, optional
        Latency predictor name or file (default: the built-in one of the hyperspace's device).
    cfg : DistillConfig, optional
    progress : bool

    Returns
    -------
    list of dict
        ``distill_tables``'s summary.
    """
    net, state = load_supernet(checkpoint)
    hyper = net.space.hyperspace
    keys = table_keys(hyper, space, tables)
    ck = state["config"]
    size = image_size or ck["image_size"]
    ds = load_dataset(data or ck["dataset"], size, ck["val_fraction"], ck["seed"])
    train_x = torch.cat([x for x, _ in DataLoader(ds.train, batch_size=256)])
    val_x = torch.cat([x for x, _ in DataLoader(ds.val, batch_size=256)])
    sub = teacher_subnet or str(net.max_subnet())
    static = recalibrate_bn(net.extract(sub).set_fake_quant(False), [train_x[i:i + 64] for i in range(0, 512, 64)])
    pred = load_predictor(predictor or DEVICE_PREDICTORS[hyper.name])
    return distill_tables(static, train_x, val_x, out_dir, keys, pred, cfg, progress=progress)
