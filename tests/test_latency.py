"""Latency tables: structure, the file, the target check, constraints, the end-to-end check, ONNX Runtime.

Timings are asserted for structure and sanity only (positive, consistent, the two backends within an
order of magnitude of each other), never for machine-specific values.
"""
import json
import math
import os
import random
import re

import pytest
import torch
import yaml
from torch import nn

from supernet.arch import ArchError, SearchSpace, parse_arch
from supernet.cli import main
from supernet.cost import Constraints, CostModel
from supernet.cost import LatencyTable, LatencyTableError
from supernet.cost import timing
from supernet.cost.latency import target_of
from supernet.cost.timing import build_table, check_table
from supernet.nn import LayerChoice
from supernet.runtime.io import read_json_file
from supernet.runtime.typed import ConfigError
from supernet.search.state import SearchStateFileError, load_state
from supernet.strategies import PathSampler
from supernet.strategies.latency_loss import ExpectedLatency, log_latency

from . import bad_scenes
from .conftest import tiny_model
from .test_pipeline import TINY

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


# --- what a table file may hold ------------------------------------------------------------------------
@pytest.mark.parametrize("edit, words", [
    ({"ms": float("nan")}, "groups[0] (labels ['layer_0']) entry [0] is nan ms; a latency must be a finite number > 0"),
    ({"ms": float("inf")}, "entry [0] is inf ms"),
    ({"ms": float("-inf")}, "entry [0] is -inf ms"),
    ({"ms": -0.5}, "entry [0] is -0.5 ms"),
    ({"ms": 0}, "entry [0] is 0 ms"),
    ({"ms": True}, "entry [0] is True ms"),
    ({"ms": "0.5"}, "entry [0] is '0.5' ms"),
    ({"spread": float("nan")}, "entry [0] has spread nan"),
    ({"spread": -1}, "entry [0] has spread -1"),
    ({"overhead_ms": float("nan")}, "overhead_ms is nan; it must be a finite number"),
    ({"overhead_ms": float("-inf")}, "overhead_ms is -inf; it must be a finite number"),
    ({"overhead_ms": None}, "overhead_ms must be a number, got None"),
])
def test_a_table_file_with_a_number_that_is_not_a_latency_is_refused_naming_the_entry(tmp_path, edit, words):
    path = bad_scenes.bad_table(tmp_path, **edit)
    with pytest.raises(LatencyTableError) as e:
        LatencyTable.load(path)
    message = str(e.value)
    assert message.startswith(f"latency table {path} is damaged: ") and words in message, message
    assert message.endswith("build it again with 'supernet latency'") and "\n" not in message
    assert "lacks" not in message


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["target"].update(threads="2"), "target.threads must be an integer, got '2'"),
    (lambda d: d["target"].update(batch=0), "target.batch is 0; it must be >= 1"),
    (lambda d: d["target"].update(input_shape=[3, -1]), "target.input_shape must be a list of sizes > 0"),
    (lambda d: d["target"].pop("backend"), "the entry 'target.backend' is missing"),
    (lambda d: d["settings"].update(max_spread=float("nan")), "settings: max_spread (--max-spread) must be a finite "
                                                               "number > 0"),
    (lambda d: d["settings"].update(runs=1), "settings: runs (--runs) must be an integer >= 2"),
    (lambda d: d["groups"][0]["entries"].append([[0], 1.0, 0.0]), "has the entry [0] twice"),
    (lambda d: d["groups"][0]["entries"][1].__setitem__(0, [1, 2]), "entries[1] has key [1, 2]; a key is a list of 1"),
    (lambda d: d["groups"][0].update(gate=["x"]), "gate must be null or [label, index], got ['x']"),
    (lambda d: d["groups"][0].update(labels=[3]), "groups[0].labels must be a list of label names, got [3]"),
    (lambda d: d.update(groups={}), "groups must be a list, got {}"),
])
def test_a_table_file_with_a_damaged_entry_names_it(tmp_path, edit, words):
    data = bad_scenes.table_json()
    edit(data)
    path = bad_scenes.write(tmp_path / "t.json", json.dumps(data))
    with pytest.raises(LatencyTableError, match=r"^latency table .*t\.json is damaged: ") as e:
        LatencyTable.load(path)
    assert words in str(e.value)


def test_a_well_formed_table_file_loads_and_names_itself(tmp_path):
    table = LatencyTable.load(bad_scenes.bad_table(tmp_path, overhead_ms=-0.25))
    assert table.groups[0][1] == {(0,): 0.5, (1,): 1.5, (2,): 2.5, (3,): 3.5} and table.overhead_ms == -0.25
    assert table.source == f"latency table {tmp_path / 'bad-latency.json'}"


@pytest.mark.parametrize("content, words", [
    ("[" * 100_000 + "]" * 100_000, "is nested too deeply to parse"),
    (b'{"a": "\xe9"}', "is not UTF-8 text (byte 7); save it as UTF-8 JSON"),
    ("{'a': 1}", "is not valid JSON (Expecting property name enclosed in double quotes"),
])
def test_every_json_reader_says_what_is_wrong_with_the_file_in_one_line(tmp_path, content, words):
    path = bad_scenes.write(tmp_path / "f.json", content)
    for read, error in ((LatencyTable.load, LatencyTableError), (load_state, SearchStateFileError),
                        (lambda p: parse_arch(p, SearchSpace(tiny_model("shufflenet-cifar"))), ArchError)):
        with pytest.raises(error) as e:
            read(path)
        assert str(path) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_a_json_file_beyond_its_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = bad_scenes.huge_table(tmp_path)  # sparse: 2 GB that take no disk space
    monkeypatch.setattr("pathlib.Path.read_bytes", lambda self: pytest.fail("read a file too large to read"))
    with pytest.raises(LatencyTableError, match=r"huge-latency\.json is 2\.0 GB, more than the 256\.0 MB such a "
                                                r"file may be; check that it is the right file"):
        LatencyTable.load(path)
    with pytest.raises(SearchStateFileError, match=r"is 2\.0 GB, more than the 1\.0 GB"):
        load_state(path)
    with pytest.raises(ValueError, match=r"is 2\.0 GB, more than the 1\.0 KB such a file may be; check that it is"):
        read_json_file(path, f"data file {path}", max_bytes=1000)
    with pytest.raises(ValueError, match="is a directory; give a JSON file"):
        read_json_file(tmp_path, f"data file {tmp_path}")
    os.mkfifo(tmp_path / "fifo.json")  # opening it would block until a writer came
    with pytest.raises(LatencyTableError, match=r"fifo\.json is a FIFO \(named pipe\), not a regular file"):
        LatencyTable.load(tmp_path / "fifo.json")


