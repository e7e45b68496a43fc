"""The strategy seam: FairNAS's strict fairness, the held-out stream, a user's strategy resumed
exactly and run through the pipeline, DARTS' second order resumed exactly."""
import runpy
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from supernet import LayerChoice, SearchSpace
from supernet.train.config import OptimConfig, TrainConfig
from supernet.data import DataConfig, build_data
from supernet.data.loader import split_held_out
from supernet.strategies import STRATEGIES, build_strategy, check_settings, fair_paths
from supernet.train import fit
from supernet.train.metrics import read_metrics

from ..conftest import assert_resume_is_exact, tiny_model

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_strategy.py"


def test_fairnas_trains_every_candidate_of_a_largest_label_exactly_once_per_step():
    space = SearchSpace(tiny_model("shufflenet-cifar", channel_search=True))  # 4 blocks, 8 widths: m = 8
    for step in range(12):
        paths = fair_paths(space, seed=5, step=step)
        assert len(paths) == 8
        for label in space.labels:
            counts = Counter(p[label] for p in paths)
            want = 1 if label.startswith("channel") else 2  # m = q*n: each option q times
            assert sorted(counts) == list(range(space.n_options(label))) and set(counts.values()) == {want}
    assert fair_paths(space, 5, 3) == fair_paths(space, 5, 3) != fair_paths(space, 6, 3)


def test_fairnas_balances_a_smaller_label_and_rotates_its_extra_uses():
    model = nn.Sequential(LayerChoice([nn.Identity() for _ in range(8)], label="big"),
                          LayerChoice([nn.Identity() for _ in range(3)], label="small"))
    space = SearchSpace(model)
    total = Counter()
    for step in range(6):  # m = 8 = 2*3 + 2: each option 2 or 3 times, exactly 2 options 3 times
        counts = Counter(p["small"] for p in fair_paths(space, 0, step))
        assert sorted(counts.values()) == [2, 3, 3]
        assert Counter(p["big"] for p in fair_paths(space, 0, step)) == Counter(range(8))
        total.update(counts)
        if step % 3 == 2:  # over any 3 consecutive steps every option is used exactly m = 8 times
            assert total == {0: 8, 1: 8, 2: 8}
            total.clear()


def test_held_out_split_is_disjoint_seeded_and_keeps_the_augmentation_protocol():
    data = build_data(DataConfig(name="synthetic", image_size=8, synthetic_train=40, synthetic_classes=2, val_per_class=2))
    rest, held = split_held_out(data.train, 0.25, seed=1)
    assert len(held) == round(len(data.train) * 0.25) and len(rest) + len(held) == len(data.train)
    assert not set(rest.indices) & set(held.indices)
    assert split_held_out(data.train, 0.25, seed=1)[1].indices == held.indices != split_held_out(data.train, 0.25, 2)[1].indices
    x, y = held[(0, 123)]
    assert torch.equal(x, data.train[(held.indices[0], 123)][0])
    assert split_held_out(data.train, 0.0, 1) == (data.train, None)


def _setup(name):
    runpy.run_path(str(EXAMPLE))  # registers learned-sampling
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_test=32,
                                 synthetic_classes=5, val_per_class=2))
    torch.manual_seed(0)
    model = tiny_model("shufflenet-cifar", input_size=16, channel_search=True)
    strategy = build_strategy(check_settings({"name": name}), SearchSpace(model), seed=3)
    cfg = TrainConfig(steps=6, batch_size=8, checkpoint_every=3, keep_checkpoints=5, log_every=1, progress=False,
                      optim=OptimConfig(lr=0.05))  # FairNAS sums 8 paths' gradients: LR 0.5 diverges here
    return data, model, strategy, cfg


def test_the_example_strategy_resumes_exactly_and_its_state_moved(tmp_path):
    """A user's strategy (examples/custom_strategy.py) gets what the registered ones get
    (tests/strategies/test_registry.py): its θ, Adam's moments and baseline come back exactly."""
    data, _, _, cfg = _setup("learned-sampling")
    full, _ = assert_resume_is_exact(tmp_path, lambda: _setup("learned-sampling")[1:3], data.train, cfg, at=3)
    assert full["strategy"]["baseline"] != 0 and any(t.abs().sum() > 0 for t in full["strategy"]["theta"].values())
    assert "reward" in read_metrics(tmp_path / "full" / "metrics.jsonl")[0]


def test_fairnas_accumulates_the_m_paths_gradients_into_one_update(tmp_path):
    """One FairNAS step equals m manual backwards on the same batch, summed, then one SGD step."""
    data, model, strategy, cfg = _setup("fairnas")
    cfg = TrainConfig(steps=1, batch_size=8, progress=False, device="cpu")
    reference = tiny_model("shufflenet-cifar", input_size=16, channel_search=True)
    reference.load_state_dict(model.state_dict())
    fit(model, data.train, cfg, None, meta={}, run_config={}, strategy=strategy)
    from supernet.data.loader import train_loader
    from supernet.train.optim import build_optimizer, lr_at, set_lr, step_on_path
    x, y = next(iter(train_loader(data.train, 8, cfg.seed, 0, 1)))
    reference.to(memory_format=torch.channels_last)  # as fit runs it (train.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    space = SearchSpace(reference)
    opt = build_optimizer(reference, cfg.optim)
    set_lr(opt, lr_at(0, 1, cfg.optim))
    torch.manual_seed(cfg.seed)  # dropout, as fit seeds it
    for arch in fair_paths(space, 3, 0):
        space.activate(arch)
        nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)(reference(x), y).backward()
    step_on_path(opt)
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k  # fused vs for-loop SGD differ in the last bit
    assert set(STRATEGIES) >= {"spos", "fairnas"}


@pytest.mark.slow
def test_example_strategy_runs_the_pipeline_and_chooses_an_architecture(tmp_path):
    example = runpy.run_path(str(EXAMPLE))
    report = example["main"](run_dir=tmp_path / "ls", steps=20, retrain_steps=5)
    best = (tmp_path / "ls" / "search" / "best_arch.json").read_text()
    assert '"strategy": "learned-sampling"' in best and report["n"] > 0 and 0 <= report["top1"] <= 1


@pytest.mark.slow
def test_darts_resumes_exactly_on_the_darts_space_with_second_order(tmp_path):
    """α, Adam's moments and the α snapshots come back from the checkpoint; the unrolled step reads
    the weight optimizer's momentum, which the checkpoint restores too."""
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_test=32,
                                 synthetic_classes=5, val_per_class=2))
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_every=2, keep_checkpoints=5, log_every=1, progress=False,
                      optim=OptimConfig(lr=0.05), grad_clip=5.0)

    def make():
        torch.manual_seed(0)
        model = tiny_model("darts", input_size=16)
        return model, build_strategy(check_settings({"name": "darts", "unrolled": True, "snapshot_every": 1}),
                                     SearchSpace(model), seed=3)

    full, _ = assert_resume_is_exact(tmp_path, make, data.train, cfg, at=2)
    assert [h["step"] for h in full["strategy"]["history"]] == [0, 1, 2, 3]
    assert "val_loss" in read_metrics(tmp_path / "full" / "metrics.jsonl")[0]
