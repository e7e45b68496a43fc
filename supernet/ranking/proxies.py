"""Zero-cost proxies: scores of an untrained network that claim to predict its trained accuracy.

Each takes a freshly initialised network and leaves it as it was (it works on a copy). They are
the baselines ``supernet rank`` holds a supernet's ranking against: a supernet that costs hours
of training should rank better than a score that costs one forward.

- **NASWOT** (Mellor, Turner, Storkey, Crowley, "Neural Architecture Search without Training",
  ICML 2021, https://arxiv.org/abs/2006.04647): the binary activation pattern c_i of every ReLU
  unit for each image i of one mini-batch; K_H[i, j] = N_A − d_H(c_i, c_j), the number of units
  on which images i and j agree; the score is log |det K_H|.
- **SynFlow** (Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS 2020, https://arxiv.org/abs/2006.05467; as a NAS
  proxy: Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021): every
  parameter replaced by its absolute value, R = 1ᵀ f(1) for an all-ones input, and the score is
  Σ |θ ⊙ ∂R/∂θ| over the conv and linear weights, in float64 so that deep nets do not overflow.
  BatchNorm runs in eval mode with fresh statistics (mean 0, variance 1), as the proxy paper runs
  its networks without BN.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6)  # units with an on/off pattern (ReLU6 is on where its output is > 0)


@torch.no_grad()
def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log |det K_H| of ``model``'s ReLU patterns on the batch ``x`` (N images).

    The network runs in train mode (batch statistics in its BatchNorms), as the paper's code
    scores an untrained network. ``-inf`` when two images share a pattern (K_H is singular).

    Raises:
        ValueError: the network has no ``nn.ReLU`` / ``nn.ReLU6`` module to read patterns from.
    """
    net = copy.deepcopy(model).train()
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module, args, out):
        c = (out.detach().reshape(n, -1) > 0).double()  # (N, units): the binary code of each image
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)       # units where i and j agree = N_A - d_H(c_i, c_j)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, ACTIVATIONS)]
    if not handles:
        raise ValueError(f"NASWOT reads ReLU activation patterns, and {type(model).__name__} has no nn.ReLU or "
                         f"nn.ReLU6 module")
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Σ |θ ⊙ ∂R/∂θ| over the conv and linear weights, R = Σ f(1) with |θ| everywhere, in float64.

    Args:
        input_shape: one input without the batch dimension, e.g. (1, 8, 8).
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.reset_running_stats()
    net.zero_grad(set_to_none=True)
    net(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    total = 0.0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    return total
