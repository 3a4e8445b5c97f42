"""Dynamic (weight-sharing) and static PyTorch layers that execute the block IR of ``spaceevo.space``.

A block's structure always comes from ``BlockConfig.ops``; this module only supplies weights.
Every leaf op of the IR gets a *role* (``body.pre0``, ``body.mid1``, ``body.se``, ``short.pre0``...)
that is stable across the configs of one block slot, and each role owns one weight bank sized for
the largest config. An active config takes the first ``cout`` x ``cin`` channels of a bank and the
centre ``k x k`` crop of its largest kernel, so the dynamic and the extracted static network run
the same IR with the same numbers.
"""

from __future__ import annotations

import copy
import functools
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaceevo.space import SE, BlockConfig, Conv, GlobalAvgPool, Linear, Op, Residual
from spaceevo.space import leaves as ir_leaves

from ._quant import LsqActQuantizer, LsqWeightQuantizer

_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "relu6": F.relu6,
    "hswish": F.hardswish,
    "swish": F.silu,
    "hsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid,
}


def activation(x: torch.Tensor, act: str | None) -> torch.Tensor:
    """Apply the IR activation ``act`` (``None``: identity)."""
    return x if act is None else _ACTS[act](x)


def leaf_roles(ops: Sequence[Op]) -> list[str]:
    """Role names of the leaf ops of ``ops`` in execution order (body before shortcut).

    Parameters
    ----------
    ops : sequence of Op

    Returns
    -------
    list of str
    """
    roles: list[str] = []

    def visit(items: Sequence[Op], section: str) -> None:
        n_pre = n_mid = n_post = 0
        for op in items:
            if isinstance(op, Residual):
                visit(op.body, "body")
                visit(op.shortcut, "short")
            elif isinstance(op, Conv):
                if op.k > 1 or op.groups > 1:
                    roles.append(f"{section}.mid{n_mid}")
                    n_mid += 1
                elif n_mid == 0:
                    roles.append(f"{section}.pre{n_pre}")
                    n_pre += 1
                else:
                    roles.append(f"{section}.post{n_post}")
                    n_post += 1
            elif isinstance(op, SE):
                roles.append(f"{section}.se")
            elif isinstance(op, GlobalAvgPool):
                roles.append(f"{section}.gap")
            elif isinstance(op, Linear):
                roles.append(f"{section}.linear")
            else:
                raise TypeError(f"unknown op {op!r}")

    visit(ops, "body")
    return roles


@functools.lru_cache(maxsize=4096)
def block_plan(cfg: BlockConfig) -> tuple[tuple[Op, ...], tuple[str, ...]]:
    """The IR of ``cfg`` and the role of each of its leaves (cached: configs are frozen)."""
    return cfg.ops, tuple(leaf_roles(cfg.ops))


def run_ops(ops: Sequence[Op], x: torch.Tensor, leaf: Iterator[Callable]) -> torch.Tensor:
    """Execute the IR on ``x``; ``leaf`` yields, per leaf op in order, a callable ``(op, x) -> y``."""
    for op in ops:
        if isinstance(op, Residual):
            y = run_ops(op.body, x, leaf)
            s = run_ops(op.shortcut, x, leaf) if op.shortcut else x
            x = activation(y + s, op.act)
        elif isinstance(op, GlobalAvgPool):
            next(leaf)
            x = x.mean((2, 3), keepdim=True)
        else:
            x = next(leaf)(op, x)
    return x


def _crop(w: torch.Tensor, k: int) -> torch.Tensor:
    big = w.shape[-1]
    if big == k:
        return w
    off = (big - k) // 2
    return w[:, :, off:off + k, off:off + k]


