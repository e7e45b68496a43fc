"""ENAS: REINFORCE learns a toy reward (and its flip), the skip penalty pulls the skip density to
its target under a flat reward, export follows its rule, and bad settings are refused."""
import contextlib
import functools
import re

import pytest
import torch
from torch import nn

from supernet import InputChoice, LayerChoice, SearchSpace
from supernet.strategies import ENAS, StepContext, check_settings
from supernet.runtime.typed import ConfigError


class Toy(nn.Module):
    """Three 3-way choices and a 6-input skip choice; the toy rewards never run it."""

    def __init__(self, skips=True):
        super().__init__()
        self.ops = nn.ModuleList(LayerChoice([nn.Identity() for _ in range(3)], label=f"op_{i}") for i in range(3))
        self.skip = InputChoice(6, None, label="skip") if skips else None


def _ctx(model):
    return StepContext(net=model, criterion=nn.CrossEntropyLoss(), optimizer=None, device=torch.device("cpu"),
                       autocast=contextlib.nullcontext, held_out=lambda i: (torch.zeros(1), torch.zeros(1)))


def _train(strategy, reward, phases):
    strategy.reward = lambda model, arch, x, y, ctx: reward(arch)  # a toy reward instead of a child's accuracy
    ctx = _ctx(strategy.space.model)
    for phase in range(1, phases + 1):
        strategy.controller_phase(phase, phase, ctx)


def _frequency(strategy, label, option, n=400):
    with torch.no_grad():
        archs = strategy.controller.sample(n, torch.Generator().manual_seed(99)).archs
    return sum(a[label] == option for a in archs) / n


@pytest.mark.parametrize("target", [0, 2])
def test_reinforce_learns_the_option_a_toy_reward_prefers_and_its_flip(target):
    """The reward is the share of labels at ``target``; no tanh bound (with the default 1.5 / 2.5 an op's
    logits stay within ±0.6, so no option of three can reach 0.9: ENAS keeps exploring)."""
    space = SearchSpace(Toy(skips=False))
    strategy = ENAS(space, ENAS.Config(tanh_constant=None, ctrl_lr=0.05, ctrl_steps=10, ctrl_aggregate=10), seed=0)
    strategy.setup(torch.device("cpu"))
    before = [_frequency(strategy, f"op_{i}", target) for i in range(3)]
    _train(strategy, lambda arch: sum(arch[f"op_{i}"] == target for i in range(3)) / 3, phases=6)  # 600 samples
    after = [_frequency(strategy, f"op_{i}", target) for i in range(3)]
    assert max(before) < 0.5 and min(after) > 0.9, (before, after)
    assert strategy.history[-1]["reward"] > 0.8 and strategy.baseline > 0.5


def test_the_skip_penalty_pulls_the_skip_density_to_its_target_under_a_flat_reward():
    space = SearchSpace(Toy())
    strategy = ENAS(space, ENAS.Config(ctrl_lr=0.01, ctrl_steps=10, ctrl_aggregate=10, skip_target=0.2), seed=0)
    strategy.setup(torch.device("cpu"))
    density = lambda: _frequency_skips(strategy)  # noqa: E731
    start = density()
    _train(strategy, lambda arch: 0.5, phases=4)
    end = density()
    assert abs(start - 0.5) < 0.1 and abs(end - 0.2) < 0.05, (start, end)
    assert strategy.history[-1]["skip_density"] < strategy.history[0]["skip_density"]


def _frequency_skips(strategy, n=400):
    with torch.no_grad():
        s = strategy.controller.sample(n, torch.Generator().manual_seed(98))
    return s.skip_density


class Scored(nn.Module):
    """A model whose held-out accuracy is decided by its architecture: the logit of class op_0."""

    def __init__(self):
        super().__init__()
        self.op = LayerChoice([nn.Identity() for _ in range(4)], label="op_0")
        self.skip = InputChoice(3, None, label="skip")

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.op.active), 4).float() + 0 * x.mean()


