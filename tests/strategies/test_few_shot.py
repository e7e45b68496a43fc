"""Few-shot supernets (Zhao et al., ICML 2021): the split, the routing of every path to its own
sub-supernet in training and scoring, exact resume across the split, DDP, and refused settings."""
import copy
import random
import shutil

import pytest
import torch
from torch import nn

from supernet import LayerChoice, SearchSpace, fix
from supernet.arch import FewShotSupernet
from supernet.cli import main
from supernet.data import DataConfig, build_data
from supernet.data.loader import fixed_batches
from supernet.search import CandidateEvaluator
from supernet.spaces import create
from supernet.strategies import FewShot, PathSampler, build_strategy, check_settings, fair_paths
from supernet.train import fit, load_checkpoint
from supernet.train.config import OptimConfig, TrainConfig
from supernet.train.optim import build_optimizer, step_on_path

from ..conftest import TINY_OPTIONS, assert_equal_nested

SEED, SPLIT = 3, 3
OPTIONS = {**TINY_OPTIONS["fbnet"], "input_size": 16, "num_classes": 4}  # 4 layers of 9 candidates; BN; segments
CFG = TrainConfig(steps=6, batch_size=8, checkpoint_every=2, keep_checkpoints=5, log_every=1, progress=False,
                  device="cpu", optim=OptimConfig(lr=0.1, label_smoothing=0.0))  # checkpoints: 2 (before the split), 4


@pytest.fixture(scope="module")
def data():
    return build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=64, synthetic_classes=4,
                                 val_per_class=2))


def few_shot(strategy="spos", labels=("layer_0",), split_at=SPLIT):
    """A fresh tiny few-shot supernet (the same initial weights on every call) and its strategy."""
    torch.manual_seed(0)
    model = FewShotSupernet(create("fbnet", **OPTIONS), list(labels))
    inner = build_strategy(check_settings({"name": strategy}), SearchSpace(model), seed=SEED)
    return model, FewShot(inner, split_at)


def train(data, out, strategy="spos", resume=False):
    """A run's model, and its weights after each step (copied when the loop logs it)."""
    model, fs = few_shot(strategy)
    states = {}
    keep = None if resume else lambda record: states.update({record["step"]: copy.deepcopy(model.state_dict())})
    fit(model, data.train, CFG, out, strategy=fs, resume=resume, on_log=keep)
    return model, states


@pytest.fixture(scope="module")
def spos_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("spos") / "supernet"
    return (out, *train(data, out))


def part_state(state: dict, k: int) -> dict:
    """Part k's parameters and buffers in a model's state, by their name inside the part."""
    prefix = f"parts.{k}."
    return {name[len(prefix):]: v for name, v in state.items() if name.startswith(prefix)}


def test_every_sub_supernet_starts_from_the_one_shot_weights_and_then_changes_only_on_its_own_paths(spos_run):
    out, model, ck = spos_run  # ck[t]: the weights after t steps
    space = SearchSpace(create("fbnet", **OPTIONS))  # the plain supernet's decisions: an independent sampler
    sampler = PathSampler(space, SEED)
    parts = len(model.parts)
    assert parts == 9 and not ck[SPLIT]["split_flag"] and ck[SPLIT + 1]["split_flag"]
    for t in range(1, CFG.steps):  # step t turns checkpoint t into checkpoint t + 1
        own = sampler(t)["layer_0"] if t >= SPLIT else 0  # before the split every path is part 0's
        for k in range(parts):
            before, after = part_state(ck[t], k), part_state(ck[t + 1], k)
            if k == own:
                assert any(not torch.equal(before[n], after[n]) for n in before), (t, k)
            elif t == SPLIT:  # the split: part 0's weights and BN statistics as they were, bitwise
                assert_equal_nested(after, part_state(ck[t], 0))
            else:
                assert_equal_nested(after, before)
    steps = torch.zeros(parts, dtype=torch.long)
    for t in range(SPLIT, CFG.steps):
        steps[sampler(t)["layer_0"]] += 1
    assert torch.equal(ck[CFG.steps]["part_steps"], steps)
    assert_equal_nested(load_checkpoint(out / "last.pt")["model"], ck[CFG.steps])


