"""NNI 2.x's example scripts run unchanged but for their imports: their trainer calls, copied with
the examples' default arguments (``examples/nas/oneshot/{proxylessnas/main.py, darts/search.py,
enas/search.py}`` at NNI v2.10), on a small model and data; only ``num_epochs`` is cut to a couple
of steps. Where NNI accepted an argument and ignored it, the run says so in one warning."""
import json
import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn  # in place of: import nni.retiarii.nn.pytorch as nn
from supernet import SearchSpace
from supernet.oneshot import DartsTrainer, EnasTrainer, ProxylessTrainer  # in place of nni.retiarii.oneshot.pytorch


class SearchNet(nn.Module):
    """A stand-in for the examples' supernets: LayerChoices and an InputChoice, 10 classes."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.op1 = nn.LayerChoice([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2), nn.Identity()])
        self.op2 = nn.LayerChoice([nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 1, 1)])
        self.skip = nn.InputChoice(n_candidates=2, n_chosen=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        a = self.op1(torch.relu(self.stem(x)))
        return self.fc(self.skip([a, self.op2(a)]).mean((2, 3)))


class LabelSmoothingLoss(torch.nn.Module):  # the example's putils.LabelSmoothingLoss, in short
    def forward(self, pred, target):
        return torch.nn.functional.cross_entropy(pred, target, label_smoothing=0.1)


def accuracy(output, target, topk=(1,)):  # the examples' utils.accuracy: a dict of top-k accuracies
    pred = output.topk(max(topk), 1).indices
    return {f"acc{k}": (pred[:, :k] == target[:, None]).any(1).float().mean().item() for k in topk}


def reward_accuracy(output, target, topk=(1,)):
    return (output.argmax(1) == target).float().mean().item()


def dataset(n=128):  # 64 images per half: one step per epoch at the examples' batch size 64
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1) / 5, y)


def test_the_proxylessnas_example_runs_with_its_defaults_without_a_latency_term(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = SearchNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    # main.py's argparse defaults: --grad_reg_loss_type add#linear, --grad_reg_loss_lambda 0.1,
    # --applied_hardware None, --reference_latency None
    grad_reg_loss_params = {'lambda': 1e-1}
    with pytest.warns(UserWarning) as w:
        trainer = ProxylessTrainer(model,
                                   loss=LabelSmoothingLoss(),
                                   dataset=dataset(),
                                   optimizer=optimizer,
                                   metrics=lambda output, target: accuracy(output, target, topk=(1, 5,)),
                                   num_epochs=2,  # the example: 120
                                   log_frequency=10,
                                   grad_reg_loss_type='add#linear',
                                   grad_reg_loss_params=grad_reg_loss_params,
                                   applied_hardware=None, dummy_input=(1, 3, 224, 224),
                                   ref_latency=None)
    assert [str(m.message) for m in w] == [
        "ProxylessTrainer: grad_reg_loss_type='add#linear' without applied_hardware is ignored, as in NNI; training "
        "has no latency term; pass applied_hardware (a latency table file, or 'torch' to measure one) to add it"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ProxylessTrainer")  # said once, not again while it trains
        trainer.fit()
    print('Final architecture:', trainer.export())
    json.dump(trainer.export(), open('checkpoint.json', 'w'))
    arch = json.load(open('checkpoint.json'))
    assert SearchSpace(model).validate(arch) == arch and trainer.steps == 2
    assert trainer.strategy.latency is None  # trained as NNI did: cross-entropy only


def test_the_darts_example_runs():
    torch.manual_seed(0)
    model = SearchNet()
    criterion = torch.nn.CrossEntropyLoss()
    optim = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3.0E-4)
    trainer = DartsTrainer(
        model=model,
        loss=criterion,
        metrics=lambda output, target: accuracy(output, target, topk=(1,)),
        optimizer=optim,
        num_epochs=2,  # the example: 50
        dataset=dataset(),
        batch_size=64,
        log_frequency=10,
        unrolled=False
    )
    trainer.fit()
    final_architecture = trainer.export()
    assert SearchSpace(model).validate(final_architecture) == final_architecture


def test_the_enas_example_runs():
    torch.manual_seed(0)
    model = SearchNet()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=1.0E-4)
    ctrl_kwargs = {"tanh_constant": 1.1}
    trainer = EnasTrainer(model,
                          loss=criterion,
                          metrics=accuracy,
                          reward_function=reward_accuracy,
                          optimizer=optimizer,
                          batch_size=64,
                          num_epochs=2,  # the example: 310 (macro) or 150 (micro)
                          dataset=dataset(),
                          log_frequency=10,
                          ctrl_kwargs=ctrl_kwargs)
    trainer.fit()
    arch = trainer.export()
    assert SearchSpace(model).validate(arch) == arch
