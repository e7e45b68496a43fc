"""The zero-cost proxies against independent computations on tiny networks."""
import math

import pytest
import torch
from torch import nn

from supernet.ranking import naswot, synflow


def test_naswot_is_the_log_determinant_of_the_hamming_kernel_computed_by_loops():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(6, 5)
    codes = []  # every ReLU unit's on/off bit for each input, read by running the layers by hand
    with torch.no_grad():
        h1 = torch.relu(net[0](x))
        h2 = torch.relu(net[2](h1))
    for i in range(len(x)):
        codes.append([int(v > 0) for v in h1[i].tolist()] + [int(v > 0) for v in h2[i].tolist()])
    units = len(codes[0])
    kernel = [[units - sum(a != b for a, b in zip(codes[i], codes[j])) for j in range(len(x))] for i in range(len(x))]
    expected = math.log(abs(float(torch.det(torch.tensor(kernel, dtype=torch.float64)))))
    assert naswot(net, x) == pytest.approx(expected, rel=1e-9)


def test_naswot_leaves_the_network_as_it_was_and_needs_relus():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    naswot(net, torch.randn(4, 1, 6, 6))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="no nn.ReLU"):
        naswot(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), torch.randn(4, 3))


def test_synflow_of_a_two_layer_linear_net_is_twice_the_flow_through_it():
    # R = 1ᵀ|W2||W1|1. For W1[i, j]: |θ ∂R/∂θ| = |W1[i, j]| Σ_k |W2[k, i]|, which sums over i, j to R;
    # the same holds for W2. So SynFlow = 2 R, whatever the weights' signs.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))
    w1, w2 = net[0].weight.detach().double().abs(), net[1].weight.detach().double().abs()
    flow = float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(4, dtype=torch.float64))
    assert synflow(net, (4,)) == pytest.approx(2 * flow, rel=1e-12)
    assert net[0].weight.lt(0).any()  # the network's own weights keep their signs


def test_synflow_does_not_overflow_where_float32_would():
    depth = 60  # 60 layers of 64 units at |w| = 1: the flow is 64^60, beyond float32 (3.4e38)
    net = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(depth)])
    for layer in net:
        nn.init.constant_(layer.weight, -1.0)
    value = synflow(net, (64,))
    assert math.isfinite(value) and value == pytest.approx(depth * 64.0 ** (depth + 1), rel=1e-9)