# --- timing settings, checked before anything is timed ---------------------------------------------------
@pytest.mark.parametrize("settings, words", [
    ({"check": -3}, "got -3"), ({"check": 2}, "got 2"), ({"max_spread": float("nan")}, "got nan"),
    ({"max_spread": float("inf")}, "got inf"), ({"max_spread": 0}, "got 0"), ({"runs": 1}, "got 1"),
    ({"warmup": -1}, "got -1"), ({"retries": -2}, "got -2"),
])
def test_timing_settings_are_refused_before_any_timing(settings, words, monkeypatch):
    monkeypatch.setattr(timing, "runner", lambda *a, **k: pytest.fail("timed before checking the settings"))
    with pytest.raises(ValueError, match=words):
        build_table(ConvNet(), (3, 8, 8), **{**FAST, **settings})


def test_a_check_is_refused_before_timing_and_names_k(shuffle, table, monkeypatch):
    monkeypatch.setattr(timing, "runner", lambda *a, **k: pytest.fail("timed before checking k"))
    for k in (-3, 0, 2):
        with pytest.raises(ValueError, match=f"got {k}"):
            check_table(shuffle, table, k=k, progress=False)
    with pytest.raises(ValueError, match="max_spread.*got nan"):
        timing.measure([lambda: 1.0], runs=3, warmup=0, max_spread=float("nan"), retries=0)


def test_a_space_latency_tables_cannot_cover_is_a_config_error():
    with pytest.raises(ConfigError, match="latency tables do not support enas-micro: its NoneChosen-gated modules"):
        build_table(tiny_model("enas-micro"), space="enas-micro", **FAST)


# --- tables made in Python, where the losses and constraints use them --------------------------------------
def test_the_expected_latency_names_what_is_wrong_with_a_table(shuffle, table):
    space = SearchSpace(shuffle)
    (labels, entries, gate), *rest = table.groups
    key = next(iter(entries))
    nan = LatencyTable(table.target, [(labels, {**entries, key: math.nan}, gate), *rest], table.spread)
    with pytest.raises(ConfigError, match=re.escape(f"has entry {list(key)} of labels {labels} = nan ms")) as e:
        ExpectedLatency(nan, space, torch.device("cpu"))
    assert "lacks" not in str(e.value)
    missing = LatencyTable(table.target, [(labels, {k: v for k, v in entries.items() if k != key}, gate), *rest],
                           table.spread)
    with pytest.raises(ConfigError, match=re.escape(f"lacks the entry {list(key)}")):
        ExpectedLatency(missing, space, torch.device("cpu"))
    below = LatencyTable(table.target, table.groups, table.spread, overhead_ms=-1e6)
    with pytest.raises(ConfigError, match="predicts -1e\\+06 ms for the fastest architecture"):
        ExpectedLatency(below, space, torch.device("cpu"))


def test_a_gated_table_is_a_config_error_for_the_expected_latency():
    model = tiny_model("darts", channels=2, layers=2)
    gated = build_table(model, runs=2, warmup=0, retries=0, progress=False)
    with pytest.raises(ConfigError, match="DARTS-style cell edges.*does not cover; use a space without gated edges"):
        ExpectedLatency(gated, SearchSpace(model), torch.device("cpu"))


def test_the_log_loss_says_latency_unit_us_only_when_it_is_not_already_us():
    with pytest.raises(ValueError, match="set strategy.latency_unit=us"):
        log_latency(torch.tensor(0.5), "ms", "fbnet")
    with pytest.raises(ValueError, match="too small for it even in us") as e:
        log_latency(torch.tensor(0.0005), "us", "fbnet")
    assert "latency_unit=us" not in str(e.value)


def test_a_table_that_predicts_no_latency_is_refused_by_the_constraints(shuffle, table):
    below = LatencyTable(table.target, table.groups, table.spread, overhead_ms=-1e6)
    cost = CostModel(shuffle, latency=below)
    with pytest.raises(ValueError, match="predicts .* for the fastest architecture .*overhead_ms -1e\\+06"):
        Constraints(cost, ["latency<=1ms"]).check_feasible()


# --- the command line ------------------------------------------------------------------------------------
def test_cli_overrides_after_config_and_run_dir(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    fast = ["--runs", "2", "--warmup", "0", "--retries", "0", "--quiet"]
    assert main([*map(str, ["latency", "--config", config, "latency.threads=2", "--out", tmp_path / "a.json"]), *fast]) == 0
    assert LatencyTable.load(tmp_path / "a.json").target["threads"] == 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(TINY))
    assert main([*map(str, ["latency", "--run-dir", run, "batch=2", "--out", run / "lat.json"]), *fast]) == 0
    assert LatencyTable.load(run / "lat.json").target["batch"] == 2
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "lat.json"]  # the run's lock taken and let go
    capsys.readouterr()
