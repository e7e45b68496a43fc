"""The cost model on spaces of every conv kind (1-3d, transposed, grouped) and Linear, against
FlopCounterMode; a layer whose MACs it cannot know is refused, never counted as zero."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from supernet import LayerChoice, SearchSpace, fix
from supernet.cost import CostModel


def _space(conv, dims, c=8):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv(3, c, 3, padding=1)
            self.a = LayerChoice([conv(c, c, 3, padding=1), conv(c, c, 5, padding=2), conv(c, c, 3, padding=1, groups=c),
                                  nn.Identity()], label="a")
            self.b = LayerChoice([conv(c, c, 1), nn.Sequential(conv(c, 2 * c, 3, padding=1), nn.ReLU(), conv(2 * c, c, 1))],
                                 label="b")
            self.head = nn.Linear(c, 5)

        def forward(self, x):
            x = self.b(self.a(self.stem(x)))
            return self.head(x.mean(tuple(range(2, 2 + dims))))
    return Net()


@pytest.mark.parametrize("conv, shape", [(nn.Conv1d, (3, 40)), (nn.Conv2d, (3, 12, 12)), (nn.Conv3d, (3, 6, 6, 6)),
                                         (nn.ConvTranspose1d, (3, 40)), (nn.ConvTranspose2d, (3, 12, 12)),
                                         (nn.ConvTranspose3d, (3, 6, 6, 6))])
def test_every_conv_kind_is_counted_exactly(conv, shape):
    torch.manual_seed(0)
    model = _space(conv, len(shape) - 1)
    cost = CostModel(model, input_shape=shape)
    space = SearchSpace(model)
    for arch in space:
        fixed = fix(model, arch).eval()
        with FlopCounterMode(display=False) as counter:
            fixed(torch.zeros(1, *shape))
        assert cost.cost(arch) == (counter.get_total_flops() // 2, sum(p.numel() for p in fixed.parameters())), arch


def test_the_conv1d_space_of_the_issue_is_not_undercounted():
    """Tried as a new user would: Conv1d blocks were counted as zero (12,800 against 1,084,160)."""
    model = nn.Sequential(nn.Conv1d(1, 64, 5, padding=2),
                          LayerChoice([nn.Conv1d(64, 64, 3, padding=1), nn.Conv1d(64, 64, 5, padding=2)], label="k"),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 10))
    cost = CostModel(model, input_shape=(1, 100))
    assert cost.flops({"k": 0}) == 100 * 64 * 5 + 100 * 64 * 64 * 3 + 64 * 10
    assert cost.flops({"k": 1}) == 100 * 64 * 5 + 100 * 64 * 64 * 5 + 64 * 10


class Scale(nn.Module):  # a user's layer with a weight: its MACs are unknown to the cost model
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x):
        return x * self.weight


class Bi(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bi = nn.Bilinear(c, c, c)

    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        return self.bi(y, y).permute(0, 3, 1, 2)


@pytest.mark.parametrize("layer, name", [(Scale, r"1\.candidates\.1 \(Scale\)"), (Bi, r"1\.candidates\.1\.bi \(Bilinear\)")])
def test_a_layer_of_unknown_cost_is_refused_by_name(layer, name):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), LayerChoice([nn.Conv2d(8, 8, 3, padding=1), layer(8)], label="a"),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(NotImplementedError, match="cannot count the multiply-accumulates of " + name):
        CostModel(model, input_shape=(3, 8, 8))
