"""SPOS as an NNI 2.x script: only the two imports marked "was:" differ from NNI.

    python examples/nni_spos.py              # a few seconds on 2 CPU cores; --epochs 30 learns more

A supernet with two LayerChoices and an InputChoice (18 architectures) is trained one random
path per step on scikit-learn's handwritten digits; ``export()`` then runs the SPOS evolutionary
search on the validation images (NNI returned one random path) and returns the best one.
"""
import argparse

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn                  # was: import nni.retiarii.nn.pytorch as nn
from supernet.oneshot import SinglePathTrainer    # was: from nni.retiarii.oneshot.pytorch import SinglePathTrainer


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
    dataset_train, dataset_valid = digits()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5)
    trainer = SinglePathTrainer(model, nn.CrossEntropyLoss(), accuracy, optimizer, epochs, dataset_train, dataset_valid,
                                batch_size=64, workers=0, log_frequency=10)
    trainer.fit()
    arch = trainer.export()
    print("Final architecture:", arch)
    return arch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    main(parser.parse_args().epochs)