def conv2d_same(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, stride: int, groups: int, k: int
                ) -> torch.Tensor:
    """``conv2d`` with padding ``(k - 1) // 2``, the kernel cropped to what a small input can reach.

    On an ``h x h`` input, taps further than ``h - 1`` rows or columns from the centre only ever see
    padding, so the centre ``min(k, 2h - 1)`` crop gives the same output for any stride, and avoids
    PyTorch's very slow CPU path for depthwise kernels larger than the input (5x5 on 1x1: ~100x).
    ONNX export keeps the full kernel.
    """
    if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export() and k > 1:
        h = x.shape[-2]
        if 2 * h - 1 < k and x.shape[-1] == h:  # square inputs (a square crop would drop taps of the long side)
            k = 2 * h - 1
            w = _crop(w, k)
    return F.conv2d(x, w, bias, stride, (k - 1) // 2, 1, groups)


# -- dynamic weight banks ---------------------------------------------------------------------------
class ConvBank(nn.Module):
    """Weights for one conv role at its largest shape, with optional BN, bias and LSQ+ quantisers."""

    def __init__(self, cout: int, cin_g: int, k: int, bn: bool, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin_g, k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act_q: LsqActQuantizer | None = None
        self.w_q: LsqWeightQuantizer | None = None

    def enable_qat(self) -> None:
        """Add LSQ+ quantisers for this conv's input activation and weight."""
        if self.w_q is None:
            self.act_q = LsqActQuantizer()
            self.w_q = LsqWeightQuantizer()
            self.w_q.init_from(self.weight.detach())

    def sliced(self, op: Conv) -> dict[str, torch.Tensor | None]:
        """The active weights of ``op``: first channels, centre kernel crop, BN slices."""
        w = _crop(self.weight[:op.cout, :op.cin // op.groups], op.k)
        out = {"weight": w, "bias": self.bias[:op.cout] if op.bias else None}
        if op.bn:
            bn = self.bn
            out.update(bn_weight=bn.weight[:op.cout], bn_bias=bn.bias[:op.cout],
                       running_mean=bn.running_mean[:op.cout], running_var=bn.running_var[:op.cout])
        return out

    def run(self, op: Conv, x: torch.Tensor) -> torch.Tensor:
        """Run the active slice of this bank as ``op``."""
        p = self.sliced(op)
        w = p["weight"]
        if self.w_q is not None:
            x = self.act_q(x)
            w = self.w_q(w)
        y = conv2d_same(x, w, p["bias"], op.stride, op.groups, op.k)
        if op.bn:
            bn = self.bn
            y = F.batch_norm(y, p["running_mean"], p["running_var"], p["bn_weight"], p["bn_bias"],
                             self.training, bn.momentum if bn.momentum is not None else 0.1, bn.eps)
        return activation(y, op.act)


class SEBank(nn.Module):
    """Squeeze-and-Excitation weights (reduce and expand 1x1 convs with biases) at the largest shape."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def run(self, op: SE, x: torch.Tensor) -> torch.Tensor:
        """SE on the first ``op.channels`` channels with ``op.mid`` hidden units."""
        c, m = op.channels, op.mid
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, self.reduce.weight[:m, :c], self.reduce.bias[:m]))
        s = F.hardsigmoid(F.conv2d(s, self.expand.weight[:c, :m], self.expand.bias[:c]))
        return x * s


class LinearBank(nn.Module):
    """Classifier weights at the largest input width, with optional LSQ+ quantisers."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.act_q: LsqActQuantizer | None = None
        self.w_q: LsqWeightQuantizer | None = None

    def enable_qat(self) -> None:
        """Add LSQ+ quantisers for the input activation and the weight."""
        if self.w_q is None:
            self.act_q = LsqActQuantizer()
            self.w_q = LsqWeightQuantizer()
            self.w_q.init_from(self.linear.weight.detach())

    def run(self, op: Linear, x: torch.Tensor) -> torch.Tensor:
        """Linear layer on the first ``op.cin`` inputs."""
        x = x.flatten(1)
        w = self.linear.weight[:op.cout, :op.cin]
        if self.w_q is not None:
            x = self.act_q(x)
            w = self.w_q(w)
        return F.linear(x, w, self.linear.bias[:op.cout])


def _bank_key(role: str) -> str:
    return role.replace(".", "_")


class DynamicBlock(nn.Module):
    """One block slot of the supernet: weight banks for every config the slot can take.

    Parameters
    ----------
    configs : sequence of BlockConfig
        Every configuration the slot can take (one block type).
    """

    def __init__(self, configs: Sequence[BlockConfig]) -> None:
        """Weight banks for ``configs``.

        Initialisation for quick weight-sharing training: the last BN of a residual body that ends
        without activation starts at zero (the block starts as its shortcut), and 1x1 shortcut
        projections start as identity plus 0.3 x their random init. A random subnet changes width
        inside a stage, so its residual stream crosses projections that only random subnets train; a
        purely random projection scrambles the channels (random subnets then stay at chance), a pure
        identity leaves dead input channels with zero variance under BN (exploding gradients).
        """
        super().__init__()
        if not configs:
            raise ValueError("a dynamic block needs at least one config")
        self.block_type = configs[0].type
        shapes: dict[str, dict] = {}
        for cfg in configs:
            ops, roles = block_plan(cfg)
            for op, role in zip(ir_leaves(ops), roles):
                _merge_shape(shapes, role, op)
        banks = {}
        for role, s in shapes.items():
            if s["kind"] == "conv":
                banks[_bank_key(role)] = ConvBank(s["cout"], s["cin_g"], s["k"], s["bn"], s["bias"])
            elif s["kind"] == "se":
                banks[_bank_key(role)] = SEBank(s["channels"], s["mid"])
            elif s["kind"] == "linear":
                banks[_bank_key(role)] = LinearBank(s["cin"], s["cout"])
        self.banks = nn.ModuleDict(banks)
        for role in _residual_last_roles(configs[0]):  # zero-init the last BN of residual bodies
            bank = self.banks[_bank_key(role)]
            if isinstance(bank, ConvBank) and bank.bn is not None:
                nn.init.zeros_(bank.bn.weight)
        for key, bank in self.banks.items():  # 1x1 shortcut projections: identity + 0.3 x random init
            if key.startswith("short_") and isinstance(bank, ConvBank) and bank.weight.shape[-1] == 1:
                with torch.no_grad():
                    n = min(bank.weight.shape[0], bank.weight.shape[1])
                    bank.weight.mul_(0.3)
                    bank.weight[torch.arange(n), torch.arange(n)] += 1.0

    def forward(self, x: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
        ops, roles = block_plan(cfg)
        leaf = (self._leaf_fn(r) for r in roles)
        return run_ops(ops, x, leaf)

    def _leaf_fn(self, role: str) -> Callable:
        if role.endswith(".gap"):
            return _noop
        return self.banks[_bank_key(role)].run

    def enable_qat(self) -> None:
        """Add LSQ+ quantisers to every conv and linear bank of this slot."""
        for bank in self.banks.values():
            if hasattr(bank, "enable_qat"):
                bank.enable_qat()

    @torch.no_grad()
    def extract(self, cfg: BlockConfig) -> "StaticBlock":
        """A static block of ``cfg`` holding copies of the active weights (and quantisers)."""
        ops, roles = block_plan(cfg)
        leaves: list[nn.Module] = []
        for op, role in zip(ir_leaves(ops), roles):
            if isinstance(op, GlobalAvgPool):
                leaves.append(nn.Identity())
                continue
            bank = self.banks[_bank_key(role)]
            if isinstance(op, Conv):
                leaves.append(StaticConv.from_bank(op, bank))
            elif isinstance(op, SE):
                leaves.append(StaticSE.from_bank(op, bank))
            else:
                leaves.append(StaticLinear.from_bank(op, bank))
        return StaticBlock(ops, leaves, cfg)


def _residual_last_roles(cfg: BlockConfig) -> list[str]:
    """Roles of the last conv of every residual body of ``cfg`` that ends in BN without activation.

    Their BN scale is zero-initialised, so the block starts as its shortcut (Goyal et al. 2017), which
    deep weight-sharing supernets need to train quickly. Bodies that end in an activation are left
    alone: ReLU(0) has no gradient, so a zero scale would never move.
    """
    ops, roles = block_plan(cfg)
    flat = list(ir_leaves(ops))
    out = []

    def visit(items: Sequence[Op]) -> None:
        for op in items:
            if isinstance(op, Residual):
                body = list(ir_leaves(op.body))
                if body and isinstance(body[-1], Conv) and body[-1].bn and body[-1].act is None:
                    idx = next(i for i, leaf in enumerate(flat) if leaf is body[-1])
                    out.append(roles[idx])
                visit(op.body)

    visit(ops)
    return out


def _noop(op: Op, x: torch.Tensor) -> torch.Tensor:
    return x


def _merge_shape(shapes: dict[str, dict], role: str, op: Op) -> None:
    if isinstance(op, Conv):
        new = {"kind": "conv", "cout": op.cout, "cin_g": op.cin // op.groups, "k": op.k, "bn": op.bn,
               "bias": op.bias, "depthwise": op.groups > 1}
    elif isinstance(op, SE):
        new = {"kind": "se", "channels": op.channels, "mid": op.mid}
    elif isinstance(op, Linear):
        new = {"kind": "linear", "cin": op.cin, "cout": op.cout}
    else:
        new = {"kind": "gap"}
    old = shapes.get(role)
    if old is None:
        shapes[role] = new
        return
    if old["kind"] != new["kind"] or old.get("depthwise") != new.get("depthwise"):
        raise ValueError(f"role {role} changes kind between configs ({old} vs {new})")
    for key, value in new.items():
        if isinstance(value, bool):
            old[key] = old[key] or value
        elif isinstance(value, int):
            old[key] = max(old[key], value)


# -- static layers ------------------------------------------------------------------------------
class StaticConv(nn.Module):
    """Conv2d + optional BN + activation, optionally with LSQ+ fake quantisation."""

    def __init__(self, op: Conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(op.cin, op.cout, op.k, op.stride, (op.k - 1) // 2, groups=op.groups, bias=op.bias)
        self.bn = nn.BatchNorm2d(op.cout) if op.bn else None
        self.act = op.act
        self.act_q: LsqActQuantizer | None = None
        self.w_q: LsqWeightQuantizer | None = None
        self.fake_quant = False

    @classmethod
    def from_bank(cls, op: Conv, bank: ConvBank) -> "StaticConv":
        """Copy the active slice of ``bank``."""
        m = cls(op)
        p = bank.sliced(op)
        m.conv.weight.copy_(p["weight"])
        if op.bias:
            m.conv.bias.copy_(p["bias"])
        if op.bn:
            m.bn.weight.copy_(p["bn_weight"])
            m.bn.bias.copy_(p["bn_bias"])
            m.bn.running_mean.copy_(p["running_mean"])
            m.bn.running_var.copy_(p["running_var"])
        if bank.w_q is not None:
            m.act_q, m.w_q, m.fake_quant = copy.deepcopy(bank.act_q), copy.deepcopy(bank.w_q), True
        return m

    def forward(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        if self.fake_quant and self.w_q is not None:
            x, w = self.act_q(x), self.w_q(w)
        y = conv2d_same(x, w, self.conv.bias, self.conv.stride[0], self.conv.groups, self.conv.kernel_size[0])
        if self.bn is not None:
            y = self.bn(y)
        return activation(y, self.act)


class StaticSE(nn.Module):
    """Squeeze-and-Excitation with fixed widths."""

    def __init__(self, op: SE) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(op.channels, op.mid, 1)
        self.expand = nn.Conv2d(op.mid, op.channels, 1)

    @classmethod
    def from_bank(cls, op: SE, bank: SEBank) -> "StaticSE":
        """Copy the active slice of ``bank``."""
        m = cls(op)
        c, mid = op.channels, op.mid
        m.reduce.weight.copy_(bank.reduce.weight[:mid, :c])
        m.reduce.bias.copy_(bank.reduce.bias[:mid])
        m.expand.weight.copy_(bank.expand.weight[:c, :mid])
        m.expand.bias.copy_(bank.expand.bias[:c])
        return m

    def forward(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class StaticLinear(nn.Module):
    """Flatten + linear layer, optionally with LSQ+ fake quantisation."""

    def __init__(self, op: Linear) -> None:
        super().__init__()
        self.linear = nn.Linear(op.cin, op.cout)
        self.act_q: LsqActQuantizer | None = None
        self.w_q: LsqWeightQuantizer | None = None
        self.fake_quant = False

    @classmethod
    def from_bank(cls, op: Linear, bank: LinearBank) -> "StaticLinear":
        """Copy the active slice of ``bank``."""
        m = cls(op)
        m.linear.weight.copy_(bank.linear.weight[:op.cout, :op.cin])
        m.linear.bias.copy_(bank.linear.bias[:op.cout])
        if bank.w_q is not None:
            m.act_q, m.w_q, m.fake_quant = copy.deepcopy(bank.act_q), copy.deepcopy(bank.w_q), True
        return m

    def forward(self, op: Op, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        w = self.linear.weight
        if self.fake_quant and self.w_q is not None:
            x, w = self.act_q(x), self.w_q(w)
        return F.linear(x, w, self.linear.bias)


class StaticBlock(nn.Module):
    """A concrete block: its IR executed by static leaf modules.

    Parameters
    ----------
    ops : tuple of Op
        The block's IR.
    leaves : sequence of torch.nn.Module
        One module per leaf op of ``ops`` (``spaceevo.space.leaves`` order).
    cfg : BlockConfig, optional
    """

    def __init__(self, ops: tuple[Op, ...], leaves: Sequence[nn.Module], cfg: BlockConfig | None = None) -> None:
        super().__init__()
        self.ops = ops
        self.leaves = nn.ModuleList(leaves)
        self.config = cfg

    @classmethod
    def from_config(cls, cfg: BlockConfig) -> "StaticBlock":
        """A freshly initialised static block of ``cfg``."""
        leaves: list[nn.Module] = []
        for op in ir_leaves(cfg.ops):
            if isinstance(op, Conv):
                leaves.append(StaticConv(op))
            elif isinstance(op, SE):
                leaves.append(StaticSE(op))
            elif isinstance(op, Linear):
                leaves.append(StaticLinear(op))
            else:
                leaves.append(nn.Identity())
        return cls(cfg.ops, leaves, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_ops(self.ops, x, iter(self.leaves))
