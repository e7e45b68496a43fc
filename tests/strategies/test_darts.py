"""DARTS: the second-order gradient against the exact hypergradient, the genotype rule, the
pruned fixed network and its exact cost, and a run of the strategy on the loop."""
import contextlib
import random

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from supernet import LayerChoice, SearchSpace, fix
from supernet.cost import CostModel
from supernet.spaces import create
from supernet.strategies import DARTS, StepContext
from supernet.strategies.darts import derive


def _toy():
    """Two mixed layers of smooth ops, BN-free, in float64: a model whose hypergradient is exact."""
    torch.manual_seed(0)
    ops = lambda: [nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Sequential(nn.Tanh(), nn.Linear(4, 4))]  # noqa: E731
    model = nn.Sequential(LayerChoice(ops(), label="a"), LayerChoice(ops(), label="b"), nn.Linear(4, 3)).double()
    return model


def _ctx(model, lr=0.3, momentum=0.9, wd=0.01):
    opt = torch.optim.SGD([{"params": [p for n, p in model.named_parameters() if n.endswith("weight")], "weight_decay": wd},
                           {"params": [p for n, p in model.named_parameters() if n.endswith("bias")], "weight_decay": 0.0}],
                          lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():  # a momentum buffer as after some steps
        opt.state[p]["momentum_buffer"] = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    return StepContext(net=model, criterion=nn.CrossEntropyLoss(), optimizer=opt, device=torch.device("cpu"),
                       autocast=contextlib.nullcontext)


def test_unrolled_gradient_matches_the_exact_hypergradient_and_differs_from_first_order():
    model = _toy()
    space = SearchSpace(model)
    strategy = DARTS(space, DARTS.Config(unrolled=True, init_scale=1.0), seed=0)
    strategy.setup(torch.device("cpu"))
    strategy.alpha = [nn.Parameter(a.detach().double()) for a in strategy.alpha]
    ctx = _ctx(model)
    gen = torch.Generator().manual_seed(2)
    x, xv = torch.randn(16, 4, generator=gen, dtype=torch.float64), torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y, yv = torch.randint(3, (16,), generator=gen), torch.randint(3, (16,), generator=gen)
    before = [p.detach().clone() for p in model.parameters()]

    fd, _ = strategy.unrolled_grads(model, x, y, xv, yv, ctx)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before)), "the weights must be restored"

    # Exact: d/dα L_val(w - ξ(μ m + ∇w L_train(w, α) + λ w), α), by double backward.
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    alphas = [a.detach().clone().requires_grad_() for a in strategy.alpha]
    space.set_weights({"a": alphas[0].softmax(-1), "b": alphas[1].softmax(-1)})
    ce = nn.CrossEntropyLoss()
    g = torch.autograd.grad(ce(model(x), y), params, create_graph=True)
    group = {id(p): grp for grp in ctx.optimizer.param_groups for p in grp["params"]}
    virtual = {n: p - grp["lr"] * (grp["momentum"] * ctx.optimizer.state[p]["momentum_buffer"] + gp + grp["weight_decay"] * p)
               for n, p, gp in zip(names, params, g) for grp in [group[id(p)]]}
    exact = torch.autograd.grad(ce(functional_call(model, virtual, (xv,)), yv), alphas)
    space.set_weights({"a": alphas[0].softmax(-1), "b": alphas[1].softmax(-1)})
    first = torch.autograd.grad(ce(model(xv), yv), alphas)

    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    err = (flat(fd) - flat(exact)).norm() / flat(exact).norm()
    assert err < 1e-3, f"finite-difference hypergradient is off by {err:.2e} (relative)"
    gap = (flat(first) - flat(exact)).norm() / flat(exact).norm()
    assert gap > 1e-2, f"the second-order term is too small to tell the methods apart ({gap:.2e})"
    assert (flat(fd) - flat(first)).norm() / flat(first).norm() > 1e-2  # a virtual step that never moved w fails here


def _darts(**options):
    torch.manual_seed(0)
    return create("darts", **{"channels": 4, "layers": 3, "input_size": 16, "num_classes": 5, **options})


