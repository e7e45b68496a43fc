import random

import pytest
import torch

from supernet import SearchSpace
from supernet.train.config import OptimConfig, TrainConfig
from supernet.data import DataConfig, build_data
from supernet.train import TrainingError, fit, load_checkpoint
from supernet.strategies import SPOS, Strategy
from supernet.train.optim import SGD, build_optimizer, lr_at, step_on_path

from ..conftest import assert_resume_is_exact, tiny_model


class Scripted(Strategy):
    """The paths of a list, step by step."""

    def __init__(self, space, paths):
        super().__init__(space)
        self.paths = paths

    def train_step(self, step, x, y, ctx):
        self.space.activate(self.paths[step])
        loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y


def tiny_setup(**cfg):
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_test=32,
                                 synthetic_classes=5, val_per_class=2))
    model = tiny_model("shufflenet-cifar", input_size=16, channel_search=True)
    train = TrainConfig(**{"steps": 6, "batch_size": 8, "checkpoint_every": 3, "keep_checkpoints": 5,
                           "log_every": 1, "progress": False, **cfg})
    return data, model, train


def test_lr_schedules():
    linear = OptimConfig(lr=0.5)
    assert lr_at(0, 100, linear) == 0.5 and lr_at(50, 100, linear) == 0.25 and lr_at(100, 100, linear) == 0
    warm = OptimConfig(lr=1.0, warmup_steps=10)
    assert lr_at(0, 110, warm) == 0.1 and lr_at(9, 110, warm) == 1.0 and lr_at(60, 110, warm) == 0.5
    cosine = OptimConfig(lr=1.0, schedule="cosine")
    assert lr_at(50, 100, cosine) == pytest.approx(0.5) and lr_at(100, 100, cosine) == pytest.approx(0)


def test_weight_decay_only_on_weights_with_ndim_above_one():
    model = tiny_model("shufflenet-cifar", affine=True)
    opt = build_optimizer(model, OptimConfig(weight_decay=1e-4))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and all(p.ndim == 1 for p in no_decay["params"])


@pytest.mark.parametrize("on_path", [False, True])
def test_fused_sgd_updates_like_the_for_loop_sgd(on_path):
    """Also along paths: a parameter first used at a later step (no momentum buffer yet) and one
    left out of a step, as step_on_path sees them in a supernet. Equal up to the last bit of some
    elements (which ones depends on the CPU's vector width)."""
    torch.manual_seed(0)
    weights = [torch.randn(8, 4, 3, 3), torch.randn(8, 8, 1, 1), torch.randn(8), torch.randn(13, 5)]
    used = [(0, 2, 3), (0, 1, 2), (1, 2, 3), (0, 1, 2, 3)] if on_path else [(0, 1, 2, 3)] * 4
    grads = [{i: torch.randn_like(weights[i]) for i in u} for u in used]
    runs = []
    for make in (SGD, torch.optim.SGD):
        params = [w.clone().requires_grad_() for w in weights]
        opt = make([{"params": params[:2], "weight_decay": 4e-5}, {"params": params[2:], "weight_decay": 0.0}],
                   lr=0.5, momentum=0.9, nesterov=True)
        for g in grads:
            for i, gp in g.items():
                params[i].grad = gp.clone()
            step_on_path(opt) if on_path else opt.step()
        runs.append([p.detach() for p in params])
    assert SGD([torch.zeros(1, requires_grad=True)], lr=0.1).defaults["fused"]  # torch 2.13 has fused CPU SGD
    for w, a, b in zip(weights, *runs):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7) and not torch.equal(w, a)


def test_unsampled_choices_are_not_moved_by_momentum_or_weight_decay(tmp_path):
    data, model, cfg = tiny_setup(steps=3, checkpoint_every=1)
    space = SearchSpace(model)
    a = space.sample(random.Random(0))
    b = dict(a, layer_2=(a["layer_2"] + 1) % 4)
    paths = [a, a, b]  # momentum builds up on a's layer_2 op, then b leaves it unsampled
    fit(model, data.train, cfg, tmp_path, meta={}, run_config={}, strategy=Scripted(space, paths))
    before = load_checkpoint(tmp_path / "step-2.pt")["model"]
    after = load_checkpoint(tmp_path / "step-3.pt")["model"]
    prefix = f"features.2.candidates.{model.features[2].values[a['layer_2']]}."
    moved = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]
    assert [k for k in before if k.startswith(prefix)] and not moved
    sampled = f"features.2.candidates.{model.features[2].values[b['layer_2']]}."
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(sampled) and "weight" in k)


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data, _, cfg = tiny_setup()

    def make():
        _, model, _ = tiny_setup()
        return model, SPOS(SearchSpace(model), seed=3)

    full, _ = assert_resume_is_exact(tmp_path, make, data.train, cfg, at=3)
    assert full["optimizer"]["state"] and all("momentum_buffer" in s for s in full["optimizer"]["state"].values())


def test_nan_loss_stops_and_names_the_step(tmp_path):
    data, model, cfg = tiny_setup(optim=OptimConfig(lr=1e30, warmup_steps=0))
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d"):
        fit(model, data.train, cfg, tmp_path, meta={}, run_config={})


def test_refuses_to_overwrite_or_resume_the_wrong_thing(tmp_path):
    from supernet.train import CheckpointError
    data, model, cfg = tiny_setup(steps=1, checkpoint_every=1)
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(model, data.train, cfg, tmp_path, meta={"space": "a"}, run_config={}, resume=True)
    fit(model, data.train, cfg, tmp_path, meta={"space": "a"}, run_config={})
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        fit(model, data.train, cfg, tmp_path, meta={"space": "a"}, run_config={})
    with pytest.raises(CheckpointError, match="space: checkpoint has 'a', now 'b'"):
        fit(model, data.train, cfg, tmp_path, meta={"space": "b"}, run_config={}, resume=True)


