"""NNI's ProxylessTrainer signature on our loop (InputChoice included, a measured latency table), and
the FBNet trainer in the same style."""
import inspect
import re

import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn
from supernet import SearchSpace
from supernet.oneshot import FBNetTrainer, ProxylessTrainer


class Net(nn.Module):
    def __init__(self, skip=True):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        conv = lambda k: nn.Sequential(nn.Conv2d(8, 8, k, padding=k // 2), nn.BatchNorm2d(8), nn.ReLU())  # noqa: E731
        self.op1 = nn.LayerChoice([conv(3), conv(5), nn.Identity()], label="op1")
        self.op2 = nn.LayerChoice([conv(3), conv(5)], label="op2")
        self.skip = nn.InputChoice(2, 1, label="skip") if skip else None
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        a = self.op1(self.stem(x))
        b = self.op2(a)
        c = self.skip([a, b]) if self.skip is not None else b
        return self.fc(c.mean((2, 3)))


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float(), y)


def accuracy(logits, y):
    return {"acc": (logits.argmax(1) == y).float().mean().item()}


def test_proxyless_trainer_has_nni_signature_trains_with_a_measured_table_and_exports_the_argmax():
    params = list(inspect.signature(ProxylessTrainer).parameters)
    assert params[:17] == ["model", "loss", "metrics", "optimizer", "num_epochs", "dataset", "warmup_epochs",
                           "batch_size", "workers", "device", "log_frequency", "arc_learning_rate",
                           "grad_reg_loss_type", "grad_reg_loss_params", "applied_hardware", "dummy_input",
                           "ref_latency"]
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
    common = dict(loss=torch.nn.CrossEntropyLoss(), metrics=accuracy, optimizer=opt, num_epochs=2, dataset=_data(),
                  batch_size=8, workers=0, dummy_input=(1, 3, 8, 8))
    with pytest.raises(ValueError, match="cannot be served.*torch, torch-cpu, torch-cuda, onnxruntime"):
        ProxylessTrainer(model, **common, grad_reg_loss_type="mul#log", applied_hardware="cortexA76cpu_tflite21")
    with pytest.raises(ValueError, match="grad_reg_loss_type must be one of mul#log, add#linear or None, got 'mul'"):
        ProxylessTrainer(model, **common, grad_reg_loss_type="mul", applied_hardware="torch")
    with pytest.raises(ValueError, match="ref_latency must be the reference latency in ms"):
        ProxylessTrainer(model, **common, grad_reg_loss_type="add#linear", applied_hardware="torch", ref_latency=None)
    trainer = ProxylessTrainer(model, **common, warmup_epochs=1, grad_reg_loss_type="add#linear",
                               applied_hardware="torch", ref_latency=0.05)
    table = trainer.strategy.table
    assert table.target["backend"] == "torch" and all(ms > 0 for _, e, _ in table.groups for ms in e.values())
    trainer.fit()
    assert trainer.steps == 8  # 64 images, half for the weights, batch 8
    arch = trainer.export()
    space = SearchSpace(model)
    assert space.validate(arch) == arch
    alpha = dict(zip(trainer.strategy.labels, trainer.strategy.alpha))
    assert arch == {"op1": int(alpha["op1"].argmax()), "op2": int(alpha["op2"].argmax()),
                    "skip": [int(alpha["skip"].argmax())]}
    assert alpha["skip"].detach().abs().max() > 2e-3  # the InputChoice's α moved (NNI raised NotImplementedError)

    torch.manual_seed(0)
    plain = Net(skip=False)
    fb = FBNetTrainer(plain, loss=torch.nn.CrossEntropyLoss(), metrics=accuracy,
                      optimizer=torch.optim.SGD(plain.parameters(), 0.05), num_epochs=2, dataset=_data(), batch_size=8,
                      workers=0, latency_table="torch", dummy_input=(1, 3, 8, 8))
    fb.fit()
    theta = dict(zip(fb.strategy.labels, fb.strategy.theta))
    assert fb.export() == {label: int(t.argmax()) for label, t in theta.items()}
    assert fb.strategy.tau == pytest.approx(5.0 * 0.956)  # 12 steps of 6 per epoch: one decay so far


@pytest.mark.parametrize("kwargs, ignored, loss", [
    (dict(grad_reg_loss_type="add#linear"), "grad_reg_loss_type='add#linear' without applied_hardware is ignored",
     None),
    (dict(applied_hardware="torch"), "applied_hardware='torch' without grad_reg_loss_type is ignored", None),
    (dict(grad_reg_loss_type="add#linear", grad_reg_loss_params={"lambda": 0.1, "beta": 1}, applied_hardware="torch",
          ref_latency=0.05), "grad_reg_loss_params 'beta' is ignored", "add#linear"),
])
def test_what_nni_accepted_and_ignored_is_ignored_with_one_warning_saying_how_to_turn_it_on(kwargs, ignored, loss):
    model = Net()
    with pytest.warns(UserWarning, match=re.escape(ignored) + ", as in NNI; ") as w:
        trainer = ProxylessTrainer(model, torch.nn.CrossEntropyLoss(), accuracy,
                                   torch.optim.SGD(model.parameters(), 0.05), 1, _data(), batch_size=8, workers=0,
                                   dummy_input=(1, 3, 8, 8), **kwargs)
    assert len(w) == 1 and w[0].filename == __file__  # one line, at the script's call
    assert trainer.strategy.config.latency_loss == loss and (trainer.strategy.table is None) == (loss is None)
    if loss:
        assert trainer.strategy.config.latency_lambda == 0.1
