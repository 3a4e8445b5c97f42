"""Search-space and subnet encodings (SPACEEVO.md section 4), compatible with the published strings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from ._blocks import BlockConfig
from ._hyperspace import SEARCHABLE_STAGES, BlockChoice, Hyperspace, StageSpec, get_hyperspace
from ._ops import conv_out_hw

_SPACE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-(\d+)-(\d+)$")


def _fmt_e(e: float) -> str:
    return "0" if e == 0 else repr(float(e))


@dataclass(frozen=True)
class Subnet:
    """A subnet: depths of the 8 stages, per-block k/w/e, and the input resolution."""

    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    widths: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    resolution: int

    @classmethod
    def parse(cls, text: str) -> "Subnet":
        """Parse ``d..._k..._w..._e..._r...`` (fields ``#``-separated); syntax errors name the field."""
        if not isinstance(text, str):
            raise ValueError(f"subnet must be a string like 'd1#1#2..._k3#..._w16#..._e0#..._r160', got {text!r}")
        parts = text.strip().split("_")
        keys = [p[:1] for p in parts]
        if keys != ["d", "k", "w", "e", "r"]:
            raise ValueError(f"subnet {text!r} must have the fields d, k, w, e, r in that order, separated "
                             f"by '_' (found {keys})")
        fields = {}
        for key, part in zip(keys, parts):
            body = part[1:]
            conv = float if key == "e" else int
            values = []
            for pos, item in enumerate(body.split("#")):
                try:
                    values.append(conv(item))
                except ValueError:
                    raise ValueError(f"{key}[{pos}]={item!r} is not a number in subnet field {key}") from None
            fields[key] = tuple(values)
        if len(fields["r"]) != 1:
            raise ValueError(f"r must hold one resolution, got {len(fields['r'])} values")
        return cls(fields["d"], fields["k"], fields["w"], fields["e"], fields["r"][0])

    def __str__(self) -> str:
        return (
            "d" + "#".join(map(str, self.depths))
            + "_k" + "#".join(map(str, self.kernel_sizes))
            + "_w" + "#".join(map(str, self.widths))
            + "_e" + "#".join(_fmt_e(e) for e in self.expand_ratios)
            + f"_r{self.resolution}"
        )


class StageBlock(NamedTuple):
    """A concrete block of a subnet, with the stage it belongs to."""

    stage: str
    config: BlockConfig


@dataclass(frozen=True)
class SearchSpace:
    """A search space: per searchable stage, one block type digit and one width-window digit."""

    hyperspace: Hyperspace
    block_types: tuple[int, ...]
    windows: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> "SearchSpace":
        """Parse ``<hyperspace>-<6 block digits>-<6 window digits>`` with errors naming the digit."""
        m = _SPACE_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"search space {text!r} must look like 'onnxw-151122-023231' "
                             "(<hyperspace>-<6 block digits>-<6 window digits>)")
        hyper = get_hyperspace(m.group(1))
        blocks, windows = m.group(2), m.group(3)
        n = len(hyper.stages)
        for label, digits in (("block", blocks), ("window", windows)):
            if len(digits) != n:
                raise ValueError(f"{label} digits {digits!r} must have {n} digits (one per stage1..stage6), "
                                 f"got {len(digits)}")
        return cls(hyper, tuple(int(c) for c in blocks), tuple(int(c) for c in windows))

    def __post_init__(self) -> None:
        hyper = self.hyperspace
        for pos, (b, w) in enumerate(zip(self.block_types, self.windows)):
            stage = hyper.stages[pos]
            if not 0 <= b < len(hyper.block_choices):
                names = ", ".join(f"{i}={c.type}" for i, c in enumerate(hyper.block_choices))
                raise ValueError(f"block digit {pos} ({stage.name})={b} is not in 0..{len(hyper.block_choices) - 1} "
                                 f"({hyper.name} block types: {names})")
            if not 0 <= w < stage.n_windows:
                raise ValueError(f"window digit {pos} ({stage.name})={w} is not in 0..{stage.n_windows - 1} "
                                 f"({stage.name} has {stage.n_windows} windows of {stage.window_size} widths "
                                 f"over {list(stage.widths)})")

    def __str__(self) -> str:
        return (f"{self.hyperspace.name}-" + "".join(map(str, self.block_types)) + "-"
                + "".join(map(str, self.windows)))

    # -- structure -----------------------------------------------------------------------------
    def stage_options(self) -> list[tuple[StageSpec, BlockChoice, tuple[int, ...]]]:
        """Per stage (first_conv, stage0, stage1..6): its spec, block choice and allowed widths."""
        h = self.hyperspace
        out = [(h.first_conv, h.first_conv_block, h.first_conv.widths), (h.stage0, h.stage0_block, h.stage0.widths)]
        for stage, b, w in zip(h.stages, self.block_types, self.windows):
            out.append((stage, h.block_choices[b], stage.window(w)))
        return out

    @property
    def size(self) -> int:
        """Number of distinct subnets of this space (all depths, per-block choices, resolutions)."""
        total = len(self.hyperspace.resolutions)
        for stage, choice, widths in self.stage_options():
            per_block = len(choice.kernel_sizes) * len(widths) * len(choice.expand_ratios)
            total *= sum(per_block ** d for d in stage.depths)
        return total

    # -- validation ----------------------------------------------------------------------------
    def validate(self, subnet: Subnet) -> Subnet:
        """Check ``subnet`` against this space; errors name the field, position, value and choices."""
        h = self.hyperspace
        options = self.stage_options()
        if len(subnet.depths) != len(options):
            raise ValueError(f"d has {len(subnet.depths)} entries; {h.name} needs {len(options)} "
                             f"(first_conv, stage0, stage1..stage6)")
        for pos, (d, (stage, _c, _w)) in enumerate(zip(subnet.depths, options)):
            if d not in stage.depths:
                raise ValueError(f"d[{pos}]={d} is not in {stage.name} depths {list(stage.depths)}")
        n_blocks = sum(subnet.depths)
        for key, values in (("k", subnet.kernel_sizes), ("w", subnet.widths), ("e", subnet.expand_ratios)):
            if len(values) != n_blocks:
                raise ValueError(f"{key} has {len(values)} entries but the depths sum to {n_blocks} blocks")
        if subnet.resolution not in h.resolutions:
            raise ValueError(f"r={subnet.resolution} is not in {h.name} resolutions {list(h.resolutions)}")
        pos = 0
        for (stage, choice, widths), d in zip(options, subnet.depths):
            win = "" if stage.window_size is None else f" window {self.windows[h.stages.index(stage)]}"
            for _ in range(d):
                k, w, e = subnet.kernel_sizes[pos], subnet.widths[pos], subnet.expand_ratios[pos]
                if k not in choice.kernel_sizes:
                    raise ValueError(f"k[{pos}]={k} is not in {stage.name} {choice.type} kernel sizes "
                                     f"{list(choice.kernel_sizes)}")
                if w not in widths:
                    raise ValueError(f"w[{pos}]={w} is not in {stage.name}{win} widths {list(widths)}")
                if e not in choice.expand_ratios:
                    allowed = [float(x) for x in choice.expand_ratios]
                    raise ValueError(f"e[{pos}]={_fmt_e(e)} is not in {stage.name} {choice.type} expand ratios "
                                     f"{allowed}")
                pos += 1
        return subnet

    def parse_subnet(self, text: str) -> Subnet:
        """Parse and validate a subnet string against this space."""
        return self.validate(Subnet.parse(text))

    # -- concrete blocks -----------------------------------------------------------------------
    def blocks(self, subnet: Subnet, head: bool = True) -> list[StageBlock]:
        """Concrete blocks of ``subnet`` in order, stride on each stage's first block; head included."""
        self.validate(subnet)
        h = self.hyperspace
        out: list[StageBlock] = []
        hw, cin, pos = subnet.resolution, h.in_channels, 0
        for (stage, choice, _w), d in zip(self.stage_options(), subnet.depths):
            for i in range(d):
                k, w = subnet.kernel_sizes[pos], subnet.widths[pos]
                stride = stage.stride if i == 0 else 1
                cfg = BlockConfig(choice.type, hw, cin, w, k, subnet.expand_ratios[pos], stride, choice.act)
                out.append(StageBlock(stage.name, cfg))
                hw, cin, pos = conv_out_hw(hw, k, stride), w, pos + 1
        if head:
            out.append(StageBlock("final_expand", BlockConfig("FinalExpandBlock", hw, cin, h.final_expand_width,
                                                              1, 0, 1, h.head_act)))
            out.append(StageBlock("feature_mix", BlockConfig("FeatureMixBlock", hw, h.final_expand_width,
                                                             h.feature_mix_width, 1, 0, 1, h.head_act)))
            out.append(StageBlock("logits", BlockConfig("LogitsBlock", 1, h.feature_mix_width, h.n_classes,
                                                        1, 0, 1, "relu")))
        return out

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int = 1, seed: int | np.random.Generator | None = None) -> list[Subnet]:
        """``n`` subnets drawn uniformly per choice (depth, then k/w/e per block, resolution)."""
        if n < 0:
            raise ValueError(f"n={n} must be >= 0")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return [self._sample_one(rng) for _ in range(n)]

    def _sample_one(self, rng: np.random.Generator) -> Subnet:
        depths, ks, ws, es = [], [], [], []
        for stage, choice, widths in self.stage_options():
            d = int(rng.choice(stage.depths))
            depths.append(d)
            for _ in range(d):
                ks.append(int(rng.choice(choice.kernel_sizes)))
                ws.append(int(rng.choice(widths)))
                es.append(float(rng.choice(choice.expand_ratios)))
        r = int(rng.choice(self.hyperspace.resolutions))
        return Subnet(tuple(depths), tuple(ks), tuple(ws), tuple(es), r)

    def _extreme(self, pick) -> Subnet:
        depths, ks, ws, es = [], [], [], []
        for stage, choice, widths in self.stage_options():
            d = pick(stage.depths)
            depths.append(d)
            ks += [pick(choice.kernel_sizes)] * d
            ws += [pick(widths)] * d
            es += [float(pick(choice.expand_ratios))] * d
        return Subnet(tuple(depths), tuple(ks), tuple(ws), tuple(es), pick(self.hyperspace.resolutions))

    def min_subnet(self) -> Subnet:
        """The smallest subnet: minimum of every choice."""
        return self._extreme(min)

    def max_subnet(self) -> Subnet:
        """The largest subnet: maximum of every choice."""
        return self._extreme(max)

    # -- summaries -----------------------------------------------------------------------------
    def subnet_info(self, subnet: Subnet) -> dict:
        """Resolution, MACs (M), params (M) and the concrete blocks of a subnet, JSON-ready."""
        blocks = self.blocks(subnet)
        return {
            "subnet": str(subnet),
            "space": str(self),
            "resolution": subnet.resolution,
            "flops_m": round(sum(b.config.macs for b in blocks) / 1e6, 4),
            "params_m": round(sum(b.config.params for b in blocks) / 1e6, 4),
            "blocks": [{"stage": b.stage, **b.config.as_dict()} for b in blocks],
        }

    def describe(self) -> dict:
        """Stages, block choices, windows and the number of subnets, JSON-ready."""
        stages = []
        for stage, choice, widths in self.stage_options():
            stages.append({
                "stage": stage.name, "block": choice.type, "act": choice.act,
                "kernel_sizes": list(choice.kernel_sizes), "expand_ratios": [float(e) for e in choice.expand_ratios],
                "widths": list(widths), "depths": list(stage.depths), "stride": stage.stride,
            })
        return {"space": str(self), "hyperspace": self.hyperspace.name, "stages": stages,
                "resolutions": list(self.hyperspace.resolutions), "n_subnets": self.size,
                "log10_n_subnets": round(math.log10(self.size), 2)}


def as_search_space(space: SearchSpace | str) -> SearchSpace:
    """``space`` itself if it is a ``SearchSpace``, else its parsed string form.

    Parameters
    ----------
    space : SearchSpace or str
        A search space or its encoding, e.g. ``'onnxw-151122-023231'``.

    Returns
    -------
    SearchSpace

    Raises
    ------
    ValueError
        The string is not a valid search-space encoding.
    """
    return space if isinstance(space, SearchSpace) else SearchSpace.parse(space)


def subnets_macs(space: SearchSpace, subnets: Sequence[Subnet]) -> list[int]:
    """MACs of each subnet (head included).

    Parameters
    ----------
    space : SearchSpace
    subnets : sequence of Subnet

    Returns
    -------
    list of int
    """
    return [sum(b.config.macs for b in space.blocks(s)) for s in subnets]
