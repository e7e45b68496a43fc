"""NNI's EnasTrainer signature on supernet's loop, with a small NNI 2.x ENAS macro model that runs
unchanged apart from its imports (a LayerChoice per layer, InputChoice(n_chosen=None) skips)."""
import inspect

import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn  # was: import nni.retiarii.nn.pytorch as nn
from supernet import SearchSpace
from supernet.oneshot import EnasTrainer


class ConvBranch(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        return self.conv(x)


class ENASLayer(nn.Module):  # as NNI's examples/nas/oneshot/enas/macro.py writes it
    def __init__(self, key, prev_labels, c):
        super().__init__()
        self.mutable = nn.LayerChoice([ConvBranch(c, 3), ConvBranch(c, 5), nn.MaxPool2d(3, 1, 1)], label=key)
        self.skipconnect = nn.InputChoice(n_candidates=len(prev_labels), n_chosen=None, label=key + "_skip") \
            if prev_labels else None
        self.batch_norm = nn.BatchNorm2d(c, affine=False)

    def forward(self, prev_layers):
        out = self.mutable(prev_layers[-1])
        if self.skipconnect is not None:
            connection = self.skipconnect(prev_layers[:-1])
            if connection is not None:
                out = out + connection
        return self.batch_norm(out)


class GeneralNetwork(nn.Module):
    def __init__(self, layers=3, c=4, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        labels = []
        self.layers = nn.ModuleList()
        for i in range(layers):
            self.layers.append(ENASLayer(f"layer_{i}", list(labels), c))
            labels.append(f"layer_{i}")
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        prev = [self.stem(x)]
        for layer in self.layers:
            prev.append(layer(prev))
        return self.fc(prev[-1].mean((2, 3)))


def test_the_signature_is_nnis():
    params = inspect.signature(EnasTrainer).parameters
    names = [n for n, p in params.items() if p.kind is not p.KEYWORD_ONLY]
    assert names == ["model", "loss", "metrics", "reward_function", "optimizer", "num_epochs", "dataset", "batch_size",
                     "workers", "device", "log_frequency", "grad_clip", "entropy_weight", "skip_weight",
                     "baseline_decay", "ctrl_lr", "ctrl_steps_aggregate", "ctrl_kwargs"]
    assert [params[n].default for n in names[7:]] == [64, 4, None, None, 5.0, 0.0001, 0.8, 0.999, 0.00035, 20, None]


def test_enas_trainer_fits_the_nni_model_and_exports_the_best_sample(capsys):
    torch.manual_seed(0)
    model = GeneralNetwork()
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 8, 8, generator=gen), torch.randint(3, (64,), generator=gen))
    calls = []

    def reward_function(logits, y):
        calls.append(len(y))
        return (logits.argmax(1) == y).float().mean()

    trainer = EnasTrainer(model, torch.nn.CrossEntropyLoss(), lambda o, y: {"acc": float((o.argmax(1) == y).float().mean())},
                          reward_function, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), num_epochs=3,
                          dataset=data, batch_size=8, workers=0, ctrl_steps_aggregate=2,
                          ctrl_kwargs={"lstm_size": 16, "tanh_constant": 2.5}, export_samples=5)
    assert trainer.steps == 12 and trainer.strategy.config.ctrl_steps == 2 and trainer.strategy.config.lstm_size == 16
    trainer.fit()
    arch = trainer.export()
    assert SearchSpace(model).validate(arch) == arch and set(arch) == {"layer_0", "layer_1", "layer_1_skip", "layer_2",
                                                                     "layer_2_skip"}
    assert len(calls) == 2 * 2 * 2 + 5  # 2 controller phases x 2 steps x 2 samples, then 5 export candidates
    assert len(trainer.strategy.history) == 2 and "acc" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown ctrl_kwargs key 'lstm'"):
        EnasTrainer(model, None, None, None, trainer.optimizer, 1, data, ctrl_kwargs={"lstm": 3})