def test_the_split_copies_weights_buffers_and_momentum_bitwise():
    model, _ = few_shot()
    space = SearchSpace(model)
    optimizer = build_optimizer(model, OptimConfig(lr=0.1))
    gen = torch.Generator().manual_seed(0)
    for t in range(3):  # three one-shot steps, all in part 0
        space.activate(PathSampler(space, SEED)(t))
        model(torch.randn(4, 3, 16, 16, generator=gen)).square().mean().backward()
        step_on_path(optimizer)
    one_shot = copy.deepcopy(model.parts[0].state_dict())
    momentum = {n: optimizer.state[p]["momentum_buffer"].clone() for n, p in model.parts[0].named_parameters()
                if p in optimizer.state}
    assert momentum and all(p not in optimizer.state for p in model.parts[1].parameters())
    model.split(optimizer)
    for part in model.parts:
        assert_equal_nested(part.state_dict(), one_shot)
        for n, p in part.named_parameters():
            assert (n in momentum) == (p in optimizer.state)
            if n in momentum:
                assert torch.equal(optimizer.state[p]["momentum_buffer"], momentum[n])
                assert optimizer.state[p]["momentum_buffer"].data_ptr() != momentum[n].data_ptr()
    with pytest.raises(RuntimeError, match="already split"):
        model.split(optimizer)


def test_an_architecture_is_scored_by_its_own_sub_supernet(spos_run, data):
    _, model, _ = spos_run
    space = SearchSpace(model)
    recal, val = fixed_batches(data.train, 8, 2, seed=0), fixed_batches(data.val, 8, 1, seed=1)
    archs = [space.sample(random.Random(i)) for i in range(12)]
    assert len({a["layer_0"] for a in archs}) > 3
    scores = CandidateEvaluator(model, recal, val).evaluate_many(archs)  # the prefix tree over the parts' segments
    for arch, score in zip(archs, scores):
        alone = copy.deepcopy(model.parts[arch["layer_0"]])  # that sub-supernet alone, as a plain supernet
        assert CandidateEvaluator(alone, recal, val)(arch) == score
    # and the subnet cut from a few-shot supernet (retrain.init=supernet) is cut from its own part
    x = torch.randn(2, 3, 16, 16)
    for arch in archs[:3]:
        mine, alone = fix(model, arch).eval(), fix(model.parts[arch["layer_0"]], arch).eval()
        assert torch.equal(mine(x), alone(x))


@pytest.mark.slow
def test_a_resumed_run_gives_the_weights_of_the_uninterrupted_one_before_and_after_the_split(spos_run, data, tmp_path):
    out = spos_run[0]
    full = load_checkpoint(out / "last.pt")
    for at in (SPLIT - 1, SPLIT + 1):  # killed before the split, and after it
        crashed = tmp_path / f"crashed-{at}"
        crashed.mkdir()
        shutil.copy(out / f"step-{at}.pt", crashed / "last.pt")
        train(data, crashed, resume=True)
        resumed = load_checkpoint(crashed / "last.pt")
        assert_equal_nested(resumed["model"], full["model"])
        assert_equal_nested(resumed["optimizer"], full["optimizer"])


def test_each_fairnas_path_trains_in_its_own_sub_supernet(data, tmp_path):
    model, ck = train(data, None, strategy="fairnas")
    space = SearchSpace(create("fbnet", **OPTIONS))
    own = {a["layer_0"] for a in fair_paths(space, SEED, SPLIT + 1)}  # m = 9 paths: each option of layer_0 once
    assert own == set(range(9))
    changed = {k for k in range(9) if any(not torch.equal(v, part_state(ck[SPLIT + 2], k)[n])
                                          for n, v in part_state(ck[SPLIT + 1], k).items())}
    assert changed == own
    assert model.part_steps.tolist() == [CFG.steps - SPLIT] * 9


