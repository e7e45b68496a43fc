"""One rank of the distributed-exactness tests (tests/test_distributed.py), run by torchrun or alone.

The model has no BatchNorm, so two ranks on half batches with averaged gradients compute the same
update as one process on the whole batch, up to the order of float sums. A kind is ``subnet`` (a
fixed network: the loop wraps it in DistributedDataParallel), a registered strategy's name, or a
variant of one (``VARIANTS``).
"""
import sys
from pathlib import Path

import torch
from torch import nn

from supernet import LayerChoice, SearchSpace, fix
from supernet.arch import FewShotSupernet
from supernet.data import DataConfig, build_data
from supernet.quant import mixed_precision
from supernet.runtime import dist
from supernet.strategies import FewShot, build_strategy, check_settings
from supernet.train import fit
from supernet.train.config import OptimConfig, TrainConfig
from tests.strategies.standin import SHORT, standin_cost

VARIANTS = {"darts-unrolled": ("darts", {"unrolled": True}), "proxyless-two": ("proxyless", {"mode": "two"}),
            "spos-mixed-precision": ("spos", {}), "spos-few-shot": ("spos", {}), "fairnas-few-shot": ("fairnas", {})}
# Kinds trained as few-shot supernets split on layer_0 at this step: the step-3 checkpoint is from
# before the split, so a resume from it crosses the split.
FEW_SHOT = {"spos-few-shot": 4, "fairnas-few-shot": 4}
# Kinds whose blocks are also searched in bit width: QAT, with activation steps started from the
# first batch (averaged over the ranks). Not DARTS over bits: its α gradients for 4 against 8 bits
# are near zero, where Adam's normalised step turns float-order noise into visible differences.
MIXED = {"spos-mixed-precision"}
# Larger architecture steps than SHORT's, so that their effect on the weights is well above rounding.
FAST = {"darts": {"arch_lr": 0.05}, "enas": {"ctrl_lr": 0.05}, "proxyless": {"arch_lr": 0.05},
        "fbnet": {"arch_lr": 0.05}}


class NoBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.Sequential(*[LayerChoice([nn.Sequential(nn.Conv2d(8, 8, k, padding=k // 2), nn.ReLU())
                                                   for k in (1, 3, 5)], label=f"layer_{i}") for i in range(3)])
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.layers(torch.relu(self.stem(x))).mean((2, 3)))


def main(out: str, kinds: str, resume: bool) -> None:
    """Each of the comma-separated ``kinds`` in turn, into ``out/<kind>`` (one launch for many:
    process and torchrun start-up is most of a run's time)."""
    dist.init_from_env()
    for kind in kinds.split(","):
        run(Path(out) / kind, kind, resume)
    dist.shutdown()


def run(out: Path, kind: str, resume: bool) -> None:
    data = build_data(DataConfig(name="synthetic", image_size=8, synthetic_train=96, synthetic_classes=4, val_per_class=2))
    torch.manual_seed(0)
    model = NoBN()
    if kind in MIXED:
        model = mixed_precision(model, weight_bits=[4, 8], act_bits=[4, 8])
    if kind in FEW_SHOT:
        model = FewShotSupernet(model, ["layer_0"])
    strategy = None
    if kind == "subnet":
        model = fix(model, {"layer_0": 1, "layer_1": 2, "layer_2": 0})
    else:
        name, variant = VARIANTS.get(kind, (kind, {}))
        settings = {"name": name, **SHORT.get(name, {}), **FAST.get(name, {}), **variant}
        strategy = build_strategy(check_settings(settings), SearchSpace(model), seed=3,
                                  cost=standin_cost(model, (3, 8, 8), overhead_ms=10.0))
        if kind in FEW_SHOT:
            strategy = FewShot(strategy, FEW_SHOT[kind])
    cfg = TrainConfig(steps=6, batch_size=16, checkpoint_every=3, keep_checkpoints=5, log_every=1, progress=False,
                      device="cpu", optim=OptimConfig(lr=0.1, label_smoothing=0.0))
    fit(model, data.train, cfg, out, meta={"test": kind}, run_config={}, strategy=strategy, resume=resume)
    if strategy is not None:  # each rank's own strategy state, to check that the ranks agree
        torch.save(strategy.state_dict(), out / f"strategy-rank{dist.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "resume")