def test_export_is_the_best_of_n_samples_by_held_out_reward_or_the_greedy_decode():
    model = Scored()
    space = SearchSpace(model)
    y = torch.tensor([2, 2, 2, 1, 0, 3, 2, 2])  # class 2 is the most frequent label
    ctx = StepContext(net=model, criterion=nn.CrossEntropyLoss(), optimizer=None, device=torch.device("cpu"),
                      autocast=contextlib.nullcontext, held_out=lambda i: (torch.zeros(8, 1), y))
    best = ENAS(space, ENAS.Config(export_samples=30), seed=1)
    best.setup(torch.device("cpu"))
    found = best.choose(ctx, step=9)
    with torch.no_grad():  # the same 30 candidates, scored independently
        candidates = best.controller.sample(30, torch.Generator().manual_seed(__import__("supernet").runtime.seeding.mix_seed(1, 3))).archs
    scores = [(y == a["op_0"]).float().mean().item() for a in candidates]
    assert found["arch"] == candidates[scores.index(max(scores))] and found["arch"]["op_0"] == 2
    assert found["held_out_score"] == max(scores) == 5 / 8 and "best of 30" in found["chosen_by"]

    greedy = ENAS(space, ENAS.Config(export="greedy"), seed=1)
    greedy.setup(torch.device("cpu"))
    c = greedy.controller
    with torch.no_grad():  # each decision's most likely option, by hand: op_0, then one sigmoid per skip input
        c.soft["0"].weight.mul_(40)  # a decisive controller: the argmax is clear of ties
        h, s = c.lstm[0](c.g_emb)
        op = int(c._logits(c.soft["0"](h), True).argmax())
        h, _ = c.lstm[0](c.emb["0"](torch.tensor([op])), (h, s))
        q = c.v_attn(torch.tanh(c.w_key(c.start["1"]) + c.w_query(h)))[:, 0]
        expected = {"op_0": op, "skip": [i for i in range(3) if q[i] > 0]}
    found = greedy.choose(ctx, step=9)
    assert found["arch"] == expected and found["chosen_by"].startswith("greedy")
    assert greedy.choose(ctx, step=9) == found  # no randomness


def good_reward(logits, y):  # for strategy.reward=tests.strategies.test_enas:good_reward
    return float((logits.argmax(-1) == y).float().mean())


def wrong_arguments(logits):
    return 0.0


@pytest.mark.parametrize("name, message", [
    ("os:system", "'os:system' is the built-in system, not a Python function"),
    ("builtins:exec", "'builtins:exec' is the built-in exec, not a Python function"),
    ("builtins:max", "'builtins:max' is the built-in max, not a Python function"),
    ("builtins:dict", "'builtins:dict' is a class (dict), not a function"),
    ("math:pi", "'math:pi' is a float, not a function"),
    (f"{__name__}:wrong_arguments", "takes (logits), which cannot be called as reward(logits, y)"),
    ("no_such_module_here:f", "cannot import f from no_such_module_here"),
])
def test_a_reward_that_is_not_a_reward_function_is_refused_when_the_settings_are_checked(name, message):
    """Before any training (the settings check of every stage), with one line; nothing is called."""
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        check_settings({"name": "enas", "reward": name})
    assert str(e.value).startswith(f"strategy.reward {name!r}") and "\n" not in str(e.value)


def test_a_python_reward_function_is_accepted_and_so_is_a_callable_for_the_nni_face():
    assert check_settings({"name": "enas", "reward": f"{__name__}:good_reward"})["reward"].endswith("good_reward")
    assert ENAS(SearchSpace(Toy()), reward_function=functools.partial(good_reward)).reward_function is not None
    with pytest.raises(ValueError, match="reward_function <built-in function max> is the built-in max"):
        ENAS(SearchSpace(Toy()), reward_function=max)


def test_a_strategy_name_that_is_not_a_strategy_class_is_refused():
    from supernet.strategies import strategy_class
    for name, message in [("os:system", "is not a supernet.strategies.Strategy subclass"),
                          ("no_such_module_here:S", "cannot import S from no_such_module_here")]:
        with pytest.raises(ConfigError, match=message):
            strategy_class(name)


