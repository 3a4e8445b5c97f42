"""The weight-sharing supernet of a search space, and static subnets extracted from it.

Elastic depth per stage (a subnet runs the first ``d`` slots of a stage), elastic kernel size
(centre crop of the largest kernel), elastic width (first channels) and elastic expand ratio
(first hidden channels); see ``_layers`` for the weight banks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from spaceevo.space import BlockConfig, SearchSpace, StageBlock, Subnet, as_search_space

from ._layers import DynamicBlock, StaticBlock


def _as_subnet(space: SearchSpace, subnet: Subnet | str) -> Subnet:
    return space.parse_subnet(subnet) if isinstance(subnet, str) else space.validate(subnet)


def subnet_blocks(space: SearchSpace, subnet: Subnet, n_classes: int) -> list[StageBlock]:
    """Concrete blocks of ``subnet`` with a classifier of ``n_classes`` outputs.

    Parameters
    ----------
    space : SearchSpace
    subnet : Subnet
    n_classes : int

    Returns
    -------
    list of StageBlock
    """
    blocks = space.blocks(subnet)
    last = blocks[-1]
    blocks[-1] = StageBlock(last.stage, dataclasses.replace(last.config, cout=n_classes))
    return blocks


class Supernet(nn.Module):
    """Weight-sharing supernet over every subnet of ``space``, with an ``n_classes`` classifier.

    Parameters
    ----------
    space : SearchSpace or str
    n_classes : int
    """

    def __init__(self, space: SearchSpace | str, n_classes: int = 1000) -> None:
        super().__init__()
        space = as_search_space(space)
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes={n_classes!r} must be an integer >= 2")
        self.space = space
        self.n_classes = n_classes
        h = space.hyperspace
        self.stages = nn.ModuleList()
        prev: tuple[int, ...] = (h.in_channels,)
        for stage, choice, widths in space.stage_options():
            slots = nn.ModuleList()
            for i in range(max(stage.depths)):
                cins = prev if i == 0 else widths
                stride = stage.stride if i == 0 else 1
                cfgs = [BlockConfig(choice.type, 8, cin, w, k, e, stride, choice.act)
                        for cin in cins for w in widths for k in choice.kernel_sizes for e in choice.expand_ratios]
                slots.append(DynamicBlock(cfgs))
            self.stages.append(slots)
            prev = widths
        self.final_expand = DynamicBlock([BlockConfig("FinalExpandBlock", 8, c, h.final_expand_width, 1, 0, 1,
                                                      h.head_act) for c in prev])
        self.feature_mix = DynamicBlock([BlockConfig("FeatureMixBlock", 8, h.final_expand_width,
                                                     h.feature_mix_width, 1, 0, 1, h.head_act)])
        self.logits = DynamicBlock([BlockConfig("LogitsBlock", 1, h.feature_mix_width, n_classes, 1, 0, 1, "relu")])
        self.qat = False
        self._plans: dict[str, list[tuple[DynamicBlock, BlockConfig]]] = {}

    # -- subnets ------------------------------------------------------------------------------------
    def plan(self, subnet: Subnet | str) -> list[tuple[DynamicBlock, BlockConfig]]:
        """The (slot, config) pairs that ``subnet`` activates, in execution order."""
        key = str(subnet)
        if key not in self._plans:
            sub = _as_subnet(self.space, subnet)
            blocks = subnet_blocks(self.space, sub, self.n_classes)
            slots: list[DynamicBlock] = [s for d, stage in zip(sub.depths, self.stages) for s in list(stage)[:d]]
            slots += [self.final_expand, self.feature_mix, self.logits]
            self._plans[key] = [(slot, b.config) for slot, b in zip(slots, blocks)]
        return self._plans[key]

    def sample(self, rng: np.random.Generator) -> Subnet:
        """A uniformly random subnet."""
        return self.space.sample(1, rng)[0]

    def min_subnet(self) -> Subnet:
        """The smallest subnet."""
        return self.space.min_subnet()

    def max_subnet(self) -> Subnet:
        """The largest subnet."""
        return self.space.max_subnet()

    def forward(self, x: torch.Tensor, subnet: Subnet | str) -> torch.Tensor:
        for slot, cfg in self.plan(subnet):
            x = slot(x, cfg)
        return x

    # -- quantisation and extraction ----------------------------------------------------------------
    def enable_qat(self) -> "Supernet":
        """Switch to LSQ+ quantisation-aware mode (uint8 activations, int8 weights); idempotent."""
        for module in self.modules():
            if isinstance(module, DynamicBlock):
                module.enable_qat()
        self.qat = True
        return self

    def extract(self, subnet: Subnet | str) -> "StaticSubnet":
        """A static model of ``subnet`` with the inherited weights (and quantisers in QAT mode)."""
        sub = _as_subnet(self.space, subnet)
        blocks = [slot.extract(cfg) for slot, cfg in self.plan(sub)]
        return StaticSubnet(self.space, sub, blocks)


class StaticSubnet(nn.Module):
    """A plain feed-forward subnet (ONNX-exportable), built from the block IR.

    Parameters
    ----------
    space : SearchSpace
    subnet : Subnet
    blocks : list of StaticBlock
    """

    def __init__(self, space: SearchSpace, subnet: Subnet, blocks: list[StaticBlock]) -> None:
        super().__init__()
        self.space = space
        self.subnet = subnet
        self.blocks = nn.ModuleList(blocks)

    @classmethod
    def from_subnet(cls, space: SearchSpace | str, subnet: Subnet | str, n_classes: int = 1000) -> "StaticSubnet":
        """A freshly initialised static subnet (no supernet)."""
        space = as_search_space(space)
        sub = _as_subnet(space, subnet)
        return cls(space, sub, [StaticBlock.from_config(b.config) for b in subnet_blocks(space, sub, n_classes)])

    def set_fake_quant(self, enabled: bool) -> "StaticSubnet":
        """Turn LSQ+ fake quantisation of the inherited quantisers on or off."""
        for module in self.modules():
            if hasattr(module, "fake_quant"):
                module.fake_quant = bool(enabled) and getattr(module, "w_q", None) is not None
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
