"""DARTS as an NNI 2.x script: only the two imports marked "was:" differ from NNI.

    python examples/nni_darts.py             # a few seconds on 2 CPU cores; --epochs 30 learns more

The same 18-architecture supernet as ``nni_spos.py``, every candidate mixed by softmax(α): the
weights train on one half of scikit-learn's digits and α on the other, and ``export()`` derives
the architecture from α (the strongest op of each LayerChoice, the strongest input of the
InputChoice).
"""
import argparse

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn                  # was: import nni.retiarii.nn.pytorch as nn
from supernet.oneshot import DartsTrainer         # was: from nni.retiarii.oneshot.pytorch import DartsTrainer


def conv(kernel, c_in=16):
    return nn.Sequential(nn.Conv2d(c_in, 16, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(16), nn.ReLU())


class Net(nn.Module):
    """Two searched layers and a searched skip: 3 x 3 x 2 = 18 architectures."""

    def __init__(self):
        super().__init__()
        self.stem = conv(3, c_in=1)  # digits are greyscale
        self.layer1 = nn.LayerChoice([conv(3), conv(5), nn.Identity()], label="layer1")
        self.layer2 = nn.LayerChoice([conv(3), conv(5), nn.MaxPool2d(3, 1, 1)], label="layer2")
        self.skip = nn.InputChoice(n_candidates=2, n_chosen=1, label="skip")  # which feature map to add back
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        return self.head(self.layer2(x1) + self.skip([x0, x1]))


def digits():
    """scikit-learn's 1,797 8x8 digits as (train, valid) TensorDatasets, 80/20."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, valid = order[:1440], order[1440:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[valid], y[valid])


def accuracy(output, target):
    return {"acc1": (output.argmax(1) == target).float().mean().item()}


def main(epochs=5):
    torch.manual_seed(0)
    model = Net()
    dataset, _ = digits()  # DARTS splits it in two halves itself: one for the weights, one for α
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    trainer = DartsTrainer(model=model, loss=nn.CrossEntropyLoss(), metrics=accuracy, optimizer=optimizer,
                           num_epochs=epochs, dataset=dataset, batch_size=64, workers=0, log_frequency=10,
                           arc_learning_rate=3e-3, unrolled=False)
    trainer.fit()
    arch = trainer.export()
    print("Final architecture:", arch)
    return arch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    main(parser.parse_args().epochs)
