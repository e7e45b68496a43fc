"""SPOS on your own search space with your own DataLoaders, using supernet's building blocks.

    python examples/custom_space.py          # ~20 s on 2 CPU cores

A space is any nn.Module with choices in it. Train it with one random path per step, search it
with BN recalibration on held-out data, and fix the winner as a plain network.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from supernet import LayerChoice, SearchSpace, fix
from supernet.search.config import SearchConfig
from supernet.train.config import OptimConfig
from supernet.cost import Constraints, CostModel
from supernet.search import CandidateEvaluator, EvolutionSearch
from supernet.strategies import PathSampler
from supernet.train.optim import build_optimizer, lr_at, set_lr


class TinySpace(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(*[
            LayerChoice({"conv3": nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
                         "conv5": nn.Sequential(nn.Conv2d(16, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
                         "skip": nn.Identity()}, label=f"block_{i}")
            for i in range(4)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def toy_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g) + y.view(-1, 1, 1, 1) * 0.5  # learnable, not trivial
    return TensorDataset(x, y)


def main(steps=300):
    torch.manual_seed(0)
    train, val = toy_data(512, 0), toy_data(128, 1)  # val: held out from training, never the test set
    model = TinySpace()
    space = SearchSpace(model)
    cost = CostModel(model, input_shape=(3, 16, 16))
    print(space, space.describe(), cost.range())

    # 1. Supernet: one uniform path per step, drawn from (seed, step).
    sampler = PathSampler(space, seed=0)
    optim_cfg = OptimConfig(lr=0.1, weight_decay=1e-4, label_smoothing=0.0)
    opt = build_optimizer(model, optim_cfg)
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    step = 0
    while step < steps:
        for x, y in loader:
            if step == steps:
                break
            space.activate(sampler(step), check=False)
            set_lr(opt, lr_at(step, steps, optim_cfg))
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)  # unsampled choices keep grad None: SGD leaves them alone
            loss.backward()
            opt.step()
            step += 1

    # 2. Search: each candidate recalibrates BN on the same training batches, then is scored on val.
    recal = [next(iter(DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(i))))
             for i in range(4)]
    evaluator = CandidateEvaluator(model, recal, list(DataLoader(val, batch_size=128)))
    cfg = SearchConfig(population=10, generations=4, topk=3, mutations=4, crossovers=4, progress=False)
    limit = sum(cost.range()[k] for k in ("flops_min", "flops_max")) / 2
    search = EvolutionSearch(space, evaluator, cfg, cost, Constraints(cost, [f"flops<={limit}"]))
    best = search.run()[0]
    print(f"best {best['arch']}: val top-1 {best['top1']:.3f}, {best['flops']:,} FLOPs "
          f"({len(search.results)} candidates evaluated)")

    # 3. The winner as a plain nn.Module, freshly initialised for retraining (or weights="copy").
    subnet = fix(model, best["arch"], weights="init")
    print(subnet)
    return best


if __name__ == "__main__":
    main()
