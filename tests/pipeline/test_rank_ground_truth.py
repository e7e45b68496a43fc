"""``supernet rank --ground-truth TABLE``: a nas-bench-201 run's architectures read from a
NAS-Bench-201 table instead of trained alone. The tables are small fakes written here."""
import copy
import itertools
import json
import shutil
from types import SimpleNamespace

import pytest
import yaml

from supernet import SearchSpace, parse_arch
from supernet.arch.formats import to_nas_bench_201
from supernet.cli import main
from supernet.pipeline.rank import ground_truth, look_up, read_table
from supernet.ranking import build_report, report_table
from supernet.ranking.config import RankConfig
from supernet.runtime.typed import ConfigError
from supernet.spaces import create

from ..test_pipeline import TINY

HEADER = "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,ArchitectureString\n"
ARCHS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
         "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
         "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"]
CIFAR10 = [93.5, 85.25, 10.0, 88.75]  # made up; the real table is never read by the tests


def table(path, archs=ARCHS, rows=None):
    rows = rows or [f"{a},{a - 5},{a - 9},{s}" for a, s in zip(CIFAR10, archs)]
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny nas-bench-201 supernet (SPOS), trained once for the module."""
    root = tmp_path_factory.mktemp("rank-nb201")
    cfg = copy.deepcopy(TINY)
    cfg["space"] = {"name": "nas-bench-201", "options": {"channels": 4, "cells": 1}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(root / "run")]) == 0
    (root / "archs.txt").write_text("\n".join(ARCHS) + "\n")  # NAS-Bench-201 strings, one per line
    return root


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained / "run", tmp_path / "run")
    return tmp_path / "run"


def rank(trained, run, table_path, *options):
    return main(["rank", "--run-dir", str(run), "--ground-truth", str(table_path), f"archs_file={trained / 'archs.txt'}",
                 "progress=false", "proxy_batch=8", *options])


@pytest.mark.slow
def test_rank_reads_the_ground_truth_from_the_table(trained, run, tmp_path, capsys):
    assert rank(trained, run, table(tmp_path / "t.csv")) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "rank" / "results.jsonl").read_text().splitlines()]
    assert [r["nas_bench_201"] for r in rows] == ARCHS and [r["seed"] for r in rows] == [0] * 4  # no second seed
    assert [r["standalone"] for r in rows] == [a / 100 for a in CIFAR10]
    assert all(r["ground_truth"] == "CIFAR10TestAccuracy200Epochs" for r in rows)
    report = json.loads((run / "rank" / "report.json").read_text())
    assert report["best"]["standalone"] == 0.935 and report["ceiling"]["archs"] == 0
    path = str((tmp_path / "t.csv").resolve())
    assert report["ground_truth"] == {"table": path, "column": "CIFAR10TestAccuracy200Epochs"}
    assert report["steps"] is None  # nothing ran rank.steps
    assert (f"\nrank: 4 architectures of the spos supernet, the ground truth read from {path} "
            f"(CIFAR10TestAccuracy200Epochs; nothing trained alone)\n") in out
    assert "trained alone for" not in out and "rank.repeat=0" not in out and "stand-alone top-1" not in out
    assert "ceiling    none: the table holds one figure per architecture" in out
    recorded = yaml.safe_load((run / "config.yaml").read_text())["rank"]
    assert recorded["ground_truth"] == path

    assert rank(trained, run, table(tmp_path / "t.csv"), "ground_truth_column=cifar100", "--force") == 0
    rows = [json.loads(line) for line in (run / "rank" / "results.jsonl").read_text().splitlines()]
    assert [r["standalone"] for r in rows] == [(a - 5) / 100 for a in CIFAR10]


@pytest.mark.slow
@pytest.mark.parametrize("make, options, message", [
    (lambda p: table(p, ARCHS[:3]), (), f"architecture {ARCHS[3]} is not in rank.ground_truth"),
    (lambda p: table(p), ("ground_truth_column=svhn",), "has no accuracy column 'svhn' (its columns: "
                                                          "CIFAR10TestAccuracy200Epochs,"),
    (lambda p: table(p, ARCHS[:3] + ["|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"]), (),
     "line 5 is not an architecture of the nas-bench-201 space: NAS-Bench-201 string '|sep_conv_3x3~0|"),
    (lambda p: p.write_text("arch,acc\n0,1\n") and p, (), "has no architecture column 'ArchitectureString'"),
])
def test_a_table_that_does_not_fit_is_refused_in_one_line(trained, run, tmp_path, capsys, make, options, message):
    code = rank(trained, run, make(tmp_path / "t.csv"), *options)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (run / "rank" / "results.jsonl").exists()  # refused before anything was trained or written


def test_a_run_of_another_space_is_refused(tmp_path):
    cfg = SimpleNamespace(space=SimpleNamespace(name="darts"), rank=RankConfig(ground_truth=str(table(tmp_path / "t.csv"))))
    with pytest.raises(ConfigError, match="this run's space is 'darts'; a table fits only a run of the nas-bench-201"):
        ground_truth(cfg)


def test_the_table_reader(tmp_path):
    space = SearchSpace(create("nas-bench-201", channels=1, cells=1))
    accuracy = read_table(table(tmp_path / "t.csv"), "ImageNetTestAccuracy200Epochs", space)
    assert sorted(accuracy.values()) == sorted((a - 9) / 100 for a in CIFAR10)
    with pytest.raises(ConfigError, match=r"line 3: CIFAR10TestAccuracy200Epochs is '-1', not an accuracy in percent"):
        read_table(table(tmp_path / "bad.csv", rows=[f"1,1,1,{ARCHS[0]}", f"-1,1,1,{ARCHS[1]}"]),
                   "CIFAR10TestAccuracy200Epochs", space)
    with pytest.raises(ConfigError, match="is not a file"):
        read_table(tmp_path / "missing.csv", "CIFAR10TestAccuracy200Epochs", space)
    t = {"column": "c", "path": "t.csv", "space": space,
         "accuracy": read_table(table(tmp_path / "t.csv"), "CIFAR10TestAccuracy200Epochs", space)}
    assert look_up(t, parse_arch(ARCHS[0], space))["standalone"] == 0.935


def test_the_report_says_where_a_table_ground_truth_came_from():
    def plan(**settings):
        return {"strategy": "spos", "pick": 0, "candidates": [{}] * 4,
                "settings": {"seeds": [0, 1], "steps": 300, "ground_truth": None, "ground_truth_column": "cifar10",
                             **settings}}
    rows = [{"index": i, "seed": 0, "arch": {}, "standalone": a / 100, "supernet_score": s, "flops": f, "params": f}
            for i, (a, s, f) in enumerate(zip(CIFAR10, (0.9, 0.5, 0.1, 0.7), (4, 3, 1, 2)))]
    read = [{**r, "ground_truth": "CIFAR10TestAccuracy200Epochs"} for r in rows]
    report = build_report(plan(ground_truth="/t.csv"), read, topk=2)
    assert report["ground_truth"] == {"table": "/t.csv", "column": "CIFAR10TestAccuracy200Epochs"}
    assert report["steps"] is None and report["ceiling"]["archs"] == 0
    text = report_table(report)
    assert text.splitlines()[0] == ("rank: 4 architectures of the spos supernet, the ground truth read from /t.csv "
                                    "(CIFAR10TestAccuracy200Epochs; nothing trained alone)")
    assert "ceiling    none: the table holds one figure per architecture, so there is no second seed" in text
    assert "the strategy's pick (arch 0): table top-1 0.9350" in text and "table top-1 over the K" in text
    assert "trained alone for" not in text and "rank.repeat" not in text and "stand-alone" not in text
    # trained alone: the steps and the seed, and a missing ceiling put down to rank.repeat=0
    alone = report_table(build_report(plan(), rows, topk=2))
    assert alone.splitlines()[0] == "rank: 4 architectures of the spos supernet, trained alone for 300 steps (seed 0)"
    assert "not measured (rank.repeat=0)" in alone and "stand-alone top-1 over the K" in alone


def full_table(path, space):
    """Every architecture of the space with a made-up accuracy (what a search's picks are looked up in)."""
    keys = itertools.product(*(range(space.count(label)) for label in space.labels))
    rows = [f"{50 + i % 40},1,1,{to_nas_bench_201(space.decode(key), space)}" for i, key in enumerate(keys)]
    return table(path, rows=rows)


def test_a_nas_bench_201_search_writes_each_architectures_string_and_rank_reads_it(trained, run, tmp_path, capsys):
    assert main(["search", "--run-dir", str(run), "algorithm=aging", "sample_size=3"]) == 0
    space = SearchSpace(create("nas-bench-201", channels=1, cells=1))
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert best["nas_bench_201"] == to_nas_bench_201(best["arch"], space) and best["space"] == "nas-bench-201"
    topk = json.loads((run / "search" / "topk.json").read_text())
    assert topk[0]["arch"] == best["arch"]
    assert all(e["nas_bench_201"] == to_nas_bench_201(e["arch"], space) for e in topk)
    assert parse_arch(run / "search" / "best_arch.json", space) == best["arch"]  # retrain's, info's reader
    capsys.readouterr()
    # rank takes the search's picks from both files, and finds them in the table by their strings
    assert main(["rank", "--run-dir", str(run), "--ground-truth", str(full_table(tmp_path / "all.csv", space)),
                 "archs=5", "pool=8", "progress=false", "proxy_batch=8"]) == 0
    rows = [json.loads(line) for line in (run / "rank" / "results.jsonl").read_text().splitlines()]
    assert rows[0]["source"] == "pick" and rows[0]["nas_bench_201"] == best["nas_bench_201"]
    assert [r["nas_bench_201"] for r in rows[1:len(topk)]] == [e["nas_bench_201"] for e in topk[1:len(topk)]]
    assert "the strategy's pick (arch 0): table top-1" in capsys.readouterr().out


def test_a_strategy_that_chooses_its_own_architecture_writes_its_string_too(tmp_path):
    """DARTS on nas-bench-201: best_arch.json holds the argmax architecture's NAS-Bench-201 string."""
    cfg = copy.deepcopy(TINY)
    cfg["space"] = {"name": "nas-bench-201", "options": {"channels": 4, "cells": 1}}
    cfg["strategy"] = {"name": "darts"}
    cfg["supernet"] = {**cfg["supernet"], "steps": 2, "checkpoint_every": 2}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-supernet", "--config", str(tmp_path / "tiny.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    best = json.loads((tmp_path / "run" / "search" / "best_arch.json").read_text())
    space = SearchSpace(create("nas-bench-201", channels=1, cells=1))
    assert best["nas_bench_201"] == to_nas_bench_201(best["arch"], space)
    assert parse_arch(best["nas_bench_201"], space) == best["arch"]