def test_export_follows_the_genotype_rule_and_caps_skips():
    space = SearchSpace(_darts())
    ops = space.choice("normal/op_2_0").values
    none, skip, sep3, pool = (ops.index(n) for n in ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    probs = {l: [1 / len(space.choice(l).values)] * len(space.choice(l).values)
             for l in space.labels if not l.split("/")[1].startswith("input")}

    def edge(label, best, w, none_w=0.0):
        p = [(1 - w - none_w) / (len(ops) - 2)] * len(ops)
        p[best], p[none] = w, none_w
        probs[label] = p

    # node 3: edge from 0 is mostly 'none' (weak once none is excluded), edges from 1 and 2 are strong
    edge("normal/op_3_0", sep3, 0.05, none_w=0.9)
    edge("normal/op_3_1", skip, 0.6)
    edge("normal/op_3_2", pool, 0.5)
    edge("normal/op_2_0", skip, 0.7)
    edge("normal/op_2_1", skip, 0.65)
    edges = DARTS(space).edges
    arch = derive(space, probs, edges)
    assert arch["normal/input_3"] == [1, 2] and arch["normal/op_3_1"] == skip and arch["normal/op_3_2"] == pool
    assert arch["normal/input_2"] == [0, 1]
    assert all(space.choice(l).values[v] != "none" for l, v in arch.items() if isinstance(v, int))
    kept_skips = lambda a: sum(space.choice(op).values[a[op]] == "skip_connect"  # noqa: E731
                               for l, e in edges.items() if l.startswith("normal/") for k in a[l] for op in [e[k]])
    assert kept_skips(arch) == 3
    capped = derive(space, probs, edges, max_skips=1)
    assert kept_skips(capped) == 1 and capped["normal/op_2_0"] == skip  # the strongest skip stays
    assert space.validate(capped) == capped


def test_fixed_darts_network_builds_and_computes_only_the_kept_edges():
    model = _darts().eval()
    space = SearchSpace(model)
    x = torch.randn(2, 3, 16, 16)
    for seed in range(4):
        arch = space.sample(random.Random(seed))
        space.activate(arch)
        fixed = fix(model, arch).eval()
        torch.testing.assert_close(fixed(x), model(x), rtol=1e-4, atol=1e-5)
        n_edges = sum(len(node.ops) for cell in fixed.cells for node in cell.nodes)
        assert n_edges == 2 * 4 * len(fixed.cells)  # 2 kept inputs per node, 4 nodes per cell


@pytest.mark.parametrize("options", [dict(), dict(layers=4, nodes=3, affine=True)])
def test_cost_model_counts_the_kept_edges_exactly(options):
    model = _darts(**options)
    cost = CostModel(model)
    space = SearchSpace(model)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(6)] + [cost.extreme_arch("flops", big) for big in (False, True)]
    for arch in archs:
        fixed = fix(model, arch).eval()
        with FlopCounterMode(display=False) as counter:
            fixed(torch.zeros(1, 3, 16, 16))
        assert cost.cost(arch) == (counter.get_total_flops() // 2, sum(p.numel() for p in fixed.parameters()))
    r = cost.range()
    assert (r["flops_min"], r["flops_max"]) == (cost.flops(archs[-2]), cost.flops(archs[-1]))
    assert all(r["flops_min"] <= cost.flops(a) <= r["flops_max"] for a in archs)


def test_a_weighted_choice_skips_the_zero_op_exactly():
    from supernet.nn.layers import Zero
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    choice = LayerChoice([Zero(1), conv], label="e")
    x = torch.randn(2, 3, 5, 5)
    w1, w2 = torch.tensor([0.3, 0.7], requires_grad=True), torch.tensor([0.3, 0.7], requires_grad=True)
    choice.weights = w1
    out = choice(x)
    full = w2[0] * Zero(1)(x) + w2[1] * conv(x)  # what the sum would compute without the skip
    assert torch.equal(out, full)
    g1, = torch.autograd.grad(out.square().sum(), w1)
    g2, = torch.autograd.grad(full.square().sum(), w2)
    assert torch.equal(g1, g2) and g1[0] == 0
    choice.weights, choice.active = w1, 0  # a sum of nothing but the zero op still has its shape
    assert choice(x).shape == x.shape and choice(x).abs().sum() == 0


def test_the_first_order_step_freezes_the_weights_without_changing_the_alpha_gradient():
    from supernet.strategies.base import frozen
    model = _darts().train()
    strategy = DARTS(SearchSpace(model), DARTS.Config(init_scale=1.0), seed=0)
    strategy.setup(torch.device("cpu"))
    x, y = torch.randn(4, 3, 16, 16), torch.randint(5, (4,))
    grads = []
    for freeze in (False, True):
        torch.manual_seed(0)
        strategy.mix()
        with frozen(model) if freeze else contextlib.nullcontext():
            grads.append(torch.autograd.grad(nn.functional.cross_entropy(model(x), y), strategy.alpha))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("unrolled", [False, True])
def test_recomputed_choices_give_bitwise_the_same_step(unrolled):
    """Recomputing the mixed choices in backward changes no bit: not α after its Adam step, not the
    weights' gradients, not the BatchNorm statistics (the second run puts them back)."""
    x, y = torch.randn(4, 3, 16, 16), torch.randint(5, (4,))
    xv, yv = torch.randn(4, 3, 16, 16), torch.randint(5, (4,))
    runs = []
    for recompute in (0.0, 1.0):
        model = _darts().train()
        strategy = DARTS(SearchSpace(model), DARTS.Config(unrolled=unrolled, init_scale=1.0, recompute=recompute))
        strategy.setup(torch.device("cpu"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ctx = StepContext(net=model, criterion=nn.functional.cross_entropy, optimizer=opt, device=torch.device("cpu"),
                          autocast=contextlib.nullcontext, held_out=lambda i: (xv, yv))
        loss, _, _ = strategy.train_step(0, x, y, ctx)
        runs.append((loss, strategy.alpha, [p.grad for p in model.parameters()], list(model.buffers()),
                     sum(getattr(m, "recompute", False) for m in model.modules())))
    (loss0, alpha0, grads0, bufs0, n0), (loss1, alpha1, grads1, bufs1, n1) = runs
    assert n0 == 0 and n1 > 0
    assert torch.equal(loss0, loss1)
    assert all(torch.equal(a, b) for a, b in zip(alpha0, alpha1))
    assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
    assert all(torch.equal(a, b) for a, b in zip(bufs0, bufs1))


def test_recompute_marks_the_first_mixed_choices_and_refuses_a_bad_share():
    model = _darts()
    DARTS(SearchSpace(model), DARTS.Config(recompute=0.5))
    marked = [m.recompute for m in model.modules() if isinstance(m, LayerChoice)]
    assert marked == [i < round(0.5 * len(marked)) for i in range(len(marked))]
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="recompute"):
            DARTS.Config(recompute=bad)

