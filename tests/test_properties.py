"""Property tests (hypothesis) for architectures, NNI import and the cost model."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supernet import ArchError, SearchSpace, parse_arch
from supernet.cost import CostModel

from .conftest import tiny_model

MODEL = tiny_model("shufflenet-cifar", channel_search=True)
SPACE = SearchSpace(MODEL)
COST = CostModel(MODEL)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def archs(draw):
    return {l: draw(st.integers(0, SPACE.n_options(l) - 1)) for l in SPACE.labels}


@FAST
@given(archs())
def test_valid_architectures_validate_and_round_trip_through_json(arch):
    assert SPACE.validate(json.loads(json.dumps(arch))) == arch
    assert SPACE.decode(SPACE.encode(arch)) == arch
    assert parse_arch(json.dumps(arch), SPACE) == arch
    assert parse_arch([arch[l] for l in SPACE.labels], SPACE) == arch


@FAST
@given(archs(), st.sampled_from(SPACE.labels), st.one_of(st.integers(), st.text(max_size=3), st.floats(), st.booleans(), st.none()))
def test_any_bad_value_is_refused_naming_its_label(arch, label, value):
    n = SPACE.n_options(label)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n:
        return
    with pytest.raises(ArchError, match=f"label '{label}'"):
        SPACE.validate({**arch, label: value})


@FAST
@given(archs(), st.text(min_size=1, max_size=8).filter(lambda s: s not in SPACE.labels))
def test_unknown_and_missing_labels_are_refused(arch, extra):
    with pytest.raises(ArchError, match="unknown label"):
        SPACE.validate({**arch, extra: 0})
    missing = dict(arch)
    missing.pop(SPACE.labels[0])
    with pytest.raises(ArchError, match=f"missing label.*'{SPACE.labels[0]}'"):
        SPACE.validate(missing)


@FAST
@given(archs())
def test_nni3_values_import_back_to_the_same_architecture(arch):
    nni3 = {l: SPACE.choice(l).values[i] for l, i in arch.items()}  # candidate names and channel counts
    assert parse_arch(nni3, SPACE, fmt="nni3") == arch


BLOCK_SPACE = SearchSpace(tiny_model("shufflenet-cifar"))  # legacy NNI files hold LayerChoices only


@FAST
@given(st.lists(st.integers(0, 3), min_size=len(BLOCK_SPACE), max_size=len(BLOCK_SPACE)))
def test_nni_legacy_one_hot_files_import_back(blocks):
    space = BLOCK_SPACE
    legacy = {f"LayerChoice{i + 1}": [j == b for j in range(4)] for i, b in enumerate(blocks)}
    assert parse_arch(json.loads(json.dumps(legacy)), space) == dict(zip(space.labels, blocks))


@FAST
@given(archs(), archs(), st.sampled_from(SPACE.labels), st.data())
def test_cost_is_additive_over_choices(a, b, label, data):
    """Changing one label changes FLOPs and params by an amount that does not depend on the others
    (within the label's group: a layer and its own width choice change together)."""
    group = next(labels for labels, _, _ in COST.groups if label in labels)
    new = {l: data.draw(st.integers(0, SPACE.n_options(l) - 1)) for l in group}
    b = {**b, **{l: a[l] for l in group}}  # same group values, different everything else
    da = [x - y for x, y in zip(COST.cost({**a, **new}), COST.cost(a))]
    db = [x - y for x, y in zip(COST.cost({**b, **new}), COST.cost(b))]
    assert da == db
    r = COST.range()
    flops, params = COST.cost(a)
    assert r["flops_min"] <= flops <= r["flops_max"] and r["params_min"] <= params <= r["params_max"]
