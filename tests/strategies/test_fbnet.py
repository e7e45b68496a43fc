"""FBNet's θ gradient against a hand-written computation with the same Gumbel sample, its
temperature schedule, and a killed-and-resumed run of both hardware-aware strategies."""
import contextlib
import math

import pytest
import torch
from torch import nn

from supernet import SearchSpace
from supernet.train.config import OptimConfig, TrainConfig
from supernet.data import DataConfig, build_data
from supernet.runtime.seeding import mix_seed
from supernet.train.metrics import read_metrics
from supernet.strategies import FBNet, StepContext, build_strategy, check_settings

from ..conftest import assert_resume_is_exact, tiny_model
from .standin import standin_cost
from .test_proxyless import _batches, _toy


def test_theta_gradient_uses_one_gumbel_sample_for_output_and_latency():
    model = _toy()
    cost = standin_cost(model, input_shape=(6,), scale=1e-2, overhead_ms=0.3)
    table = cost.latency_table
    s = FBNet(SearchSpace(model), FBNet.Config(warmup_steps=0), seed=5, cost=cost)
    s.setup(torch.device("cpu"))
    with torch.no_grad():
        for t in s.theta:
            t.normal_()
    held = _batches(6, 3)
    ctx = StepContext(net=model, criterion=nn.CrossEntropyLoss(), optimizer=None, device=torch.device("cpu"),
                      autocast=contextlib.nullcontext, held_out=held)
    step = 7
    grads = s.arch_grads(step, ctx)

    # By hand: the sample m = softmax((θ + g)/τ), the mixed forward Σ m_i op_i(x), LAT(m) = Σ m_i LAT_i.
    theta = [t.detach().clone().requires_grad_() for t in s.theta]
    gen = torch.Generator().manual_seed(mix_seed(5, step, 2))
    m = []
    for t in theta:
        u = torch.rand(3, generator=gen, dtype=torch.float64)
        m.append(((t - (-u.log()).log().float()) / 5.0).softmax(-1))
    x, y = held(step)
    a, b = model[0], model[2]
    h = torch.tanh(sum(m[0][i] * a[i](x) for i in range(3)))
    out = model[3](sum(m[1][i] * b[i](h) for i in range(3)))
    entries = {tuple(ls): e for ls, e, _ in table.groups}
    lat_ms = 0.3 + entries[()][()] + sum(m[j][i] * entries[(l,)][(i,)] for j, l in enumerate("ab") for i in range(3))
    loss = 0.2 * nn.functional.cross_entropy(out, y) * torch.log(lat_ms * 1000.0) ** 0.6  # CE·α·(log LAT_µs)^β
    expected = torch.autograd.grad(loss, theta)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        s.theta[0].copy_(torch.tensor([0.1, 2.0, -1.0]))
        s.theta[1].copy_(torch.tensor([3.0, 2.0, 2.5]))
    assert s.final_arch() == {"a": 1, "b": 0}


def test_temperature_follows_the_schedule_in_steps():
    s = FBNet(SearchSpace(_toy()), FBNet.Config(warmup_steps=3, anneal_every=4, latency_loss=None))
    taus = [s.temperature(i) for i in range(12)]
    assert taus[:7] == [5.0] * 7
    assert taus[7:11] == [pytest.approx(5.0 * 0.956)] * 4 and taus[11] == pytest.approx(5.0 * 0.956 ** 2)
    assert math.isclose(0.956, math.exp(-0.045), rel_tol=1e-3)


CASES = {"proxyless": {"name": "proxyless", "warmup_steps": 1, "arch_every": 2, "latency_loss": "mul#log",
                       "latency_unit": "us", "ref_latency": 0.05, "arch_lr": 0.05},
         "fbnet": {"name": "fbnet", "warmup_steps": 1, "anneal_every": 2}}


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_bitwise_exactly(tmp_path, case):
    data = build_data(DataConfig(name="synthetic", image_size=8, synthetic_train=64, synthetic_test=16,
                                 synthetic_classes=5, val_per_class=2))
    cfg = TrainConfig(steps=6, batch_size=4, checkpoint_every=3, keep_checkpoints=5, log_every=1, progress=False,
                      optim=OptimConfig(lr=0.05))

    def make():
        torch.manual_seed(0)
        model = tiny_model(CASES[case]["name"], input_size=8)
        cost = standin_cost(model, scale=1e-6)  # a few µs per block
        return model, build_strategy(check_settings(CASES[case]), SearchSpace(model), seed=3, cost=cost)

    full, _ = assert_resume_is_exact(tmp_path, make, data.train, cfg, at=3)
    first = [a for a in (full["strategy"].get("alpha") or full["strategy"]["theta"])]
    assert any(t.abs().max() > 0.01 for t in first)  # the architecture parameters really moved
    rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    if case == "fbnet":
        assert [r["temperature"] for r in rows] == [5.0, 5.0, 5.0, pytest.approx(4.78), pytest.approx(4.78),
                                                    pytest.approx(5.0 * 0.956 ** 2)]
        assert full["strategy"]["temperature"] == pytest.approx(5.0 * 0.956 ** 2)
    else:
        assert "expected_latency_ms" in rows[-1] or "expected_latency_ms" in rows[-2]


@pytest.mark.parametrize("name, settings", [("fbnet", {"latency_unit": "ms"}),
                                            ("proxyless", {"latency_unit": "ms", "ref_latency": 0.5})])
def test_a_log_latency_loss_below_one_unit_is_refused_when_the_strategy_is_built(name, settings):
    """The table's fastest architecture (0.3 ms) is the least any step can see: in ms its log is
    negative, which would fail mid-run; it is refused before training, with the fix."""
    model = _toy()
    cost = standin_cost(model, input_shape=(6,), scale=1e-6, overhead_ms=0.3)
    with pytest.raises(ValueError, match=r"takes log latency in ms: .* ms, not above 1 ms; set strategy.latency_unit=us"):
        build_strategy(check_settings({"name": name, **settings}), SearchSpace(model), seed=0, cost=cost)
    build_strategy(check_settings({"name": name, **settings, "latency_unit": "us"}), SearchSpace(model), seed=0,
                   cost=cost)  # 300 µs: fine
