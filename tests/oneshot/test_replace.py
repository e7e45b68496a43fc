import torch
from torch import nn

from supernet.nn import Choice, InputChoice, LayerChoice
from supernet.oneshot.utils import replace_input_choice, replace_layer_choice


class Net(nn.Module):
    """Choices at the top, in a Sequential, in a plain block, nested in a candidate, and a shared label."""

    def __init__(self):
        super().__init__()
        self.first = LayerChoice([nn.Linear(4, 4), nn.Identity()], label="a")
        self.seq = nn.Sequential(nn.ReLU(), LayerChoice([nn.Tanh(), nn.Identity()], label="b"))
        self.block = nn.Module()
        self.block.inner = nn.ModuleDict({"again": LayerChoice([nn.Identity(), nn.ReLU()], label="a")})
        inner = LayerChoice([nn.Identity(), nn.Tanh()], label="nested")
        self.outer = LayerChoice([nn.Sequential(inner, InputChoice(2, 1, label="in_candidate")), nn.Identity()],
                                 label="outer")
        self.skip = InputChoice(2, None, label="skip")


class Mixed(nn.Module):
    """What an NNI DARTS script builds from a choice: its own alpha and a softmax-weighted sum."""

    def __init__(self, choice):
        super().__init__()
        self.ops = nn.ModuleList(choice[i] for i in range(len(choice)))
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(choice)))

    def forward(self, x):
        w = self.alpha.softmax(-1)
        return sum(w[i] * op(x) for i, op in enumerate(self.ops))


def test_replace_layer_choice_swaps_each_choice_on_its_parent_in_module_order():
    net = Net()
    seen = []
    out = replace_layer_choice(net, lambda c: seen.append(c) or Mixed(c))
    assert [label for label, _ in out] == ["a", "b", "a", "outer"]  # the shared label twice, as in NNI
    assert out[0][1] is net.first and out[1][1] is net.seq[1] and out[2][1] is net.block.inner["again"]
    assert out[3][1] is net.outer and all(isinstance(m, Mixed) for _, m in out)
    assert [c.label for c in seen] == ["a", "b", "a", "outer"]
    # Not searched below a replaced module: the choice inside outer's candidate is left alone.
    assert isinstance(net.outer.ops[0][0], LayerChoice) and net.outer.ops[0][0].label == "nested"
    assert isinstance(net.skip, InputChoice)  # other kinds are untouched
    assert net.first(torch.ones(1, 4)).shape == (1, 4)


def test_replace_input_choice_finds_choices_inside_layer_choice_candidates():
    net = Net()
    found = replace_input_choice(net, lambda c: nn.Identity())
    assert [label for label, _ in found] == ["in_candidate", "skip"]
    assert isinstance(net.outer[0][1], nn.Identity) and isinstance(net.skip, nn.Identity)
    assert isinstance(net.outer, LayerChoice)


def test_modules_argument_is_appended_to_and_returned():
    net = Net()
    modules = [("earlier", nn.Identity())]
    out = replace_input_choice(net, lambda c: nn.Identity(), modules)
    assert out is modules and [label for label, _ in modules] == ["earlier", "in_candidate", "skip"]
    assert replace_layer_choice(nn.Linear(2, 2), lambda c: nn.Identity()) == []


def test_root_choice_is_not_replaced():
    root = LayerChoice([nn.Identity(), LayerChoice([nn.Identity()], label="child")], label="root")
    out = replace_layer_choice(root, lambda c: nn.Identity())
    assert [label for label, _ in out] == ["child"] and isinstance(root, LayerChoice)


def test_a_replaced_model_trains_its_own_alphas_with_no_choice_left():
    torch.manual_seed(0)
    model = nn.Sequential(LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4)], label="x"), nn.ReLU(),
                          LayerChoice([nn.Linear(4, 2), nn.Linear(4, 2)], label="y"))
    mixed = replace_layer_choice(model, Mixed)
    assert not any(isinstance(m, Choice) for m in model.modules())
    model(torch.randn(3, 4)).sum().backward()
    assert all(m.alpha.grad is not None and m.alpha.grad.abs().sum() > 0 for _, m in mixed)
