"""The settings of a training run: the optimiser and LR schedule, and the loop around them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..runtime.seeding import check_seed


@dataclass
class OptimConfig:
    lr: float = 0.5                  # official SPOS base LR at batch 1024 (scale it with the batch)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5       # applied to weights with ndim > 1 only: no decay on BN or biases
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # official: linear decay to 0 per step
    warmup_steps: int = 0            # linear warm-up from 0 (the official recipe has none)
    label_smoothing: float = 0.1     # official: 0.1

    def __post_init__(self):
        for k in ("lr", "weight_decay", "momentum", "label_smoothing"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TrainConfig:
    """A training stage: the supernet (under the strategy section's method) or a retrain."""

    steps: int = 1000                # optimizer steps (the official supernet: 150,000 at batch 1024)
    batch_size: int = 64             # global batch: per-process batch x number of processes
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500      # steps between checkpoints (official: 10,000)
    keep_checkpoints: int = 2        # step-*.pt files kept besides last.pt
    log_every: int = 10              # steps between metrics.jsonl lines
    seed: int = 0                    # paths, batches and augmentation are functions of (seed, step)
    device: str = "auto"             # auto = cuda if available, else cpu
    amp: bool = True                 # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True       # channels_last memory format, on CPU and CUDA (faster on every packaged space)
    sync_bn: bool = False            # under torchrun on CUDA: BatchNorm statistics over the global batch
    progress: bool = True            # tqdm progress bar
    diverged_at: float = 10.0        # stop when a log window's mean loss exceeds this x log(classes), 10x chance (0: off)
    grad_clip: float = 0.0           # clip the weights' gradient norm to this before each update (0: off; DARTS: 5)

    def __post_init__(self):
        for k in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        check_seed("seed", self.seed)
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")
        if self.diverged_at < 0:
            raise ValueError(f"diverged_at must be >= 0 (0 turns the check off), got {self.diverged_at}")
