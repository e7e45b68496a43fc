"""``python -m benchmarks`` on a tiny configuration: every figure is there and in the JSON."""
import json

from pathlib import Path

import pytest

from benchmarks import common, family, hardware, layout, quant, spos
from benchmarks.__main__ import EFFORT, main


@pytest.mark.slow
def test_bench_quick_writes_the_table_and_json(tmp_path, monkeypatch, capsys):
    tiny = {"stage_repeats": (1, 1, 1, 1), "width_mult": 0.25}
    monkeypatch.setattr(spos, "SHAPES", {"tiny@16/b4": ("shufflenet-cifar", 16, 4, 10, tiny)})
    monkeypatch.setattr(spos, "EVAL", dict(space="shufflenet-cifar", size=16, classes=10, batch=4,
                                            recal_batches=2, val_images=8, options=tiny))
    monkeypatch.setattr(spos, "COST", dict(space="shufflenet-cifar", options=tiny, constraint="flops<=10M"))
    monkeypatch.setattr(quant, "SHAPES", QUANT_TINY)
    monkeypatch.setattr(layout, "CASES", LAYOUT_TINY)
    monkeypatch.setitem(EFFORT, "quick", dict(step_s=1, step_rounds=6, eval_reps=2, cost_rounds=5, darts_s=0,
                                                    darts_rounds=2, enas_s=0, enas_rounds=2,
                                                    hardware_s=0, hardware_rounds=2, layout_s=0, layout_rounds=2))
    from tests.conftest import TINY_OPTIONS
    options = {k: v for k, v in TINY_OPTIONS["proxyless"].items() if k in ("stage_widths", "stage_repeats", "stage_strides")}
    monkeypatch.setattr(hardware, "HARDWARE_SETTING", dict(size=16, batch=4, classes=10, width_mult=0.5, arch_every=5,
                                                                 seed=0, options=options))
    monkeypatch.setattr(family, "DARTS_SETTING", dict(size=16, batch=4, classes=10, grad_clip=5.0,
                                                            options=dict(channels=4, layers=3)))
    monkeypatch.setattr(family, "ENAS_SETTING", dict(space="enas-macro", size=16, batch=4, classes=10, train_steps=3,
                                                           aggregate=2, options=dict(layers=3, channels=4)))
    nni = {"interleaved": {"median_ratio_pinned_over_fixed": 1.13, "median_ratio_random_over_fixed": 1.25},
           "evolution": {"total_s": 24.0, "trials": 20}, "args": {"batch_size": 16}}
    (tmp_path / "nni.json").write_text(json.dumps(nni))
    out = tmp_path / "bench.json"
    peers = {"table": [{"job": "DARTS@darts", "strategy": "DARTS", "status": "ok", "median_ms": 8195.0, "n": 5,
                         "ratio_to_fixed": 33.3, "growth_mb": 2142.0},
                        {"job": "fixed@darts", "strategy": "fixed (plain loop)", "status": "ok", "median_ms": 194.5,
                         "n": 30, "growth_mb": 277.0},
                        {"job": "Proxyless@proxylessnas", "strategy": "Proxyless", "status": "ok", "median_ms": 354.1,
                         "n": 15, "ratio_to_fixed": 7.0, "growth_mb": 26.0}]}
    (tmp_path / "family.json").write_text(json.dumps(peers))
    assert main(["--quick", "--json", str(out), "--nni", str(tmp_path / "nni.json"), "--threads", "1",
                 "--nni-family", str(tmp_path / "family.json")]) == 0
    table = capsys.readouterr().out
    assert "supernet pinned / fixed subnet" in table and "eval speedup" in table and "threads" in table
    res = json.loads(out.read_text())
    assert set(res["step_ratio_pinned"]) == set(res["step_ratio_random"]) == {"tiny@16/b4"}
    assert 0.3 < res["step_ratio_pinned"]["tiny@16/b4"] < 3
    assert res["eval"]["scores_identical"] and res["eval"]["setup"]["candidates"] == 50
    assert res["eval_speedup"] > 0 and res["eval"]["ours_candidates_per_s"] > 0 and res["eval"]["naive_candidates_per_s"] > 0
    assert res["cost"]["query_us"]["median"] > 0 and res["cost"]["constrained_sample_us"]["n"] == 5
    mem = res["memory"]["tiny@16/b4"]
    assert mem["supernet"]["peak_bytes"] > mem["fixed"]["peak_bytes"] > 0  # the supernet holds every candidate
    assert res["nni"]["ours_over_nni"] > 0 and res["machine"]["threads"] == 1
    d = res["darts"]
    assert d["ratio_over_plain"]["n"] == 2 and 0.3 < d["ratio_over_plain"]["median"] < 3
    assert d["unrolled_over_first"]["median"] > 1 and d["nni"]["step_ms"] == 8195.0
    assert d["memory"]["search_step"]["peak_bytes"] > d["memory"]["fixed_darts_v2"]["peak_bytes"] > 0
    assert "darts step" in table and "NNI 3.0 DARTS" in table
    e = res["enas"]
    assert e["ratio_over_fixed"]["n"] == 2 and 0.3 < e["ratio_over_fixed"]["median"] < 3
    assert e["controller_step_ms"]["median"] > e["controller_alone_ms"]["median"] > 0 and "enas controller step" in table
    for name in ("proxyless", "fbnet"):
        h = res[name]
        assert h["weight_over_fixed"]["n"] == 2 and h["average_over_fixed"]["median"] > 0
        m = h["memory"]
        assert m["arch_step"]["step_peak_bytes"] > 0 and m["fixed_largest"]["peak_bytes"] >= m["fixed_argmax"]["peak_bytes"]
    for mode in ("full_v2", "two"):
        assert res["proxyless"]["modes"][mode]["average_over_fixed"]["n"] == 2 and f"proxyless {mode}: arch step" in table
    assert "fbnet: arch step / fixed argmax subnet" in table and "nni" not in res["fbnet"]
    assert res["proxyless"]["nni"]["ratio_to_fixed"] == 7.0 and "NNI 3.0 Proxyless" in table
    assert res["proxyless"]["modes"]["full_v2"]["flop_model"]["average_over_fixed"] > 1 and "full_v2 FLOP model" in table
    assert res["proxyless"]["memory"]["darts_step"]["step_peak_bytes"] > res["proxyless"]["memory"]["weight_step"]["step_peak_bytes"]
    step = res["step"]["tiny@16/b4"]["ratio_pinned"]
    assert step["n"] >= 6 and step["ci95"][0] <= step["median"] <= step["ci95"][1]
    assert set(res["quant"]) == set(QUANT_TINY) and "QAT supernet pinned / fixed subnet" in table
    assert set(res["layout"]) == set(LAYOUT_TINY) and "step channels_last / contiguous" in table
    for r in res["layout"].values():
        assert r["channels_last_over_contiguous"]["n"] == 2 and r["channels_last_over_contiguous"]["median"] > 0
        assert set(r["ms"]) == {"contiguous", "channels_last", "fixed contiguous", "fixed channels_last"}


