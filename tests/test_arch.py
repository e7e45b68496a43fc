import json
import random

import pytest
import torch
from torch import nn

from supernet import ArchError, InputChoice, LayerChoice, SearchSpace, fix, parse_arch
from supernet.nn import Choice


class Cell(nn.Module):
    """A toy space with every kind of choice and a label used twice."""

    def __init__(self):
        super().__init__()
        self.a = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4), nn.Identity()], label="op")
        self.b = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4), nn.Tanh()], label="op")  # shared decision
        self.c = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.inp = InputChoice(3, 2, label="skip")

    def forward(self, x):
        h = self.a(x)
        return self.inp([h, self.b(h), self.c(x)])


def test_space_lists_labels_options_and_exact_size():
    space = SearchSpace(Cell())
    assert space.labels == ["op", "act", "skip"]
    assert [space.count(l) for l in space.labels] == [3, 2, 3]
    assert space.size == 18 == len(list(space))


def test_shared_label_is_one_decision():
    model = Cell()
    space = SearchSpace(model)
    space.activate({"op": 1, "act": 0, "skip": [0, 1]})
    assert model.a.active == model.b.active == 1


def test_shared_label_with_different_sizes_is_refused():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = LayerChoice([nn.Identity(), nn.Identity()], label="x")
            self.b = LayerChoice([nn.Identity()] * 3, label="x")
    with pytest.raises(ValueError, match="label 'x' is used by choices of different kinds or sizes"):
        SearchSpace(Bad())


def test_sample_is_a_function_of_the_generator_only():
    space = SearchSpace(Cell())
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert space.sample(g1) == space.sample(g2)
    seen = {json.dumps(space.sample(random.Random(s)), sort_keys=True) for s in range(300)}
    assert len(seen) == space.size  # uniform sampling reaches every architecture
    for s in range(50):
        space.validate(space.sample(torch.Generator().manual_seed(s)))


def test_architecture_round_trips_through_json():
    space = SearchSpace(Cell())
    for arch in space:
        assert space.validate(json.loads(json.dumps(arch))) == arch
        assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("arch, message", [
    ({"op": 0, "act": 0, "skip": [0, 1], "nope": 1}, r"unknown label\(s\) 'nope'; valid labels: op: 0..2; act: 0..1; skip: 2 distinct of 0..2"),
    ({"op": 0, "skip": [0, 1]}, r"missing label\(s\) 'act'; valid labels: op: 0..2"),
    ({"op": 3, "act": 0, "skip": [0, 1]}, r"label 'op' index 3 is out of range; valid: 0..2"),
    ({"op": -1, "act": 0, "skip": [0, 1]}, r"label 'op' index -1 is out of range"),
    ({"op": "1", "act": 0, "skip": [0, 1]}, r"label 'op' takes an integer index in 0..2, got '1' \(str\)"),
    ({"op": True, "act": 0, "skip": [0, 1]}, r"label 'op' takes an integer index in 0..2, got True \(bool\)"),
    ({"op": 1.0, "act": 0, "skip": [0, 1]}, r"got 1.0 \(float\)"),
    ({"op": 0, "act": 0, "skip": [0]}, r"label 'skip' takes 2 distinct indices in 0..2, got \[0\]"),
    ({"op": 0, "act": 0, "skip": [1, 1]}, r"label 'skip' takes 2 distinct indices"),
    ({"op": 0, "act": 0, "skip": 1}, r"label 'skip' takes a list of 2 input indices"),
    ([0, 1], r"must be a dict from label to index, got list"),
])
def test_validate_names_the_problem_and_the_valid_values(arch, message):
    with pytest.raises(ArchError, match=message):
        SearchSpace(Cell()).validate(arch)


def test_activation_without_a_decision_raises_naming_the_label():
    with pytest.raises(RuntimeError, match="LayerChoice 'op' has no active option"):
        Cell()(torch.randn(1, 4))


def test_fix_keeps_only_the_chosen_ops_and_matches_the_supernet():
    model = Cell().eval()
    space = SearchSpace(model)
    x = torch.randn(5, 4)
    for arch in space:
        space.activate(arch)
        expected = model(x)
        fixed = fix(model, arch)
        assert not any(isinstance(m, Choice) for m in fixed.modules())
        assert torch.allclose(fixed(x), expected)
        assert sum(p.numel() for p in fixed.parameters()) < sum(p.numel() for p in model.parameters())
    space.deactivate()
    fix(model, arch)
    assert model.a.active is None  # fix leaves the supernet's own decisions alone


def test_fix_with_init_gives_fresh_weights():
    model = Cell()
    arch = {"op": 0, "act": 0, "skip": [0, 1]}
    copied, fresh = fix(model, arch), fix(model, arch, weights="init")
    assert torch.equal(copied.a.weight, model.a[0].weight)
    assert not torch.equal(fresh.a.weight, model.a[0].weight)
    copied.a.weight.data.add_(1)
    assert not torch.equal(copied.a.weight, model.a[0].weight)  # no storage shared with the supernet


def test_parse_arch_accepts_json_strings_files_lists_and_wrapped_results(tmp_path):
    space = SearchSpace(Cell())
    arch = {"op": 2, "act": 1, "skip": [0, 2]}
    assert parse_arch(json.dumps(arch), space) == arch
    assert parse_arch([2, 1, [0, 2]], space) == arch
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"arch": arch, "score": 0.9}))
    assert parse_arch(path, space) == arch
    with pytest.raises(ArchError, match="neither a JSON string nor an existing file"):
        parse_arch("missing.json", space)
    with pytest.raises(ArchError, match="needs 3 values"):
        parse_arch([1, 1], space)


def test_nni_legacy_format():
    space = SearchSpace(Cell())
    legacy = {"LayerChoice1": [False, False, True], "LayerChoice2": [False, True], "InputChoice3": [True, False, True]}
    assert parse_arch(legacy, space) == {"op": 2, "act": 1, "skip": [0, 2]}
    with pytest.raises(ArchError, match="must be a list of 3 booleans.*different space"):
        parse_arch({**legacy, "LayerChoice1": [False, True, False, False]}, space)
    with pytest.raises(ArchError, match="has 4 choices .* but the space has 3 .*different space"):
        parse_arch({**legacy, "LayerChoice4": [True, False]}, space)
    with pytest.raises(ArchError, match="'InputChoice2' is not a LayerChoice.*different space"):
        parse_arch({"LayerChoice1": [True, False, False], "InputChoice2": [True, False], "LayerChoice3": [True, True, False]}, space)


def test_nni3_format_by_value():
    space = SearchSpace(Cell())
    assert parse_arch({"op": 1, "act": "tanh", "skip": [0, 1]}, space) == {"op": 1, "act": 1, "skip": [0, 1]}
    with pytest.raises(ArchError, match="label 'act' takes an integer index"):
        parse_arch({"op": 1, "act": "gelu", "skip": [0, 1]}, space)