def test_bad_settings_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="unused with export=greedy"):
        check_settings({"name": "enas", "export": "greedy", "export_samples": 10})
    with pytest.raises(ConfigError, match="skip_target must be in"):
        check_settings({"name": "enas", "skip_target": 1.0})
    with pytest.raises(ValueError, match="neither 'accuracy' nor module:function"):
        ENAS(SearchSpace(Toy()), ENAS.Config(reward="top5"))
    model = Toy()
    model.skip.anchors = ["op_0", "nope", None, None, None, None]
    with pytest.raises(ValueError, match="anchor 'nope' is not a label decided before it"):
        ENAS(SearchSpace(model)).setup(torch.device("cpu"))


@pytest.mark.slow
def test_enas_runs_every_stage_from_the_cli_on_the_micro_space(tmp_path, capsys):
    import json

    import yaml

    from supernet.cli import main
    from supernet.train.metrics import read_metrics
    config = {
        "data": {"name": "synthetic", "image_size": 16, "synthetic_train": 64, "synthetic_test": 16,
                 "synthetic_classes": 3, "val_per_class": 2},
        "space": {"name": "enas-micro", "options": {"cells": 1, "channels": 4, "nodes": 3}},
        "strategy": {"name": "enas", "train_steps": 2, "ctrl_steps": 1, "ctrl_aggregate": 2, "export_samples": 4,
                     "tanh_constant": 1.1, "ctrl_lr": 0.0035, "held_out": 0.25},
        "supernet": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "progress": False,
                     "grad_clip": 5.0, "optim": {"lr": 0.05}},
        "retrain": {"steps": 2, "batch_size": 8, "checkpoint_every": 2, "progress": False, "optim": {"lr": 0.05}},
    }
    (tmp_path / "enas.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    for argv in (["train-supernet", "--config", tmp_path / "enas.yaml"], ["retrain"], ["evaluate"], ["export"]):
        assert main([str(a) for a in argv] + ["--run-dir", str(run)]) == 0, capsys.readouterr().err
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert best["strategy"] == "enas" and best["chosen_by"].startswith("best of 4") and best["step"] == 3
    assert (run / "search" / "search.png").stat().st_size > 0
    assert "controller_reward" in read_metrics(run / "supernet" / "metrics.jsonl")[1]
    assert json.loads((run / "eval.json").read_text())["arch"] == best["arch"] and (run / "model.onnx").exists()


def test_controller_phases_and_the_final_arch_are_in_the_checkpoint(tmp_path):
    """With phases of 2 steps, a 6-step run has controller phases at steps 2 and 4 and chooses its
    architecture at the start of step 5; all of it is in the checkpoint, and the metrics say so."""
    from supernet.data import DataConfig, build_data
    from supernet.train import fit, load_checkpoint
    from supernet.train.config import OptimConfig, TrainConfig
    from supernet.train.metrics import read_metrics

    from ..conftest import tiny_model
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_classes=5,
                                 val_per_class=2))
    torch.manual_seed(0)
    model = tiny_model("shufflenet-cifar", input_size=16)
    strategy = ENAS(SearchSpace(model), ENAS.Config(train_steps=2, ctrl_steps=1, ctrl_aggregate=2, export_samples=3,
                                                    held_out=0.2), seed=3)
    cfg = TrainConfig(steps=6, batch_size=8, log_every=1, progress=False, optim=OptimConfig(lr=0.05))
    fit(model, data.train, cfg, tmp_path, meta={}, run_config={}, strategy=strategy)
    state = load_checkpoint(tmp_path / "last.pt")["strategy"]
    assert [h["step"] for h in state["history"]] == [2, 4] and state["baseline"] != 0
    assert state["found"]["step"] == 5 and strategy.final_arch() == state["found"]["arch"]
    assert "controller_reward" in read_metrics(tmp_path / "metrics.jsonl")[2]
