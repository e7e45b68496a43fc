"""ProxylessNAS: the binary-gate gradients against running every candidate, the two-path α update
against the formula (and its rescaling), the latency term's gradient, and a tight reference
latency against a loose one."""
import contextlib

import torch
from torch import nn

from supernet import LayerChoice, SearchSpace
from supernet.strategies import Proxyless, StepContext

from ..conftest import tiny_model
from .standin import standin_cost


def _toy():
    torch.manual_seed(0)
    ops = lambda: [nn.Linear(6, 6), nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 6)),  # noqa: E731
                   nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 6))]
    return nn.Sequential(LayerChoice(ops(), label="a"), nn.Tanh(), LayerChoice(ops(), label="b"), nn.Linear(6, 3))


def _ctx(model, batches):
    return StepContext(net=model, criterion=nn.CrossEntropyLoss(), optimizer=None, device=torch.device("cpu"),
                       autocast=contextlib.nullcontext, held_out=batches)


def _batches(d, classes, n=16, size=None):
    def held_out(i):
        gen = torch.Generator().manual_seed(100 + i)
        shape = (n, d) if size is None else (n, d, size, size)
        return torch.randn(shape, generator=gen), torch.randint(classes, (n,), generator=gen)
    return held_out


def _strategy(model, cost=None, **config):
    s = Proxyless(SearchSpace(model), Proxyless.Config(**{"latency_loss": None, "init_scale": 1.0, **config}), seed=0,
                  cost=cost)
    s.setup(torch.device("cpu"))
    return s


def _explicit_gate_grads(model, space, gates, batch, loss_fn):
    """∂L/∂g with every candidate run in the forward (a weighted sum under one-hot gates)."""
    g = {l: v.detach().clone().requires_grad_() for l, v in gates.items()}
    space.set_weights(g)
    x, y = batch
    grads = torch.autograd.grad(loss_fn(model(x), y), list(g.values()))
    return dict(zip(g, grads))


def test_full_v2_gate_gradients_equal_running_every_candidate():
    model = tiny_model("proxyless", input_size=16).train()
    space = SearchSpace(model)
    strategy = _strategy(model)
    ctx = _ctx(model, _batches(3, 5, n=4, size=16))
    for step in (0, 1):
        _, active = strategy.draw(step)
        strategy.arch_grads(step, ctx)
        gates = {l: torch.zeros(space.n_options(l)).index_fill_(0, torch.tensor(active[l]), 1.0) for l in space.labels}
        explicit = _explicit_gate_grads(model, space, gates, ctx.held_out(step), nn.CrossEntropyLoss())
        checked = [l for l in space.labels if space.choice(l).values[active[l][0]] != "zero"]
        assert checked
        for label in checked:
            torch.testing.assert_close(strategy.gate_grads[label], explicit[label], rtol=1e-4, atol=1e-6)
            assert (strategy.gate_grads[label] != 0).sum() >= space.n_options(label) - 1  # every op but 'zero'


def test_two_mode_alpha_update_is_the_formula_and_keeps_the_unsampled_probabilities():
    model = _toy()
    space = SearchSpace(model)
    strategy = _strategy(model, mode="two", arch_lr=0.1)
    ctx = _ctx(model, _batches(6, 3))
    step = 4
    alpha0 = [a.detach().clone() for a in strategy.alpha]
    involved, active = strategy.draw(step)
    assert all(len(involved[l]) == 2 and active[l][0] in involved[l] for l in space.labels)
    gates = {l: torch.zeros(3).index_fill_(0, torch.tensor(active[l]), 1.0) for l in space.labels}
    explicit = _explicit_gate_grads(model, space, gates, ctx.held_out(step), nn.CrossEntropyLoss())
    strategy.arch_step(step, ctx)
    for label, a0, a1 in zip(space.labels, alpha0, strategy.alpha):
        pair = involved[label]
        q = a0[pair].softmax(-1)
        G = explicit[label][pair]
        d = q * (G - (G * q).sum())  # Σ_j G_j q_j (δ_ij − q_i)
        expected = a0.clone()
        expected[pair] -= 0.1 * d / (d.abs() + 1e-8)  # Adam's first step with β1 = 0: m̂ = d, v̂ = d²
        expected[pair] -= expected[pair].logsumexp(-1) - a0[pair].logsumexp(-1)
        torch.testing.assert_close(a1.detach(), expected, rtol=0, atol=1e-6)
        other = [k for k in range(3) if k not in pair]
        torch.testing.assert_close(a1.detach().softmax(-1)[other], a0.softmax(-1)[other], rtol=0, atol=1e-7)
        assert not torch.allclose(a1.detach()[pair], a0[pair])


def test_the_latency_gradient_reaches_alpha():
    model = tiny_model("proxyless", input_size=16).train()
    cost = standin_cost(model, scale=1e-3)  # flops / 1e3 as ms: the tiny space's blocks differ by tens of ms
    table = cost.latency_table
    ctx = _ctx(model, _batches(3, 5, n=4, size=16))
    plain = _strategy(model)
    linear = _strategy(model, cost=cost, latency_loss="add#linear", latency_lambda=0.5, ref_latency=40.0)
    log = _strategy(model, cost=cost, latency_loss="mul#log", ref_latency=40.0)
    step = 2
    without = plain.arch_grads(step, ctx)[0]
    with_linear = linear.arch_grads(step, ctx)[0]
    with_log = log.arch_grads(step, ctx)[0]
    labels = plain.labels
    entries = {tuple(ls): e for ls, e, _ in table.groups}
    for label, a, g0, g1, g2 in zip(labels, plain.alpha, without, with_linear, with_log):
        p = a.detach().softmax(-1)
        ms = torch.tensor([entries[(label,)][(k,)] for k in range(len(p))])
        # λ/ref · ∂E/∂α_i, with ∂E/∂α_i = p_i (ms_i − Σ_j p_j ms_j)
        torch.testing.assert_close(g1 - g0, 0.5 / 40.0 * p * (ms - (p * ms).sum()), rtol=1e-4, atol=1e-7)
        assert (g2 - 0.2 * g0).abs().max() > 1e-6  # mul#log: more than a rescaled cross-entropy gradient


def test_a_tight_reference_latency_exports_a_faster_architecture_than_a_loose_one():
    model = _toy()
    cost = standin_cost(model, input_shape=(6,), scale=1e-2)
    table = cost.latency_table
    ctx = _ctx(model, _batches(6, 3))
    found = {}
    for name, ref in (("tight", 0.5), ("loose", 500.0)):
        s = _strategy(model, cost=cost, latency_loss="add#linear", latency_lambda=1.0, ref_latency=ref,
                      init_scale=1e-3, arch_lr=0.05)
        for step in range(40):
            s.arch_step(step, ctx)
        found[name] = table.predict(s.final_arch())
    fastest = min(table.predict(a) for a in SearchSpace(model))
    assert found["tight"] == fastest < found["loose"], found
