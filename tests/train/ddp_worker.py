"""One rank of the distributed-exactness tests (tests/test_distributed.py), run by torchrun or alone.

The model has no BatchNorm, so two ranks on half batches with averaged gradients compute the same
update as one process on the whole batch, up to the order of float sums.
"""
import sys
from pathlib import Path

import torch
from torch import nn

from supernet import LayerChoice, SearchSpace, fix
from supernet.train.config import OptimConfig, TrainConfig
from supernet.data import DataConfig, build_data
from supernet.strategies import DARTS, ENAS, SPOS, FBNet, Proxyless
from supernet.runtime import dist
from supernet.train import fit


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
    if kind == "subnet":  # a fixed network: the loop wraps it in DistributedDataParallel
        model = fix(model, {"layer_0": 1, "layer_1": 2, "layer_2": 0})
    strategy = SPOS(SearchSpace(model), seed=3) if kind == "supernet" else None
    if kind.startswith("darts"):  # every op of every choice; α averaged by hand, the weights by DDP
        strategy = DARTS(SearchSpace(model), DARTS.Config(unrolled=kind == "darts-unrolled", arch_lr=0.05), seed=3)
    if kind.startswith("proxyless"):  # α steps at steps 1, 3, 5 (held-out quarter), one path from p otherwise
        mode = kind.split("-")[1] if "-" in kind else "full_v2"
        strategy = Proxyless(SearchSpace(model), Proxyless.Config(mode=mode, latency_loss=None, warmup_steps=1,
                                                                  arch_every=2, arch_lr=0.05, held_out=0.25), seed=3)
    if kind == "fbnet":  # a θ step and a Gumbel-mixed weight step at every step after the first
        strategy = FBNet(SearchSpace(model), FBNet.Config(latency_loss=None, warmup_steps=1, arch_lr=0.05,
                                                          held_out=0.25, anneal_every=2), seed=3)
    paths = []
    if kind == "enas":  # controller phases at steps 2 and 4; each rank records the path of every step
        strategy = ENAS(SearchSpace(model), ENAS.Config(train_steps=2, ctrl_steps=1, ctrl_aggregate=2, ctrl_lr=0.05,
                                                        export_samples=2, held_out=0.25), seed=3)
        step = strategy.train_step

        def recorded(*args):
            out = step(*args)
            paths.append(strategy.space.current())
            return out
        strategy.train_step = recorded
    cfg = TrainConfig(steps=6, batch_size=16, checkpoint_every=3, keep_checkpoints=5, log_every=1, progress=False,
                      device="cpu", optim=OptimConfig(lr=0.1, label_smoothing=0.0))
    fit(model, data.train, cfg, out, meta={"test": kind}, run_config={}, strategy=strategy, resume=resume)
    if kind.startswith(("darts", "proxyless", "fbnet")):  # each rank's α (θ), to check they are identical
        params = strategy.theta if kind == "fbnet" else strategy.alpha
        torch.save([a.detach() for a in params], out / f"alpha-rank{dist.rank()}.pt")
    if kind == "enas":  # each rank's controller and paths
        torch.save({"controller": list(strategy.controller.state_dict().values()), "paths": paths,
                    "baseline": strategy.baseline}, out / f"alpha-rank{dist.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "resume")
