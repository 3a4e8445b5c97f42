"""Supernet training: FP32 with the sandwich rule and in-place distillation, then LSQ+ INT8 QAT.

Every step trains the max subnet with cross-entropy and the min subnet plus ``n_random`` random
subnets against the max subnet's (detached) soft predictions, in one forward so that PyTorch's
``DistributedDataParallel`` (``torchrun``) reduces the summed gradients once per step. All ranks draw
the same subnets (the generator is seeded by ``(seed, step)``). After ``epochs`` FP32 epochs,
``qat_epochs`` more epochs run with LSQ+ fake quantisation. A checkpoint is written after every
epoch and training resumes from it; ``metrics.jsonl`` logs one line per epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaceevo.space import SearchSpace

from ._data import load_dataset
from ._quant import LsqActQuantizer
from ._supernet import Supernet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of supernet training (validated at construction)."""

    space: str
    dataset: str = "digits"
    image_size: int = 16
    epochs: int = 3
    qat_epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-3
    qat_lr: float = 2e-4
    weight_decay: float = 3e-5
    n_random: int = 2
    val_fraction: float = 0.2
    seed: int = 0
    bn_batches: int = 8
    device: str = "auto"
    optimizer: str = "adamw"
    warmup_steps: int = 20
    limit_steps: int = 0
    label_weight: float = 0.5

    def __post_init__(self) -> None:
        SearchSpace.parse(self.space)
        for name, low in (("image_size", 8), ("epochs", 0), ("qat_epochs", 0), ("batch_size", 2),
                          ("n_random", 0), ("bn_batches", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"The '{name}' parameter of TrainConfig must be an integer >= {low}. "
                                 f"Got {value!r} instead.")
        if self.epochs + self.qat_epochs < 1:
            raise ValueError("epochs + qat_epochs must be >= 1")
        for name in ("lr", "qat_lr"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"The '{name}' parameter of TrainConfig must be > 0. Got {value!r} instead.")
        if not 0.0 <= self.label_weight <= 1.0:
            raise ValueError(f"The 'label_weight' parameter of TrainConfig must be in [0, 1]. "
                             f"Got {self.label_weight!r} instead.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"The 'optimizer' parameter of TrainConfig must be one of {list(OPTIMIZERS)}. "
                             f"Got {self.optimizer!r} instead.")
        if not isinstance(self.limit_steps, int) or self.limit_steps < 0:
            raise ValueError(f"The 'limit_steps' parameter of TrainConfig must be an integer >= 0 (0: whole "
                             f"epochs). Got {self.limit_steps!r} instead.")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"The 'warmup_steps' parameter of TrainConfig must be an integer >= 0. "
                             f"Got {self.warmup_steps!r} instead.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not in ['auto', 'cpu', 'cuda']")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


class SandwichLoss(nn.Module):
    """One sandwich-rule step: CE on the first (max) subnet, distillation of the others to it.

    With ``label_weight`` w > 0 the other subnets' loss is ``(1 - w) * KD + w * CE``: early in a short
    run the max subnet is a weak teacher, and the labels speed the small subnets up.
    """

    def __init__(self, net: Supernet, label_weight: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.label_weight = label_weight

    def forward(self, x: torch.Tensor, y: torch.Tensor, subnets: list) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x, subnets[0])
        loss_max = F.cross_entropy(logits, y)
        soft = logits.detach().softmax(1)
        total, kd = loss_max, []
        for sub in subnets[1:]:
            out = self.net(x, sub)
            loss = -(soft * out.log_softmax(1)).sum(1).mean()
            kd.append(loss.detach())
            if self.label_weight:
                loss = (1 - self.label_weight) * loss + self.label_weight * F.cross_entropy(out, y)
            total = total + loss
        acc = (logits.argmax(1) == y).float().mean()
        stats = torch.stack([loss_max.detach(), torch.stack(kd).mean() if kd else torch.zeros(()), acc.detach()])
        return total, stats


def _device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _dist_setup(device: torch.device) -> tuple[int, int]:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _augment(x: torch.Tensor, rng: np.random.Generator, max_shift: int = 2) -> torch.Tensor:
    shifts = rng.integers(-max_shift, max_shift + 1, (len(x), 2))
    return torch.stack([torch.roll(img, (int(dy), int(dx)), (1, 2)) for img, (dy, dx) in zip(x, shifts)])


