"""Hyperspaces (macro architectures) of SpaceEvo: ``onnxw`` (VNNI CPU) and ``mobilew`` (Pixel 4).

Facts from SPACEEVO.md section 2; the registry is the test matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from spaceevo.registry import Registry

SEARCHABLE_STAGES: tuple[str, ...] = tuple(f"stage{i}" for i in range(1, 7))


@dataclass(frozen=True)
class BlockChoice:
    """A candidate block type of a searchable stage, with its kernel and expand-ratio lists."""

    type: str
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    act: str


@dataclass(frozen=True)
class StageSpec:
    """A stage: width list, window size (searchable stages), depth choices and stride."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    stride: int
    window_size: int | None = None

    @property
    def n_windows(self) -> int:
        """Number of width windows (1 for a fixed stage)."""
        if self.window_size is None:
            return 1
        return len(self.widths) - self.window_size + 1

    def window(self, index: int) -> tuple[int, ...]:
        """Widths of window ``index`` (the whole list for a fixed stage)."""
        if self.window_size is None:
            return self.widths
        return self.widths[index:index + self.window_size]


@dataclass(frozen=True)
class Hyperspace:
    """A macro architecture: fixed stages, six searchable stages and the candidate block types."""

    name: str
    device: str
    in_channels: int
    resolutions: tuple[int, ...]
    lut_resolutions: tuple[int, ...]
    first_conv: StageSpec
    stage0: StageSpec
    stages: tuple[StageSpec, ...]
    block_choices: tuple[BlockChoice, ...]
    first_conv_block: BlockChoice
    stage0_block: BlockChoice
    head_act: str
    final_expand_width: int = 1280
    feature_mix_width: int = 1920
    n_classes: int = 1000

    @property
    def all_stages(self) -> tuple[StageSpec, ...]:
        """first_conv, stage0 and stage1..6, in the order of the subnet encoding's depth field."""
        return (self.first_conv, self.stage0, *self.stages)

    @property
    def block_types(self) -> tuple[str, ...]:
        """Every block type a subnet of this hyperspace can contain (fixed stages and head included), sorted."""
        types = {self.first_conv_block.type, self.stage0_block.type, *(c.type for c in self.block_choices),
                 "FinalExpandBlock", "FeatureMixBlock", "LogitsBlock"}
        return tuple(sorted(types))

    @property
    def fixed_block_types(self) -> tuple[str, ...]:
        """The block types every subnet contains: first conv, stage0 and the head, sorted."""
        return tuple(sorted({self.first_conv_block.type, self.stage0_block.type, "FinalExpandBlock",
                             "FeatureMixBlock", "LogitsBlock"}))

    @property
    def size(self) -> int:
        """Number of distinct search spaces: (block types)^6 times the product of window counts."""
        return len(self.block_choices) ** len(self.stages) * math.prod(s.n_windows for s in self.stages)

    def stage(self, name: str) -> StageSpec:
        """A stage by name (``first_conv``, ``stage0`` ... ``stage6``)."""
        for spec in self.all_stages:
            if spec.name == name:
                return spec
        names = [s.name for s in self.all_stages]
        raise ValueError(f"unknown stage {name!r}; valid stages: {names}")

    def total_stride_before(self, stage_name: str) -> int:
        """Product of strides of all stages before ``stage_name`` (the LUT's H = resolution / this)."""
        total = 1
        for spec in self.all_stages:
            if spec.name == stage_name:
                return total
            total *= spec.stride
        raise ValueError(f"unknown stage {stage_name!r}")


_HYPERSPACES: Registry[Callable[[], Hyperspace]] = Registry("hyperspace")


def register_hyperspace(fn: Callable[[], Hyperspace]) -> Callable[[], Hyperspace]:
    """Decorator: register a hyperspace factory under the name of the hyperspace it returns.

    Parameters
    ----------
    fn : callable
        ``() -> Hyperspace``.

    Returns
    -------
    callable
        ``fn`` unchanged.
    """
    return _HYPERSPACES.register(fn().name, fn)


def list_hyperspaces(filter: str | Sequence[str] | None = None) -> list[str]:
    """Names of the registered hyperspaces, sorted.

    Parameters
    ----------
    filter : str or sequence of str, optional
        Shell-style patterns; only matching names are listed.

    Returns
    -------
    list of str
    """
    return _HYPERSPACES.names(filter)


def get_hyperspace(name: str) -> Hyperspace:
    """The hyperspace called ``name`` (a fresh instance from its factory).

    Parameters
    ----------
    name : str

    Returns
    -------
    Hyperspace

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid hyperspaces.
    """
    return _HYPERSPACES.get(name)()


