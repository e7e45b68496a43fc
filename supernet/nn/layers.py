"""Plain layers that the spaces share: the zero op and drop-path."""
from __future__ import annotations

import torch
from torch import nn


class Zero(nn.Module):
    """An op whose output is all zeros (DARTS' ``none``, ProxylessNAS' ``zero``), subsampled at
    ``stride``. A weighted ``LayerChoice`` skips it: it adds nothing to a sum, nor to a gradient."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]).mul(0.0)


class DropPath(nn.Module):
    """Zeroes a whole op output per sample with probability ``p`` in training, scaling the rest by
    1/(1-p) (DARTS' drop-path). The retrain step sets ``p`` and ``generator`` on every DropPath
    each step (``retrain.drop_path``, ramped linearly over the steps; a generator seeded by (seed,
    step, rank), so masks differ across ranks and a resumed run draws the same ones); with no
    generator the torch RNG draws the masks."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype).bernoulli_(keep, generator=self.generator)
        return x / keep * mask
