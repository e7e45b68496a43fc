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


class Macro(nn.Module):
    """ENAS-macro-like: each layer adds any subset of the earlier outputs (maybe none)."""

    def __init__(self):
        super().__init__()
        self.op = LayerChoice([nn.Linear(4, 4), nn.Tanh()], label="op")
        self.skip = InputChoice(3, n_chosen=None, label="skip")

    def forward(self, x):
        h = self.op(x)
        return h + self.skip([x, x * 2, torch.tanh(x)])


def test_any_subset_input_choice_is_a_full_decision():
    space = SearchSpace(Macro())
    assert space.count("skip") == 8 and space.size == 16 == len(list(space))
    assert space.describe() == "op: 0..1; skip: any subset of 0..2"
    assert [a["skip"] for a in space if a["op"] == 0] == [[], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]
    for arch in space:
        assert space.validate(json.loads(json.dumps(arch))) == arch
        assert space.decode(space.encode(arch)) == arch
    assert space.validate({"op": 0, "skip": [2, 0]}) == {"op": 0, "skip": [0, 2]}


@pytest.mark.parametrize("skip, message", [
    ([1, 1], r"label 'skip' takes any number of distinct indices in 0..2, got \[1, 1\]"),
    ([0, 3], r"label 'skip' takes any number of distinct indices in 0..2, got \[0, 3\]"),
    (1, r"label 'skip' takes a list of any number of input indices, got 1 \(int\)"),
    ([True], r"label 'skip' takes a list of any number of input indices"),
])
def test_any_subset_validation_names_the_problem(skip, message):
    with pytest.raises(ArchError, match=message):
        SearchSpace(Macro()).validate({"op": 0, "skip": skip})


def test_any_subset_sampling_is_uniform_and_a_function_of_the_seed():
    space = SearchSpace(Macro())
    for make in (random.Random, lambda s: torch.Generator().manual_seed(s)):
        assert space.sample_label("skip", make(5)) == space.sample_label("skip", make(5))
        rng = make(0)
        counts = {}
        for _ in range(4000):
            key = tuple(space.sample_label("skip", rng))
            counts[key] = counts.get(key, 0) + 1
        assert len(counts) == 8 and all(400 < c < 600 for c in counts.values()), counts  # 500 each


def test_any_subset_fix_matches_the_supernet():
    model = Macro().eval()
    space = SearchSpace(model)
    x = torch.randn(3, 4)
    for arch in space:
        space.activate(arch)
        assert torch.allclose(fix(model, arch)(x), model(x))


def test_nni_legacy_any_subset_takes_several_or_no_inputs():
    space = SearchSpace(Macro())
    assert parse_arch({"LayerChoice1": [True, False], "InputChoice2": [True, False, True]}, space) == {"op": 0, "skip": [0, 2]}
    assert parse_arch({"LayerChoice1": [False, True], "InputChoice2": [False] * 3}, space) == {"op": 1, "skip": []}


def test_set_weights_gives_a_shared_label_one_tensor_that_gets_both_gradients():
    model = Cell()
    space = SearchSpace(model)
    space.activate({"op": 0, "act": 1, "skip": [0, 1]})  # b's output is used
    alpha = torch.randn(3, requires_grad=True)
    space.set_weights({"op": alpha.softmax(-1)})
    assert model.a.weights is model.b.weights and model.a.active is None
    x = torch.randn(2, 4)
    model(x).sum().backward()
    # The same gradient, from each module's use of the weights separately.
    parts = []
    for mine in (model.a, model.b):
        a = alpha.detach().requires_grad_()
        w = a.softmax(-1)
        for m in (model.a, model.b):
            m.weights = w if m is mine else w.detach()
        model(x).sum().backward()
        parts.append(a.grad)
    assert torch.allclose(alpha.grad, parts[0] + parts[1]) and parts[0].abs().sum() > 0 and parts[1].abs().sum() > 0
    space.deactivate()
    assert model.a.weights is None and model.b.weights is None


def test_set_weights_restricts_by_active_and_keeps_other_labels():
    model = Cell()
    space = SearchSpace(model)
    space.activate({"op": 1, "act": 0, "skip": [0, 1]})
    w = torch.tensor([0.2, 0.3, 0.5])
    space.set_weights({"op": w}, active={"op": [2, 0]})
    assert model.a.active == [0, 2] and model.b.weights is w
    assert model.c.active == 0 and model.c.weights is None  # untouched
    x = torch.randn(2, 4)
    assert torch.allclose(model.a(x), w[0] * model.a[0](x) + w[2] * model.a[2](x))


@pytest.mark.parametrize("weights, active, message", [
    ({"nope": torch.ones(2)}, None, r"unknown label\(s\) 'nope'; valid labels: op: 0..2"),
    ({"op": torch.ones(2)}, None, r"label 'op' takes a 1-D weight tensor of length 3 \(one per option\), got \(2,\)"),
    ({"op": torch.ones(1, 3)}, None, r"length 3 .*got \(1, 3\)"),
    ({"op": [1.0, 0.0, 0.0]}, None, r"length 3 .*got list"),
    ({"op": torch.ones(3)}, {"act": [0]}, r"label 'act' has an active restriction but no weights"),
    ({"op": torch.ones(3)}, {"op": [0, 3]}, r"label 'op' restricts its weights to .* in 0..2, got \[0, 3\]"),
    ({"op": torch.ones(3)}, {"op": []}, r"label 'op' restricts its weights"),
])
def test_set_weights_refuses_bad_labels_and_shapes(weights, active, message):
    model = Cell()
    space = SearchSpace(model)
    with pytest.raises(ArchError, match=message):
        space.set_weights(weights, active)
    assert model.a.weights is None  # nothing was half-applied