def _r(start: int, stop: int, step: int) -> tuple[int, ...]:
    return tuple(range(start, stop + 1, step))


@register_hyperspace
def _onnxw() -> Hyperspace:
    return Hyperspace(
        name="onnxw",
        device="Intel CPU with AVX-512 VNNI, onnxruntime",
        in_channels=3,
        resolutions=_r(160, 224, 16),
        lut_resolutions=(160, 192, 224),
        first_conv=StageSpec("first_conv", (16, 32), (1,), 2),
        stage0=StageSpec("stage0", (16, 32), (1, 2), 1),
        stages=(
            StageSpec("stage1", _r(32, 64, 16), _r(2, 4, 1), 2, 2),
            StageSpec("stage2", _r(32, 96, 16), _r(2, 4, 1), 2, 2),
            StageSpec("stage3", _r(64, 144, 16), _r(2, 6, 1), 2, 3),
            StageSpec("stage4", _r(112, 192, 16), _r(2, 6, 1), 1, 3),
            StageSpec("stage5", _r(192, 304, 16), _r(2, 6, 1), 2, 5),
            StageSpec("stage6", _r(304, 448, 16), (1, 2), 1, 7),
        ),
        block_choices=(
            BlockChoice("MobileNetV1DualBlock", (3, 5), (0.0,), "relu"),
            BlockChoice("MobileNetV2ResBlock", (3, 5), (4.0, 6.0, 8.0), "relu6"),
            BlockChoice("MobileNetV3ResBlock", (3, 5), (4.0, 6.0, 8.0), "hswish"),
            BlockChoice("ResNetBlock", (3, 5, 7), (0.5, 1.0, 1.5), "relu"),
            BlockChoice("ResNetSEBlock", (3, 5, 7), (0.5, 1.0, 1.5), "relu"),
            BlockChoice("FusedMBConvResBlock", (3, 5, 7), (1.0, 2.0, 3.0, 4.0), "swish"),
        ),
        first_conv_block=BlockChoice("FirstConvBlock", (3,), (0.0,), "relu"),
        stage0_block=BlockChoice("ResNetBlock", (3,), (0.5,), "relu"),
        head_act="hswish",
    )


@register_hyperspace
def _mobilew() -> Hyperspace:
    return Hyperspace(
        name="mobilew",
        device="Google Pixel 4 CPU, TFLite",
        in_channels=3,
        resolutions=_r(160, 224, 16),
        lut_resolutions=(160, 192, 224),
        first_conv=StageSpec("first_conv", _r(16, 32, 8), (1,), 2),
        stage0=StageSpec("stage0", _r(16, 32, 8), (1, 2), 1),
        stages=(
            StageSpec("stage1", _r(24, 40, 8), _r(2, 4, 1), 2, 2),
            StageSpec("stage2", _r(24, 72, 8), _r(2, 4, 1), 2, 2),
            StageSpec("stage3", _r(56, 112, 8), _r(2, 6, 1), 2, 3),
            StageSpec("stage4", _r(112, 176, 8), _r(2, 8, 1), 1, 3),
            StageSpec("stage5", (192, 200, 208, 216, 224, 240, 256, 272, 288), _r(2, 8, 1), 2, 5),
            StageSpec("stage6", _r(216, 360, 16), (1, 2), 1, 7),
        ),
        block_choices=(
            BlockChoice("MobileNetV1DualBlock", (3, 5, 7), (0.0,), "relu"),
            BlockChoice("MobileNetV2ResBlock", (3, 5, 7), (3.0, 6.0, 8.0), "relu6"),
            BlockChoice("MobileNetV3ResBlock", (3, 5, 7), (3.0, 6.0, 8.0), "swish"),
            BlockChoice("ResNetBlock", (3, 5), (0.5, 1.0, 1.5), "relu"),
            BlockChoice("FusedMBConvSEResBlock", (3, 5, 7), (1.0, 2.0, 3.0, 4.0), "swish"),
            BlockChoice("MobileNetV3K3ResBlock", (3, 5, 7), (3.0, 6.0, 8.0), "swish"),
            BlockChoice("MobileNetV2K3ResBlock", (3, 5, 7), (3.0, 6.0, 8.0), "relu6"),
        ),
        first_conv_block=BlockChoice("FirstConvBlock", (3,), (0.0,), "relu"),
        stage0_block=BlockChoice("MobileNetV2Block", (3,), (1.0,), "relu"),
        head_act="swish",
    )