def test_a_split_on_two_labels_routes_by_both():
    layers = [LayerChoice([nn.Linear(2, 2) for _ in range(n)], label=f"l{n}") for n in (2, 3)]
    model = FewShotSupernet(nn.Sequential(*layers), ["l3", "l2"])
    assert len(model.parts) == 6 and model.counts == [3, 2]
    space = SearchSpace(model)
    space.activate({"l2": 1, "l3": 2})
    assert model.active_part() is model.parts[0]  # one-shot until the split
    model.split()
    assert model.active_part() is model.parts[2 * 2 + 1]
    x = torch.randn(1, 2)
    assert torch.equal(model(x), model.parts[5][1][2](model.parts[5][0][1](x)))
    space.set_weights({"l3": torch.ones(3) / 3})
    with pytest.raises(RuntimeError, match="LayerChoice 'l3' has weights, but a few-shot supernet runs each forward"):
        model(x)


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_across_the_split_in_one(tmp_path):
    from ..test_distributed import worker  # torchrun with gloo: the BN-free model of tests/train/ddp_worker.py
    kinds = ["spos-few-shot", "fairnas-few-shot"]
    ones, twos = worker(1, tmp_path / "one", kinds), worker(2, tmp_path / "two", kinds)
    for kind in kinds:
        (tmp_path / "mixed" / kind).mkdir(parents=True)
        shutil.copy(tmp_path / "two" / kind / "step-3.pt", tmp_path / "mixed" / kind / "last.pt")  # before the split
    resumed = worker(1, tmp_path / "mixed", kinds, resume=True)
    for kind in kinds:
        assert bool(ones[kind]["model"]["split_flag"]) and ones[kind]["model"]["part_steps"].sum() > 0
        for k, v in ones[kind]["model"].items():
            assert torch.allclose(twos[kind]["model"][k], v, rtol=1e-5, atol=1e-6), (kind, k)
            assert torch.allclose(resumed[kind]["model"][k], v, rtol=1e-5, atol=1e-6), (kind, k)


# --- the CLI: settings refused in one line, before anything is built ----------------------------------
REFUSED = [
    (["few_shot.split_at=10", "few_shot.labels=[layer_9]"], "supernet.few_shot.labels: unknown label 'layer_9'; "
                                                              "valid labels: layer_0, layer_1"),
    (["few_shot.split_at=3000"], "few_shot.split_at must be in 0..2999"),
    (["few_shot.split_at=-1"], "few_shot.split_at must be in 0..2999"),
    (["few_shot.labels=[layer_0]"], "few_shot.labels is set but few_shot.split_at is not"),
    (["few_shot.split_at=10", "strategy.name=darts"], "supernet.few_shot needs a single-path strategy"),
    (["few_shot.split_at=10", "strategy.name=proxyless"], "strategy.name=proxyless mixes or gates"),
    (["few_shot.split_at=10", "few_shot.labels=[layer_0,layer_1,layer_2,layer_3,layer_4,layer_5,layer_6]"],
     "supernet.few_shot.labels=[layer_0,layer_1,layer_2,layer_3,layer_4,layer_5,layer_6]: training 4,782,969 "
     "sub-supernets of the fbnet-small supernet"),
]


@pytest.mark.parametrize("overrides, message", REFUSED, ids=[r[1][:40] for r in REFUSED])
def test_bad_few_shot_settings_are_refused_in_one_line(tmp_path, capsys, overrides, message):
    run = tmp_path / "run"
    code = main(["train-supernet", "--config", "ranking-digits", "--run-dir", str(run), "--threads", "1", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (run / "supernet").exists()


@pytest.mark.slow
def test_the_pipeline_trains_resumes_searches_and_retrains_a_few_shot_supernet(tmp_path, capsys):
    import yaml
    from ..test_pipeline import TINY
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "supernet": {**TINY["supernet"], "few_shot": {"split_at": 4}}}))
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "few-shot: 4 one-shot steps, then 4 sub-supernets (one per option of layer_0) shared the other 2" in out
    full = load_checkpoint(run / "supernet" / "last.pt")
    assert full["meta"]["few_shot"] == {"labels": ["layer_0"]}
    crashed = tmp_path / "crashed"  # killed after step 3, before the split
    shutil.copytree(run, crashed)
    shutil.copy(run / "supernet" / "step-3.pt", crashed / "supernet" / "last.pt")
    assert main(["train-supernet", "--run-dir", str(crashed), "--resume"]) == 0
    assert_equal_nested(load_checkpoint(crashed / "supernet" / "last.pt")["model"], full["model"])
    assert main(["search", "--run-dir", str(run)]) == 0
    assert main(["retrain", "--run-dir", str(run), "init=supernet"]) == 0
    assert main(["train-supernet", "--run-dir", str(run), "--resume", "few_shot.split_at=5"]) == 2
    assert "supernet.few_shot.split_at: the run used 4, now 5" in capsys.readouterr().err
