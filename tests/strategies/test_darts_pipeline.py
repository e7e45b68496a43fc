"""DARTS through the CLI, stage by stage (tiny), and the evaluation network's retrain recipe:
auxiliary head, drop-path ramp, cutout and grad clip."""
import contextlib
import json

import pytest
import torch
import yaml
from torch import nn

from supernet.cli import main
from supernet.data import DataConfig, build_data
from supernet.data.loader import Cutout
from supernet.nn import DropPath
from supernet.strategies import Plain, StepContext
from supernet.train import load_checkpoint
from supernet.train.metrics import read_metrics

TINY_DARTS = {
    "data": {"name": "synthetic", "image_size": 32, "synthetic_train": 64, "synthetic_test": 16,
             "synthetic_classes": 3, "val_per_class": 2},
    "space": {"name": "darts", "options": {"channels": 4, "layers": 3, "nodes": 2}},
    "strategy": {"name": "darts", "unrolled": True, "snapshot_every": 2},
    "supernet": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "progress": False,
                 "grad_clip": 5.0, "optim": {"lr": 0.025, "label_smoothing": 0.0}},
    "retrain": {"steps": 3, "batch_size": 8, "checkpoint_every": 3, "progress": False, "grad_clip": 5.0,
                "space_options": {"channels": 4, "layers": 3, "affine": True, "auxiliary": True},
                "aux_weight": 0.4, "drop_path": 0.2, "cutout": 8, "optim": {"lr": 0.025}},
}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.slow
def test_darts_runs_every_stage_from_the_cli(tmp_path, capsys):
    config = tmp_path / "darts.yaml"
    config.write_text(yaml.safe_dump(TINY_DARTS))
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run)
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert best["strategy"] == "darts" and len(best["arch"]["normal/input_3"]) == 2
    history = json.loads((run / "search" / "arch_history.json").read_text())
    assert [h["step"] for h in history["history"]] == [0, 2, None] and (run / "search" / "search.png").stat().st_size > 0
    assert "val_loss" in read_metrics(run / "supernet" / "metrics.jsonl")[0]
    cli(capsys, "retrain", "--run-dir", run)
    ck = load_checkpoint(run / "retrain" / "last.pt")
    assert ck["meta"]["options"]["auxiliary"] and any(k.startswith("auxiliary_head") for k in ck["model"])
    cli(capsys, "evaluate", "--run-dir", run)
    report = json.loads((run / "eval.json").read_text())
    assert report["arch"] == best["arch"] and report["flops"] > 0
    cli(capsys, "export", "--run-dir", run)
    assert (run / "model.onnx").stat().st_size > 0


def test_plain_step_ramps_drop_path_and_adds_the_auxiliary_loss():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = DropPath()
            self.head, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            self.aux_logits = self.aux(x)
            return self.head(self.drop(x))

    net = Net()
    ce = nn.CrossEntropyLoss()
    ctx = StepContext(net=net, criterion=ce, optimizer=None, device=torch.device("cpu"), autocast=contextlib.nullcontext)
    plain = Plain(aux_weight=0.4, drop_path=0.2, steps=10)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(0)
    loss, _, _ = plain.train_step(5, x, y, ctx)
    assert net.drop.p == pytest.approx(0.1)  # 0.2 * 5 / 10
    net.drop.eval()  # the same forward without the random mask: the loss adds 0.4 x the auxiliary loss
    net.eval()
    expected = ce(net.head(x), y) + 0.4 * ce(net.aux(x), y)
    net.train()
    net.drop.p = 0.0
    assert plain.train_step(0, x, y, ctx)[0] == pytest.approx(float(expected.detach()))
    assert net.drop.p == 0.0 and loss > 0


def test_cutout_zeroes_one_square_per_augmented_item_from_its_seed():
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=16, synthetic_classes=2,
                                 val_per_class=1))
    cut = Cutout(data.train, 8)
    a, b = cut[(3, 11)][0], cut[(3, 11)][0]
    assert torch.equal(a, b)  # a function of (index, seed)
    plain = data.train[(3, 11)][0]
    zeroed = (a == 0) & (plain != 0)
    assert 0 < zeroed[0].sum() <= 64 and torch.equal(a[~zeroed], plain[~zeroed])
    assert torch.equal(cut[3][0], data.train[3][0])  # plain indices (evaluation) are left alone
    assert not torch.equal(cut[(3, 12)][0], a)


def test_the_retrain_recipe_refuses_settings_it_cannot_use(tmp_path, capsys):
    config = tmp_path / "darts.yaml"
    config.write_text(yaml.safe_dump({**TINY_DARTS, "strategy": {"name": "darts"},
                                      "supernet": {**TINY_DARTS["supernet"], "steps": 1}}))
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run)
    for override, message in (("aux_weight=0", "has an auxiliary head (space option auxiliary=true) but retrain.aux_weight is 0"),
                              ("space_options.num_classes=7", "retrain.space_options.num_classes is set by the data (3)")):
        assert main(["retrain", "--run-dir", str(run), override]) == 2
        assert message in capsys.readouterr().err
    assert not (run / "retrain").exists()


def test_drop_path_masks_are_a_function_of_seed_and_step():
    net = nn.Sequential(nn.Linear(4, 4), DropPath(), nn.Linear(4, 3))
    ctx = StepContext(net=net, criterion=nn.CrossEntropyLoss(), optimizer=None, device=torch.device("cpu"),
                      autocast=contextlib.nullcontext)
    x, y = torch.randn(64, 4), torch.randint(3, (64,))
    run = lambda seed, step: Plain(drop_path=0.5, steps=2, seed=seed).train_step(step, x, y, ctx)[0]  # noqa: E731
    torch.manual_seed(1)
    a = run(0, 1)
    torch.manual_seed(2)  # the global RNG plays no part
    assert run(0, 1) == a and run(1, 1) != a and run(0, 0) != a
