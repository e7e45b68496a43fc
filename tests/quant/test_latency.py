"""Latency tables of mixed-precision spaces with 32 among the bits: int8 against float per layer."""
import itertools
import json
import math
import random

import pytest
import torch
from torch import nn

from supernet import LayerChoice, SearchSpace
from supernet.cost import CostModel, LatencyTable
from supernet.cost.latency import LatencyTableError
from supernet.cost.precision import float_options
from supernet.cost.timing import build_table
from supernet.quant import for_timing, mixed_precision
from supernet.strategies.latency_loss import ExpectedLatency

FAST = dict(runs=3, warmup=1, retries=0, progress=False)


class TwoBlocks(nn.Module):
    """A stem, two block choices, a classifier: few enough architectures to enumerate them all."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = LayerChoice([nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
                               nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))], label="b1")
        self.b2 = LayerChoice([nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()), nn.Identity()], label="b2")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.b2(self.b1(torch.relu(self.stem(x)))).mean((2, 3)))


def space(share="layer", weight_bits=(4, 32), act_bits=(8, 32)):
    torch.manual_seed(0)
    return for_timing(mixed_precision(TwoBlocks(), weight_bits=list(weight_bits), act_bits=list(act_bits),
                                      share=share))


def every_arch(model):
    s = SearchSpace(model)
    for values in itertools.product(*(range(s.n_options(l)) for l in s.labels)):
        yield dict(zip(s.labels, values))


def by_hand(data: dict, model, arch: dict) -> float:
    """A table file's prediction, read straight from its JSON: each group's entry, plus for each
    term the layer alone in the state the architecture's bits give, less the layer as timed."""
    s = SearchSpace(model)

    def in_float(x):
        return x == 32 if isinstance(x, int) else s.choice(x).values[arch[x]] == 32

    total = data["overhead_ms"]
    for g in data["groups"]:
        key = [arch[l] for l in g["labels"]]
        (entry,) = [e for e in g["entries"] if e[0] == key]
        total += entry[1]
        for w, a, base, ms in (entry[3] if len(entry) == 4 else []):
            total += ms[2 * in_float(w) + in_float(a)] - ms[base]
    return total


@pytest.fixture(scope="module")
def per_layer():
    model = space()
    return model, build_table(model, (1, 8, 8), **FAST)


def test_each_entry_holds_its_switchable_layers_in_every_state_and_predicts_by_them(per_layer):
    model, table = per_layer
    data = table.to_json()
    # b1's first option has one conv, its second two, b2's first one: a term each, the stem and head excluded
    terms = {(g["labels"][0], *e[0]): e[3] for g in data["groups"] if g["labels"] in (["b1"], ["b2"]) for e in g["entries"]
             if len(e) == 4}
    assert sorted(len(t) for t in terms.values()) == [1, 1, 2]
    for t in terms.values():
        for w, a, base, ms in t:
            assert base == 0 and all(x > 0 for x in ms)  # the entry was timed at the first (quantized) option
    assert data["float_options"] == {l: [False, True] for l in SearchSpace(model).labels if l.endswith("_bits")}
    archs = list(every_arch(model))
    for arch in random.Random(0).sample(archs, 40):
        assert table.predict(arch) == pytest.approx(by_hand(data, model, arch), rel=1e-12)
    base = {l: 0 for l in SearchSpace(model).labels}
    assert table.predict(base) == pytest.approx(sum(t[(0,) * len(l)] for l, t, _ in table.groups if not l) +
                                                sum(t[(0,)] for l, t, _ in table.groups if l))


def test_the_file_round_trips_and_a_damaged_term_is_one_line(per_layer, tmp_path):
    model, table = per_layer
    path = table.save(tmp_path / "t.json")
    back = LatencyTable.load(path)
    assert back.digest() == table.digest()
    for arch in itertools.islice(every_arch(model), 0, None, 37):
        assert back.predict(arch) == table.predict(arch)
    data = json.loads(path.read_text())
    entry = next(e for g in data["groups"] for e in g["entries"] if len(e) == 4)
    for damage, message in ((lambda e: e[3][0][3].__setitem__(3, None), "state 3 is None ms"),
                            (lambda e: e[3][0][3].__setitem__(1, -1.0), "state 1 is -1.0 ms"),
                            (lambda e: e[3][0].__setitem__(2, 7), "base state 7"),
                            (lambda e: e[3].__setitem__(0, ["x", 4]), r"must be \[weight bits, act bits")):
        bad = json.loads(path.read_text())
        damage(next(e for g in bad["groups"] for e in g["entries"] if e[0] == entry[0] and len(e) == 4))
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(LatencyTableError, match=message) as e:
            LatencyTable.load(tmp_path / "bad.json")
        assert "\n" not in str(e.value) and "bad.json" in str(e.value)
    bad = {**data, "float_options": {"b1.0.0.weight_bits": [False, False]}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(LatencyTableError, match="float_options"):
        LatencyTable.load(tmp_path / "bad.json")


@pytest.mark.parametrize("share", ["layer", {"b*": "blocks"}])
def test_the_latency_range_and_the_fastest_architecture_equal_brute_force(share):
    """Per layer, each entry's own bits are independent; a decision shared by both blocks couples them."""
    model = space(share)
    cost = CostModel(model, (1, 8, 8))
    cost.attach_latency(build_table(model, (1, 8, 8), cost=cost, **FAST))
    values = [cost.latency(a) for a in every_arch(model)]
    r = cost.range()
    assert r["latency_min"] == pytest.approx(min(values), rel=1e-12)
    assert r["latency_max"] == pytest.approx(max(values), rel=1e-12)
    assert cost.latency(cost.extreme_arch("latency")) == pytest.approx(min(values), rel=1e-12)
    assert cost.latency(cost.extreme_arch("latency", largest=True)) == pytest.approx(max(values), rel=1e-12)


def test_the_expected_latency_equals_the_expectation_over_every_architecture(per_layer):
    model, table = per_layer
    s = SearchSpace(model)
    gen = torch.Generator().manual_seed(1)
    logits = {l: torch.randn(s.n_options(l), generator=gen, requires_grad=True) for l in s.labels}
    probs = {l: v.softmax(0) for l, v in logits.items()}
    expected = ExpectedLatency(table, s, torch.device("cpu"))(probs)
    brute = sum(table.predict(a) * math.prod(float(probs[l][i].detach()) for l, i in a.items()) for a in every_arch(model))
    assert float(expected.detach()) == pytest.approx(brute, rel=1e-5)
    expected.backward()
    bits = [l for l in s.labels if l in float_options(s)]
    assert all(logits[l].grad is not None and logits[l].grad.abs().sum() > 0 for l in bits)
    assert ExpectedLatency(table, s, torch.device("cpu")).minimum() <= min(table.predict(a) for a in every_arch(model))


def test_a_check_times_random_subnets_with_float_layers_against_the_table():
    model = space()
    table = build_table(model, (1, 8, 8), check=6, **FAST)
    assert len(table.check["measured_ms"]) == 6 and all(ms > 0 for ms in table.check["measured_ms"])
    assert any(any(SearchSpace(model).choice(l).values[i] == 32 for l, i in a.items() if l.endswith("_bits"))
               for a in table.check["archs"])