# Two strategies of the layout benchmark at their smallest (a path-only one and a mixing one).
LAYOUT_TINY = {"spos tiny@8/b4": ("shufflenet-cifar", 8, 4, 10, dict(in_channels=1, width_mult=0.25,
                                                                   stage_repeats=[1, 1, 1, 1]), layout.SPOS),
               "darts tiny@8/b4": ("darts", 8, 4, 10, dict(channels=4, layers=3), layout.DARTS)}

# The digits mixed-precision space at its smallest: 8 px, one channel, every stage one block.
QUANT_TINY = {"tiny-digits@8/b4": ("shufflenet-cifar", 8, 1, 4, dict(width_mult=0.25, stage_repeats=[1, 1, 1, 1],
                                                                     channel_search=True, num_classes=10))}


@pytest.mark.slow
def test_bench_quant_alone(tmp_path, monkeypatch, capsys):
    """``--only quant``: the QAT supernet step and the fake-quantization overhead, nothing else."""
    import math
    monkeypatch.setattr(quant, "SHAPES", QUANT_TINY)
    monkeypatch.setitem(EFFORT, "quick", {**EFFORT["quick"], "step_s": 0, "step_rounds": 4})
    out = tmp_path / "bench.json"
    assert main(["--quick", "--only", "quant", "--threads", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert set(res) == {"machine", "quick", "quant", "seconds"} and res["machine"]["threads"] == 1
    st = res["quant"]["tiny-digits@8/b4"]
    assert st["setup"]["bit_labels"] > 0 and st["setup"]["weight_bits"] == [2, 3, 4, 8]
    for key in ("ratio_pinned", "ratio_random", "fake_quant_pinned", "fake_quant_random"):
        s = st[key]
        assert s["n"] == 4 and math.isfinite(s["median"]) and s["min"] > 0
        assert s["ci95"][0] <= s["median"] <= s["ci95"][1]
    assert 0.3 < st["ratio_pinned"]["median"] < 3 and 0.3 < st["ratio_random"]["median"] < 3
    assert all(t["median"] > 0 for t in st["times_s"].values()) and len(st["times_s"]) == 6
    for row in ("QAT supernet pinned / fixed subnet", "QAT supernet random path / fixed subnet",
                "fake-quant overhead, fixed / float (pinned)", "fixed float subnet (ms)", "goal: QAT supernet"):
        assert row in table
    assert "eval speedup" not in table and "darts" not in table


def test_median_ci_is_the_binomial_order_statistic_interval():
    assert common.median_ci(list(range(1, 21))) == (6, 15)  # the textbook ranks for n = 20
    assert common.median_ci(list(range(1, 101))) == (40, 61)
    assert common.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few samples: min-max


def test_benchmarks_refuse_a_bad_nni_file(tmp_path, capsys):
    bad = tmp_path / "nni.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as e:
        main(["--quick", "--nni", str(bad)])
    assert e.value.code == 2 and "cannot read the NNI results" in capsys.readouterr().err


def test_full_v2_flop_model_counts_every_other_candidate_once():
    """O (the other candidates' forward FLOPs) equals an all-candidates-mixed forward minus the
    path's, counted by the cost model's MAC hooks instead of FlopCounterMode."""
    import random

    import torch

    from supernet.arch import SearchSpace, fix
    from supernet.cost import count_macs
    from tests.conftest import tiny_model
    net = tiny_model("proxyless").train()
    space = SearchSpace(net)
    arch = space.sample(random.Random(1))
    x = torch.randn(4, 3, 32, 32)
    f = hardware.full_v2_flops(net, space, arch, x, k=5)
    path = count_macs(fix(net, arch), x)
    space.set_weights({l: torch.ones(space.n_options(l)) for l in space.labels})
    mixed = count_macs(net, x)
    assert f["forward_flops"] == 2 * path and f["other_candidates_flops"] == 2 * (mixed - path) > 0
    assert abs(f["arch_over_fixed"] - (2 * path + (mixed - path)) / (3 * path)) < 1e-12
    assert abs(f["average_over_fixed"] - (1 + f["arch_over_fixed"] / 5)) < 1e-12


FAULTS = """
import ctypes, resource, sys, torch
from benchmarks.common import keep_freed_memory
# glibc's default mmap threshold (128 KiB) set explicitly: that turns off its dynamic threshold,
# whose state depends on the heap's layout and left 1 MiB blocks unreturned in about 1 run of 4.
assert ctypes.CDLL(None).mallopt(-3, 128 << 10) == 1
def faults():  # a training step's pattern: many activations, all freed at the end of the step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        acts = [torch.ones(1 << 18) for _ in range(64)]  # 64 x 1 MiB
        del acts
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
if sys.argv[1] == "keep":
    assert keep_freed_memory()
    faults()
print(faults())
"""


@pytest.mark.slow
def test_keep_freed_memory_stops_the_page_faults_of_a_step():
    import subprocess
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's")
    root = str(Path(__file__).parents[1])  # benchmarks/ is beside the package, not installed
    default, kept = (int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                                        check=True, cwd=root).stdout) for mode in ("default", "keep"))
    assert default > 5 * 64 * 256 / 2 and kept < default / 20  # glibc re-faults the pages of each trimmed MiB
