"""The fast candidate evaluator against the plain per-candidate loop: the scores must be identical."""
import random

import pytest
import torch
from torch import nn

from supernet import SearchSpace
from supernet.data.transforms import finish
from supernet.search import CandidateEvaluator, evaluator, recalibrate_bn
from supernet.spaces import create
from supernet.train.metrics import accuracy


def plain_scores(model, archs, recal, val):
    """One candidate at a time, one batch at a time, NCHW: the reference."""
    space, out = SearchSpace(model), []
    with torch.no_grad():
        for arch in archs:
            space.activate(arch)
            recalibrate_bn(model, recal)
            model.eval()
            hits = [accuracy(model(x), y) for x, y in val]
            n = sum(len(y) for _, y in val)
            out.append({"top1_err": 1 - sum(h[0] for h in hits) / n, "top5_err": 1 - sum(h[1] for h in hits) / n})
    return out


def generation(space, n_parents=4, n=24, seed=0):
    """Mutations and crossovers of a few parents, so that many candidates share prefixes."""
    rng = random.Random(seed)
    parents = [space.sample(rng) for _ in range(n_parents)]
    archs = []
    for i in range(n):
        a, b = rng.choice(parents), rng.choice(parents)
        if i % 2:
            archs.append({l: space.sample_label(l, rng) if rng.random() < 0.2 else v for l, v in a.items()})
        else:
            archs.append({l: a[l] if rng.random() < 0.5 else b[l] for l in space.labels})
    return archs + [archs[0]]  # and a repeat


def batches(n, size, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("options", [dict(channel_search=False), dict(channel_search=True)])
@pytest.mark.parametrize("settings", [dict(), dict(cache_mb=0), dict(cache_mb=0.05), dict(group_images=16),
                                      dict(group_images=1, channels_last=False)])
def test_prefix_tree_grouped_channels_last_scores_equal_the_plain_loop(options, settings):
    torch.manual_seed(0)
    model = create("shufflenet-cifar", input_size=16, width_mult=0.25, stage_repeats=(2, 2, 2, 2), **options)
    model.segments()  # the space declares its segments
    space = SearchSpace(model)
    archs = generation(space)
    recal, val = batches(3, 16), batches(2, 16, seed=1) + [batches(1, 16, batch=5, seed=2)[0]]  # ragged last batch
    ev = CandidateEvaluator(model, recal, val, **settings)
    fast = ev.evaluate_many(archs)
    assert fast == plain_scores(model, archs, recal, val)
    assert len({(s["top1_err"], s["top5_err"]) for s in fast}) > 1  # not a degenerate constant score
    if settings.get("cache_mb", 2048) >= 1:
        assert ev.segment_runs < len(archs) * len(ev.segments)  # the tree shared work
    assert ev(archs[3]) == fast[3]  # one at a time gives the same


def test_evaluator_restores_the_model_and_works_without_segments():
    class Flat(nn.Module):  # no segments(): evaluated as one segment
        def __init__(self):
            super().__init__()
            self.body = create("shufflenet-cifar", input_size=16, width_mult=0.25, stage_repeats=(1, 1, 1, 1))

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    model = Flat().train()
    space = SearchSpace(model)
    archs = generation(space, n=6)
    recal, val = batches(2, 16), batches(1, 16, seed=1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    ev = CandidateEvaluator(model, recal, val)
    assert ev.evaluate_many(archs) == plain_scores(model, archs, recal, val)
    model.train()
    ev.evaluate_many(archs)
    assert model.training and all(m.training for m in model.modules())
    assert all(m.momentum == 0.1 and "forward" not in m.__dict__ for m in bns)


def test_a_segment_that_changes_its_input_in_place_is_refused():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.ReLU(inplace=True)
            self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(10))

        def forward(self, x):
            return self.head(self.b(self.a(x)))

        def segments(self):
            return [self.a, self.b, self.head]

    model = InPlace()
    model(torch.zeros(1, 3, 8, 8))
    ev = CandidateEvaluator(model, batches(1, 8), batches(1, 8))
    with pytest.raises(RuntimeError, match="in place"):
        ev({})


@pytest.mark.parametrize("settings", [dict(), dict(cache_mb=0), dict(group_images=1, channels_last=False)])
def test_uint8_batches_prepared_per_group_score_like_float_input(settings):
    """The search stores images as uint8 and finishes them group by group (``prepare``); the scores
    must equal those of the finished float batches."""
    torch.manual_seed(0)
    model = create("shufflenet-cifar", input_size=16, width_mult=0.25, stage_repeats=(2, 2, 2, 2))
    archs = generation(SearchSpace(model), n=10)
    g = torch.Generator().manual_seed(0)
    raw = [(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g))
           for n in (8, 8, 8, 8, 5)]
    prepare = lambda x: finish(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    recal, val = raw[:3], raw[3:]
    ev = CandidateEvaluator(model, recal, val, prepare=prepare, **settings)
    fast = ev.evaluate_many(archs)
    # Kept as uint8 and prepared per candidate when the float images do not fit the cache,
    # else prepared once.
    assert ev.recal[0][0].dtype == (torch.uint8 if settings.get("cache_mb") == 0 else torch.float32)
    assert fast == plain_scores(model, archs, [(prepare(x), y) for x, y in recal], [(prepare(x), y) for x, y in val])
    assert len({s["top1_err"] for s in fast}) > 1


def test_cpu_groups_follow_the_segment_output_size(monkeypatch):
    """On CPU, batches are concatenated only while a call's largest segment output fits the budget."""
    torch.manual_seed(0)
    model = create("shufflenet-cifar", input_size=16, width_mult=0.25, stage_repeats=(1, 1, 1, 1))
    archs = generation(SearchSpace(model), n=6)
    recal, val = batches(3, 16), batches(2, 16, seed=1)
    small = CandidateEvaluator(model, recal, val)
    assert small.evaluate_many(archs) == plain_scores(model, archs, recal, val)
    assert small.n_tail == 16 and [s for _, s in small.recal] == [[8, 8, 8]]  # one call for everything
    largest = max(x.numel() * 4 for x in _segment_outputs(model, recal[0][0][:1]))
    monkeypatch.setattr(evaluator, "CPU_GROUP_BYTES", 2 * largest)  # room for 2 images a call
    alone = CandidateEvaluator(model, recal, val)
    assert alone.evaluate_many(archs) == plain_scores(model, archs, recal, val)
    assert alone.n_tail == 0 and [s for _, s in alone.recal] == [[8]] * 3 and len(alone.val) == 2


def _segment_outputs(model, x):
    model.eval()
    with torch.no_grad():
        for segment in model.segments():
            x = segment(x)
            yield x


def test_a_model_with_the_old_stages_hook_is_refused_by_name():
    class Old(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.a(x).mean((2, 3))

        def stages(self):
            return [self.a]

    with pytest.raises(ValueError, match=r"defines stages\(\), which the evaluator now calls segments\(\)"):
        CandidateEvaluator(Old(), batches(1, 8), batches(1, 8))
