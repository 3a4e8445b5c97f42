"""LSQ+ fake quantisation (Bhalgat et al., CVPR-W 2020): learnable scale and offset.

Activations are asymmetric uint8 with a learnable scale ``s`` and offset ``beta``; the offset is
rounded to an integer zero point so that zero (the convolution padding) is exactly representable,
as the integer kernels of onnxruntime require. Weights are symmetric int8 (``[-127, 127]``) with a
learnable per-tensor scale. Gradients follow LSQ: straight-through rounding and a scale gradient
multiplied by ``1 / sqrt(numel * q_max)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACT_QMIN, ACT_QMAX = 0, 255
WEIGHT_QMAX = 127


def _round_pass(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    return (x - x * scale).detach() + x * scale


class LsqActQuantizer(nn.Module):
    """uint8 fake quantiser with learnable scale and offset, initialised from the first batch."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.offset = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        lo = float(torch.clamp(x.min(), max=0.0))
        hi = float(torch.clamp(x.max(), min=lo + 1e-4))
        self.scale.fill_((hi - lo) / (ACT_QMAX - ACT_QMIN))
        self.offset.fill_(lo)
        self.initialized.fill_(1)

    def zero_point(self) -> torch.Tensor:
        """The integer zero point ``clamp(round(-offset / scale), 0, 255)`` (STE through rounding)."""
        return torch.clamp(_round_pass(-self.offset / self.scale), ACT_QMIN, ACT_QMAX)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes in ``[0, 255]`` (as float) of ``x``, no gradient tricks."""
        s = self.scale.detach().abs() + 1e-8
        z = torch.clamp(torch.round(-self.offset.detach() / s), ACT_QMIN, ACT_QMAX)
        return torch.clamp(torch.round(x / s) + z, ACT_QMIN, ACT_QMAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            self._init_from(x)
        g = 1.0 / math.sqrt(max(1, x[0].numel()) * ACT_QMAX)
        s = _grad_scale(self.scale.abs() + 1e-8, g)
        z = torch.clamp(_round_pass(-_grad_scale(self.offset, g) / s), ACT_QMIN, ACT_QMAX)
        q = torch.clamp(_round_pass(x / s) + z, ACT_QMIN, ACT_QMAX)
        return (q - z) * s


class LsqWeightQuantizer(nn.Module):
    """Symmetric int8 per-tensor fake quantiser with a learnable scale (init: max |w| / 127)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        """Set the scale from a weight tensor (the whole shared bank, so every slice fits)."""
        self.scale.fill_(max(float(w.abs().max()), 1e-6) / WEIGHT_QMAX)
        self.initialized.fill_(1)

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """Integer codes in ``[-127, 127]`` (as float)."""
        s = self.scale.detach().abs() + 1e-8
        return torch.clamp(torch.round(w / s), -WEIGHT_QMAX, WEIGHT_QMAX)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            self.init_from(w)
        g = 1.0 / math.sqrt(max(1, w.numel()) * WEIGHT_QMAX)
        s = _grad_scale(self.scale.abs() + 1e-8, g)
        return torch.clamp(_round_pass(w / s), -WEIGHT_QMAX, WEIGHT_QMAX) * s