class Stateful(Scripted):
    """A strategy that keeps state (as an α or a controller does) and checks what it is given back."""

    def state_dict(self):
        return {"alpha": torch.zeros(3)}

    def load_state_dict(self, state):
        if state["alpha"].shape != (3,):
            raise ValueError(f"'alpha' must have shape (3,), got {tuple(state['alpha'].shape)}")


@pytest.mark.parametrize("edit, words", [
    (lambda s: {k: v for k, v in s.items() if k != "strategy"}, "has no 'strategy' entry, so the base state (alpha)"),
    (lambda s: {**s, "strategy": "alpha"}, "'strategy' must be a dict, got str"),
    (lambda s: {**s, "strategy": {"alpha": torch.zeros(4)}}, "holds a base state that does not fit: 'alpha' must"),
])
def test_a_checkpoint_without_the_strategy_state_or_with_a_wrong_one_is_refused(tmp_path, edit, words):
    from supernet.train import CheckpointError, save_checkpoint
    data, model, cfg = tiny_setup(steps=1, checkpoint_every=1)
    space = SearchSpace(model)
    paths = [space.sample(random.Random(i)) for i in range(2)]
    fit(model, data.train, cfg, tmp_path, strategy=Stateful(space, paths))
    for p in tmp_path.glob("*.pt"):
        save_checkpoint(p, edit({k: v for k, v in load_checkpoint(p).items() if k != "format_version"}))
    with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fit(model, data.train, cfg, tmp_path, strategy=Stateful(space, paths), resume=True)


def test_a_resume_must_give_the_settings_the_run_was_trained_with(tmp_path):
    from supernet.train import CheckpointError
    data, model, cfg = tiny_setup(steps=1, checkpoint_every=1)
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))
    fit(model, data.train, cfg, tmp_path, run_config={"train": {"lr": 0.1, "log_every": 1}})
    with pytest.raises(CheckpointError, match=r"other settings \(train.lr: the run used 0.1, now 0.2\)"):
        fit(model, data.train, cfg, tmp_path, run_config={"train": {"lr": 0.2, "log_every": 1}}, resume=True)
    fit(model, data.train, cfg, tmp_path, run_config={"train": {"lr": 0.1, "log_every": 5}}, resume=True,
        may_change=["train.log_every"])


class Diverging(torch.nn.Module):
    """A user's 1-D space with parameter-free candidates (skip, pooling) and no normalisation."""

    def __init__(self, classes=5, width=64):
        super().__init__()
        from supernet import LayerChoice
        self.stem = torch.nn.Linear(3 * 16 * 16, width)
        self.layers = torch.nn.Sequential(*[LayerChoice(
            {"linear": torch.nn.Linear(width, width), "skip": torch.nn.Identity(),
             "pool": torch.nn.AvgPool1d(3, 1, 1)}, label=f"layer_{i}") for i in range(4)])
        self.head = torch.nn.Linear(width, classes)

    def forward(self, x):
        h = self.stem(x.flatten(1)).unsqueeze(1)  # (B, 1, width): pooling runs along the features
        return self.head(self.layers(h).squeeze(1))


def test_a_finite_but_diverging_loss_stops_with_the_step_and_the_fix(tmp_path):
    """At LR 0.2 this space's loss climbs to ~3e8 (finite) by step 14 and only becomes NaN at step
    17: the divergence rule stops it at the first log window above 10 x log(classes)."""
    data, _, cfg = tiny_setup(steps=60, log_every=5, checkpoint_every=5,
                              optim=OptimConfig(lr=0.2, label_smoothing=0.0, weight_decay=0.0))
    torch.manual_seed(0)
    model = Diverging()
    with pytest.raises(TrainingError, match=r"the loss diverged: \S+ on average over steps 10..14, above "
                                            r"10 x log\(5 classes\) = 16.1; stopped. The last checkpoint is "
                                            r".*last.pt; lower optim.lr"):
        fit(model, data.train, cfg, tmp_path, meta={}, run_config={}, strategy=SPOS(SearchSpace(model)))
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 10  # the one before the diverged window is kept
    torch.manual_seed(0)
    model = Diverging()  # with the check off, the same run trains on until the loss is NaN
    with pytest.raises(TrainingError, match="loss became nan at step 17"):
        fit(model, data.train, TrainConfig(**{**cfg.__dict__, "diverged_at": 0.0}), None, meta={}, run_config={},
            strategy=SPOS(SearchSpace(model)))


def test_fit_takes_a_plain_tensor_dataset_with_only_the_documented_arguments(tmp_path):
    from torch.utils.data import TensorDataset
    gen = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(64, 3 * 16 * 16, generator=gen), torch.randint(0, 5, (64,), generator=gen))
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_every=2, progress=False)
    model = Diverging()
    summary = fit(model, ds, cfg, tmp_path, strategy=SPOS(SearchSpace(model)))
    assert summary["step"] == 4 and load_checkpoint(tmp_path / "last.pt")["step"] == 4


def test_fit_refuses_a_dataset_it_cannot_index_in_one_line():
    data, model, cfg = tiny_setup(steps=1)
    with pytest.raises(TypeError, match="a training set must be a map-style dataset .* got generator"):
        fit(model, (b for b in []), cfg, None)
