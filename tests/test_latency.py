"""Latency tables: structure, the file, the target check, constraints, the end-to-end check, ONNX Runtime.

Timings are asserted for structure and sanity only (positive, consistent, the two backends within an
order of magnitude of each other), never for machine-specific values.
"""
import json
import random

import pytest
import torch
from torch import nn

from supernet.arch import SearchSpace
from supernet.cli import main
from supernet.cost import Constraints, CostModel
from supernet.cost import LatencyTable, LatencyTableError
from supernet.cost.latency import target_of
from supernet.cost.timing import build_table, check_table
from supernet.nn import LayerChoice
from supernet.strategies import PathSampler

from .conftest import tiny_model

FAST = dict(runs=3, warmup=1, retries=0, progress=False)


class ConvNet(nn.Module):
    """Two choices of convolutions big enough that compute, not per-call overhead, dominates."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.c1 = LayerChoice([nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 5, padding=2)], label="c1")
        self.c2 = LayerChoice([nn.Conv2d(16, 32, 1), nn.Conv2d(16, 32, 3, padding=1)], label="c2")
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.c2(torch.relu(self.c1(torch.relu(self.stem(x))))).mean((2, 3)))


@pytest.fixture(scope="module")
def shuffle():
    torch.manual_seed(0)
    return tiny_model("shufflenet-cifar", input_size=8)


@pytest.fixture(scope="module")
def table(shuffle):
    return build_table(shuffle, space="shufflenet-cifar", **FAST)


def test_table_has_the_cost_models_groups_and_round_trips_through_json(shuffle, table, tmp_path):
    cost = CostModel(shuffle)
    assert [(l, sorted(t), g) for l, t, g in table.groups] == [(l, sorted(t), g) for l, t, g in cost.groups]
    assert all(ms > 0 for _, t, _ in table.groups for ms in t.values())
    assert table.target["backend"] == "torch" and table.target["threads"] == 1 and table.target["batch"] == 1
    assert table.target["versions"] == {"torch": torch.__version__} and table.target["space"] == "shufflenet-cifar"
    arch = SearchSpace(shuffle).sample(random.Random(0))
    parts = [t[tuple(arch[l] for l in labels)] for labels, t, _ in table.groups]
    assert table.predict(arch) == pytest.approx(sum(parts))  # additive: overhead 0 before a check
    path = table.save(tmp_path / "t.json")
    back = LatencyTable.load(path)
    assert back.groups == table.groups and back.spread == table.spread and back.target == table.target
    assert back.predict(arch) == table.predict(arch) and back.digest() == table.digest()
    cost.attach_latency(back)
    r = cost.range()
    assert 0 < r["latency_min"] <= cost.latency(arch) <= r["latency_max"]
    assert cost.latency(cost.extreme_arch("latency")) == pytest.approx(r["latency_min"])


def test_a_table_for_another_target_or_model_is_refused_naming_the_difference(shuffle, table, tmp_path):
    here = target_of(shuffle, (3, 8, 8), space="shufflenet-cifar")
    table.require(here)
    with pytest.raises(LatencyTableError, match="threads 1, this run needs 2"):
        table.require(target_of(shuffle, (3, 8, 8), threads=2))
    with pytest.raises(LatencyTableError, match="backend 'torch', this run needs 'onnxruntime'"):
        table.require(target_of(shuffle, (3, 8, 8), backend="onnxruntime"))
    with pytest.raises(LatencyTableError, match="device_name"):
        table.require(target_of(shuffle, (3, 8, 8), name="Cortex-A76"))
    # A table measured elsewhere is trusted by its device name, without comparing versions.
    elsewhere = LatencyTable(dict(table.target, device_name="Cortex-A76", versions={"torch": "0.0"}), table.groups,
                             table.spread)
    elsewhere.require(target_of(shuffle, (3, 8, 8), name="Cortex-A76"))
    with pytest.raises(LatencyTableError, match="versions"):
        elsewhere.require(dict(here, device_name="Cortex-A76"))
    other = tiny_model("shufflenet-cifar", input_size=8, width_mult=0.5)
    with pytest.raises(LatencyTableError, match="options"):
        table.require(target_of(other, (3, 8, 8), space="shufflenet-cifar", options={"width_mult": 0.5}))
    with pytest.raises(ValueError, match="does not fit this model"):
        CostModel(other, latency=table)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "supernet-latency-table", "version": 1, "groups": [{"labels": 3}]}))
    with pytest.raises(LatencyTableError, match="damaged"):
        LatencyTable.load(bad)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(LatencyTableError, match="not a latency table"):
        LatencyTable.load(tmp_path / "x.json")


def test_latency_constraints_in_sampling_and_in_the_feasible_range(shuffle, table):
    cost = CostModel(shuffle)
    with pytest.raises(ValueError, match="needs a latency table.*supernet latency"):
        Constraints(cost, ["latency<=1ms"])
    cost.attach_latency(table)
    r = cost.range()
    mid = (r["latency_min"] + r["latency_max"]) / 2
    constraints = Constraints(cost, [f"latency<={mid}ms"])
    sampler = PathSampler(SearchSpace(shuffle), 0, cost, constraints)
    archs = [sampler(step) for step in range(30)]
    assert all(cost.latency(a) <= mid for a in archs)
    assert len({json.dumps(a, sort_keys=True) for a in archs}) > 1
    with pytest.raises(ValueError, match="cannot be met.*latency range"):
        Constraints(cost, [f"latency<={r['latency_min'] / 2}ms"]).check_feasible()


def test_the_check_fits_the_overhead_and_reports_error_and_ranking(shuffle, table):
    check = check_table(shuffle, table, k=5, progress=False)
    residual = sorted(m - a for m, a in zip(check["measured_ms"], check["additive_ms"]))
    assert check["overhead_ms"] == pytest.approx(residual[2]) == table.overhead_ms  # the median
    assert check["subnets"] == 5 and not check["interleaved"] and -1 <= check["kendall_tau"] <= 1
    assert -1 <= check["kendall_tau_repeat"] <= 1
    assert 0 <= check["mape"] <= check["max_error"] and 0 <= check["mape_loo"] <= check["max_error_loo"]
    assert all(m > 0 for m in check["measured_ms"])
    arch = check["archs"][0]
    assert table.predict(arch) == pytest.approx(check["additive_ms"][0] + check["overhead_ms"])
    # In the table's own rounds (build_table(check=K)).
    again = build_table(shuffle, check=4, **FAST)
    assert again.check["interleaved"] and again.check["subnets"] == 4


def test_onnxruntime_timing_agrees_with_torch_within_an_order_of_magnitude():
    torch.manual_seed(0)
    model = ConvNet()
    by = {b: build_table(model, (3, 16, 16), backend=b, check=3, **FAST) for b in ("torch", "onnxruntime")}
    assert by["onnxruntime"].target["versions"] == {"onnxruntime": __import__("onnxruntime").__version__}
    for (_, t, _), (_, o, _) in zip(by["torch"].groups[:-1], by["onnxruntime"].groups[:-1]):  # the convs
        for k in t:
            assert o[k] > 0 and 0.1 < o[k] / t[k] < 10, (k, o[k], t[k])
    assert all(m > 0 for m in by["onnxruntime"].check["measured_ms"])


def test_gated_spaces_get_tables_too():
    """DARTS: edges gated by their node's InputChoice, shared labels across cells, stubbed for the rest."""
    torch.manual_seed(0)
    model = tiny_model("darts", channels=2, layers=2)
    table = build_table(model, runs=2, warmup=0, retries=0, progress=False)
    arch = SearchSpace(model).sample(random.Random(1))
    assert table.predict(arch) > table.groups[-1][1][()] > 0
    assert CostModel(model, latency=table).latency(arch) == table.predict(arch)


