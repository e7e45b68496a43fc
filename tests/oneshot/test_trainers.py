"""NNI 2.x scripts port by changing imports: the legacy trainer signature on supernet's loop."""
import inspect

import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn  # in place of: import nni.retiarii.nn.pytorch as nn
from supernet import SearchSpace
from supernet.search.config import SearchConfig
from supernet.oneshot import BaseOneShotTrainer, SinglePathTrainer


class Net(nn.Module):  # an NNI-style space: unlabelled choices, NNI's InputChoice order
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.LayerChoice([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2), nn.Identity()])
        self.b = nn.LayerChoice(dict(conv=nn.Conv2d(8, 8, 1), pool=nn.AvgPool2d(3, 1, 1)))
        self.skip = nn.InputChoice(2, 1, "sum")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.b(self.a(x))
        return self.head(self.skip([x, y]).mean((2, 3)))


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1), y)


def accuracy(logits, y):
    return {"acc": (logits.argmax(1) == y).float().mean().item()}


def test_nni_signature_and_semantics():
    sig = inspect.signature(SinglePathTrainer).parameters
    assert list(sig)[:11] == ["model", "loss", "metrics", "optimizer", "num_epochs", "dataset_train", "dataset_valid",
                              "batch_size", "workers", "device", "log_frequency"]  # NNI 2.x's positional order
    assert sig["mutator"].kind is inspect.Parameter.KEYWORD_ONLY  # NNI 1.x's, by keyword only
    assert issubclass(SinglePathTrainer, BaseOneShotTrainer)
    with pytest.raises(TypeError):
        BaseOneShotTrainer()  # abstract: fit() and export()


def test_single_path_trainer_trains_on_the_loop_and_exports_the_best_searched_arch(capsys):
    torch.manual_seed(0)
    model = Net()
    labels = SearchSpace(model).labels
    assert len(set(labels)) == 3 and all(label.split("_")[0] in ("layerchoice", "inputchoice") for label in labels)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SinglePathTrainer(model, torch.nn.CrossEntropyLoss(), accuracy,
                                torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), num_epochs=2,
                                dataset_train=data(128, 0), dataset_valid=data(64, 1), batch_size=32, workers=0,
                                device="cpu", log_frequency=2,
                                search=SearchConfig(population=6, generations=2, topk=3, mutations=3, crossovers=3,
                                                    recal_batches=2, recal_batch_size=16, progress=False))
    trainer.fit()
    out = capsys.readouterr().out
    assert "acc " in out and "loss " in out  # NNI's metrics, logged by the loop every log_frequency steps
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    arch = trainer.export()
    assert SearchSpace(model).validate(arch) == arch == trainer.result["arch"]
    assert trainer.result["evaluated"] >= 6


def test_an_nsga2_search_exports_its_front_and_its_lowest_error_member():
    torch.manual_seed(0)
    model = Net()
    search = dict(population=6, generations=2, mutations=3, crossovers=3, recal_batches=2, recal_batch_size=16,
                  progress=False)
    trainer = SinglePathTrainer(model, torch.nn.CrossEntropyLoss(), None, torch.optim.SGD(model.parameters(), lr=0.05),
                                num_epochs=1, dataset_train=data(64, 0), dataset_valid=data(32, 1), batch_size=32,
                                workers=0, device="cpu",
                                search=SearchConfig(algorithm="nsga2", objectives=["error", "flops"], **search))
    trainer.fit()
    front = trainer.export_front()
    assert front and [m["top1_err"] for m in front] == sorted(m["top1_err"] for m in front)
    assert all(set(m) >= {"arch", "top1", "top1_err", "costs"} and "flops" in m["costs"] for m in front)
    assert trainer.export() == front[0]["arch"] == trainer.result["arch"]
    trainer.search = SearchConfig(**search)
    with pytest.raises(ValueError, match=r"export_front\(\) needs a multi-objective search, and this trainer's is "
                                         r"algorithm='evolution'"):
        trainer.export_front()


def test_refuses_an_nni_mutator():
    model = Net()
    with pytest.raises(ValueError, match="mutator is NNI 1.x's"):
        SinglePathTrainer(model, torch.nn.CrossEntropyLoss(), None, torch.optim.SGD(model.parameters(), lr=0.1), 1,
                          data(32, 0), data(8, 1), mutator=object())