def _param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.ndim > 1 and "_q." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Re-estimate BatchNorm statistics of a (static) model on ``batches``; returns it in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
    batches : list of torch.Tensor

    Returns
    -------
    torch.nn.Module
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for x in batches:
        model(x)
    model.eval()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` (called as ``model(x)``) on ``loader``.

    Parameters
    ----------
    model : torch.nn.Module
    loader : iterable of (images, labels)
    device : torch.device or str

    Returns
    -------
    float
    """
    model.eval()
    correct = total = 0
    for x, y in loader:
        out = model(x.to(device))
        correct += int((out.argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / max(1, total)


@torch.no_grad()
def calibrate_quantizers(net: Supernet, x: torch.Tensor, seed: int = 0, n_random: int = 8) -> None:
    """Initialise every LSQ+ activation quantiser deterministically from one batch.

    Parameters
    ----------
    net : Supernet
    x : torch.Tensor
        One input batch.
    seed : int
    n_random : int
        Random subnets run besides the max and min ones.
    """
    rng = np.random.default_rng(seed)
    was_training = net.training
    net.eval()
    for sub in [net.max_subnet(), net.min_subnet()] + [net.sample(rng) for _ in range(n_random)]:
        net(x, sub)
    for m in net.modules():
        if isinstance(m, LsqActQuantizer) and not bool(m.initialized):
            m._init_from(torch.tensor([-4.0, 4.0]))
    net.train(was_training)


def save_checkpoint(path: Path, net: Supernet, cfg: TrainConfig, classes: list[str], epoch: int,
                    optimizer: torch.optim.Optimizer | None, scheduler: Any, history: list[dict]) -> None:
    """Write a checkpoint atomically (temp file, then rename)."""
    state = {
        "format": CHECKPOINT_FORMAT, "space": str(net.space), "n_classes": net.n_classes, "classes": classes,
        "qat": net.qat, "config": cfg.as_dict(), "epoch": epoch, "model": net.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None, "history": history,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_supernet(path: str | Path, map_location: str = "cpu") -> tuple[Supernet, dict]:
    """A supernet and its checkpoint metadata from ``path``.

    Parameters
    ----------
    path : str or Path
    map_location : str

    Returns
    -------
    (Supernet, dict)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} is not a spaceevo supernet checkpoint "
                         f"(format {CHECKPOINT_FORMAT})")
    net = Supernet(state["space"], state["n_classes"])
    if state["qat"]:
        net.enable_qat()
    net.load_state_dict(state["model"])
    return net, state


def _cosine(total_steps: int, warmup_steps: int = 0):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        t = min(step - warmup_steps, total_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


def train_supernet(cfg: TrainConfig, out_dir: str | Path, resume: bool = True, progress: bool = True) -> dict:
    """Train a supernet as configured; writes ``checkpoint.pt``, ``supernet.pt`` and ``metrics.jsonl``.

    Parameters
    ----------
    cfg : TrainConfig
    out_dir : str or Path
    resume : bool
        Continue from ``out_dir/checkpoint.pt``.
    progress : bool

    Returns
    -------
    dict
        ``out_dir``, ``epochs``, the per-epoch ``history``, ``world_size`` and ``checkpoint``.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    out = Path(out_dir)
    device = _device(cfg.device)
    rank, world = _dist_setup(device)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.image_size, cfg.val_fraction, cfg.seed)
    net = Supernet(cfg.space, n_classes=len(data.classes)).to(device)
    ck_path = out / "checkpoint.pt"
    start_epoch, history, ck = 0, [], None
    if resume and ck_path.is_file():
        ck = torch.load(ck_path, map_location=device, weights_only=False)
        if ck.get("space") != cfg.space or ck.get("n_classes") != len(data.classes):
            raise ValueError(f"checkpoint {str(ck_path)!r} is for space {ck.get('space')!r} with "
                             f"{ck.get('n_classes')} classes, not {cfg.space!r} with {len(data.classes)}; "
                             "use another output folder or --no-resume")
        if ck["qat"]:
            net.enable_qat()
        net.load_state_dict(ck["model"])
        start_epoch, history = ck["epoch"], ck["history"]
        log.info("resumed from %s at epoch %d", ck_path, start_epoch)
    if world > 1:
        sampler = DistributedSampler(data.train, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    else:
        sampler = RandomSampler(data.train, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    val_loader = DataLoader(data.val, batch_size=256)
    bn_loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=False)
    bn_batches = [x.to(device) for _, (x, _y) in zip(range(cfg.bn_batches), bn_loader)]
    steps_per_epoch = len(loader) if not cfg.limit_steps else min(len(loader), cfg.limit_steps)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training split "
                         f"({len(data.train)} images per rank)")
    total_epochs = cfg.epochs + cfg.qat_epochs
    phase_state: tuple | None = None
    t0 = time.time()
    for epoch in range(start_epoch, total_epochs):
        qat = epoch >= cfg.epochs
        if qat and not net.qat:
            net.enable_qat().to(device)
            calibrate_quantizers(net, bn_batches[0], cfg.seed)
        if phase_state is None or phase_state[0] != qat:
            phase_state = _make_phase(net, cfg, qat, device, world, steps_per_epoch)
            if ck is not None and ck.get("optimizer") is not None and ck["qat"] == qat and ck["epoch"] == epoch:
                phase_state[2].load_state_dict(ck["optimizer"])
                phase_state[3].load_state_dict(ck["scheduler"])
            ck = None
        _, model, optimizer, scheduler = phase_state
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        record = _run_epoch(model, net, loader, optimizer, scheduler, cfg, epoch, steps_per_epoch, device,
                            progress and rank == 0, qat)
        record.update(_eval_extremes(net, val_loader, bn_batches, device, cfg.seed))
        record.update(epoch=epoch + 1, phase="qat" if qat else "fp32", time_s=round(time.time() - t0, 1))
        history.append(record)
        if rank == 0:
            log.info("epoch %d/%d %s", epoch + 1, total_epochs, record)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(ck_path, net, cfg, data.classes, epoch + 1, optimizer, scheduler, history)
    if rank == 0:
        save_checkpoint(out / "supernet.pt", net, cfg, data.classes, total_epochs, None, None, history)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return {"out_dir": str(out), "epochs": total_epochs, "history": history, "world_size": world,
            "checkpoint": str(out / "supernet.pt")}


def _make_phase(net: Supernet, cfg: TrainConfig, qat: bool, device: torch.device, world: int,
                steps_per_epoch: int) -> tuple:
    model: nn.Module = SandwichLoss(net, cfg.label_weight)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=True)
    lr = cfg.qat_lr if qat else cfg.lr
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(_param_groups(net, cfg.weight_decay), lr=lr)
    else:
        optimizer = torch.optim.SGD(_param_groups(net, cfg.weight_decay), lr=lr, momentum=0.9, nesterov=True)
    n_epochs = cfg.qat_epochs if qat else cfg.epochs
    warmup = 0 if qat else cfg.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(n_epochs * steps_per_epoch, warmup))
    return qat, model, optimizer, scheduler


def _run_epoch(model: nn.Module, net: Supernet, loader, optimizer, scheduler, cfg: TrainConfig, epoch: int,
               steps_per_epoch: int, device: torch.device, progress: bool, qat: bool) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    model.train()
    sums = torch.zeros(3)
    label = f"{'qat' if qat else 'fp32'} epoch {epoch + 1}/{cfg.epochs + cfg.qat_epochs}"
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}"), disable=not progress, transient=False)
    with bar:
        task = bar.add_task(label, total=steps_per_epoch, info="")
        for i, (x, y) in enumerate(loader):
            if i >= steps_per_epoch:
                break
            step = epoch * steps_per_epoch + i
            rng = np.random.default_rng([cfg.seed, step])
            x = _augment(x, rng, max(1, cfg.image_size // 16)).to(device)
            y = y.to(device)
            subnets = [net.max_subnet(), net.min_subnet()] + [net.sample(rng) for _ in range(cfg.n_random)]
            optimizer.zero_grad(set_to_none=True)
            loss, stats = model(x, y, subnets)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            sums += stats.cpu()
            bar.update(task, advance=1, info=f"loss {stats[0]:.3f} kd {stats[1]:.3f}")
    mean = (sums / steps_per_epoch).tolist()
    return {"lr": optimizer.param_groups[0]["lr"], "loss_max": round(mean[0], 4), "loss_kd": round(mean[1], 4),
            "train_acc_max": round(mean[2], 4)}


def _eval_extremes(net: Supernet, val_loader, bn_batches: list[torch.Tensor], device: torch.device,
                   seed: int = 0) -> dict:
    out = {}
    rand = net.space.sample(1, seed)[0]
    for name, sub in (("max", net.max_subnet()), ("min", net.min_subnet()), ("rand", rand)):
        static = recalibrate_bn(net.extract(sub).to(device), bn_batches)
        out[f"val_acc_{name}"] = round(evaluate(static, val_loader, device), 4)
    net.train()
    return out