def test_cli_builds_checks_and_uses_a_table(tmp_path, capsys):
    out = tmp_path / "lat.json"
    opts = ["stage_repeats=[1,1,1,1]", "width_mult=0.25", "input_size=8", "num_classes=4"]
    args = ["latency", "shufflenet-cifar", *opts, "--out", out, "--runs", 3, "--warmup", 1, "--retries", 0,
            "--check", 3, "--quiet"]
    assert main([str(a) for a in args]) == 0
    text = capsys.readouterr().out
    assert "Kendall tau" in text and out.with_suffix(".png").stat().st_size > 5000
    assert main([str(a) for a in args]) == 2 and "already exists" in capsys.readouterr().err
    assert main(["latency", "--table", str(out), "--check", "3", "--quiet"]) == 0
    assert "leave-one-out" in capsys.readouterr().out
    table = LatencyTable.load(out)
    model = tiny_model("shufflenet-cifar", input_size=8, stage_repeats=[1, 1, 1, 1], num_classes=4)
    arch = SearchSpace(model).sample(random.Random(0))
    assert main(["info", "shufflenet-cifar", *opts, "--arch", json.dumps(arch), "--latency-table", str(out),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == pytest.approx(table.predict(arch))
    assert main(["info", "shufflenet-cifar", "input_size=8", "--latency-table", str(out)]) == 2
    assert "options" in capsys.readouterr().err
    assert main(["latency", "shufflenet-cifar", "--config", "digits", "--out", str(tmp_path / "y.json")]) == 2
    assert "exactly one of" in capsys.readouterr().err
