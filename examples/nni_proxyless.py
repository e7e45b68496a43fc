"""ProxylessNAS as an NNI 2.x script: only the two imports marked "was:" differ from NNI.

    python examples/nni_proxyless.py         # a few seconds on 2 CPU cores; --epochs 30 learns more

The same 18-architecture supernet as ``nni_spos.py``: binary gates over softmax(α) train one path
per step on one half of scikit-learn's digits and α on the other, with a latency term. NNI
predicted latency with nn-Meter; here ``applied_hardware="torch"`` times every candidate on this
CPU first (a latency table file from ``supernet latency`` works too), and the latency term reaches
α (NNI's did not). ``export()`` returns the strongest candidate of each choice.
"""
import argparse

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn                  # was: import nni.retiarii.nn.pytorch as nn
from supernet.oneshot import ProxylessTrainer     # was: from nni.retiarii.oneshot.pytorch import ProxylessTrainer


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
    dataset, _ = digits()  # Proxyless splits it in two halves itself: one for the weights, one for α
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    trainer = ProxylessTrainer(model, loss=nn.CrossEntropyLoss(), metrics=accuracy, optimizer=optimizer,
                               num_epochs=epochs, dataset=dataset, batch_size=64, workers=0, log_frequency=10,
                               grad_reg_loss_type="add#linear", grad_reg_loss_params={"lambda": 0.1},
                               applied_hardware="torch", dummy_input=(1, 1, 8, 8),
                               ref_latency=0.1)  # LAT_ref in ms: this whole net takes about that on a CPU
    trainer.fit()
    arch = trainer.export()
    print("Final architecture:", arch)
    return arch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    main(parser.parse_args().epochs)
