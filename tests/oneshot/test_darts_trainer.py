"""NNI's DartsTrainer signature on supernet's loop, with an NNI 2.x DARTS example model that runs
unchanged apart from its imports (NNI v2.10's DARTS example: LayerChoice per edge, InputChoice(n_chosen=2)
per node, labels shared across cells)."""
import inspect
from collections import OrderedDict

import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn  # was: import nni.retiarii.nn.pytorch as nn
from supernet import SearchSpace
from supernet.oneshot import DartsTrainer


# --- the model, written as NNI's examples/nas/oneshot/darts/model.py is -----------------------------
class PoolBN(nn.Module):
    def __init__(self, pool_type, channels, kernel_size, stride, padding):
        super().__init__()
        pool = nn.MaxPool2d if pool_type == "max" else nn.AvgPool2d
        self.pool = pool(kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(channels, affine=False)

    def forward(self, x):
        return self.bn(self.pool(x))


class SepConv(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride, padding):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_in, kernel_size, stride, padding, groups=c_in, bias=False),
                                 nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=False))

    def forward(self, x):
        return self.net(x)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x):
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1))


class Node(nn.Module):
    def __init__(self, node_id, num_prev_nodes, channels, num_downsample_connect):
        super().__init__()
        self.ops = nn.ModuleList()
        choice_keys = []
        for i in range(num_prev_nodes):
            stride = 2 if i < num_downsample_connect else 1
            choice_keys.append("{}_p{}".format(node_id, i))
            self.ops.append(nn.LayerChoice(OrderedDict([
                ("maxpool", PoolBN("max", channels, 3, stride, 1)),
                ("avgpool", PoolBN("avg", channels, 3, stride, 1)),
                ("skipconnect", nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)),
                ("sepconv3x3", SepConv(channels, channels, 3, stride, 1)),
            ]), label=choice_keys[-1]))
        self.input_switch = nn.InputChoice(n_candidates=len(choice_keys), n_chosen=2, label="{}_switch".format(node_id))

    def forward(self, prev_nodes):
        out = [op(node) for op, node in zip(self.ops, prev_nodes)]
        return self.input_switch(out)


class Cell(nn.Module):
    def __init__(self, n_nodes, channels_pp, channels_p, channels, reduction_p, reduction):
        super().__init__()
        self.reduction = reduction
        self.preproc0 = FactorizedReduce(channels_pp, channels) if reduction_p else \
            nn.Sequential(nn.ReLU(), nn.Conv2d(channels_pp, channels, 1, bias=False), nn.BatchNorm2d(channels, affine=False))
        self.preproc1 = nn.Sequential(nn.ReLU(), nn.Conv2d(channels_p, channels, 1, bias=False),
                                      nn.BatchNorm2d(channels, affine=False))
        self.mutable_ops = nn.ModuleList()
        for depth in range(2, n_nodes + 2):
            self.mutable_ops.append(Node("{}_n{}".format("reduce" if reduction else "normal", depth),
                                         depth, channels, 2 if reduction else 0))

    def forward(self, s0, s1):
        tensors = [self.preproc0(s0), self.preproc1(s1)]
        for node in self.mutable_ops:
            tensors.append(node(tensors))
        return torch.cat(tensors[2:], dim=1)


class CNN(nn.Module):
    def __init__(self, input_size, in_channels, channels, n_classes, n_layers, n_nodes=2, stem_multiplier=3):
        super().__init__()
        c_cur = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_cur, 3, 1, 1, bias=False), nn.BatchNorm2d(c_cur))
        channels_pp, channels_p, c_cur = c_cur, c_cur, channels
        self.cells = nn.ModuleList()
        reduction_p, reduction = False, False
        for i in range(n_layers):
            reduction_p, reduction = reduction, False
            if i in [n_layers // 3, 2 * n_layers // 3]:
                c_cur *= 2
                reduction = True
            cell = Cell(n_nodes, channels_pp, channels_p, c_cur, reduction_p, reduction)
            self.cells.append(cell)
            c_cur_out = c_cur * n_nodes
            channels_pp, channels_p = channels_p, c_cur_out
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels_p, n_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.linear(self.gap(s1).view(s1.size(0), -1))
# ------------------------------------------------------------------------------------------------------


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float(), y)


def accuracy(logits, y):
    return {"acc": (logits.argmax(1) == y).float().mean().item()}


def test_nni_signature_and_an_nni_darts_model_trains_and_exports():
    params = list(inspect.signature(DartsTrainer).parameters)
    assert params[:14] == ["model", "loss", "metrics", "optimizer", "num_epochs", "dataset", "grad_clip",
                           "learning_rate", "batch_size", "workers", "device", "log_frequency",
                           "arc_learning_rate", "unrolled"]
    torch.manual_seed(0)
    model = CNN(8, 3, 4, 3, n_layers=3)
    space = SearchSpace(model)
    assert "normal_n2_p0" in space.labels and len(space.choices("normal_n2_p0")) == 1  # 3 layers: one normal cell
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    for unrolled in (False, True):
        trainer = DartsTrainer(model, loss=torch.nn.CrossEntropyLoss(), metrics=accuracy, optimizer=optimizer,
                               num_epochs=1, dataset=_data(), batch_size=8, workers=0, log_frequency=2,
                               unrolled=unrolled)
        trainer.fit()
        assert trainer.steps == 4  # 64 images, half of them for the weights, batch 8
        arch = trainer.export()
        assert space.validate(arch) == arch
        assert len(arch["normal_n3_switch"]) == 2 and arch["normal_n3_switch"] == sorted(arch["normal_n3_switch"])
        alpha = dict(zip(trainer.strategy.learned, trainer.strategy.alpha))
        assert "normal_n3_switch" in alpha  # NNI's rule: the node's InputChoice has its own α
        top2 = sorted(alpha["normal_n3_switch"].topk(2).indices.tolist())
        assert arch["normal_n3_switch"] == top2


def test_grad_clip_is_honoured_and_learning_rate_is_ignored_as_in_nni_with_one_warning():
    torch.manual_seed(0)
    model = CNN(8, 3, 4, 3, n_layers=3)
    w0 = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), 0.1)
    DartsTrainer(model, torch.nn.CrossEntropyLoss(), None, optimizer, 1, _data(16), grad_clip=1e-3,
                 batch_size=8, workers=0).fit()  # one step: the update is lr * the clipped gradient
    moved = torch.cat([(p.detach() - w).reshape(-1) for p, w in zip(model.parameters(), w0)]).norm()
    assert 0 < moved <= 0.1 * 1e-3 * 1.0001
    with pytest.warns(UserWarning, match=r"learning_rate=0.5 is ignored, as in NNI; the optimizer's LR 0.1") as w:
        DartsTrainer(model, torch.nn.CrossEntropyLoss(), None, optimizer, 1, _data(16), learning_rate=0.5)
    assert len(w) == 1 and w[0].filename == __file__  # one warning, at the script's line
