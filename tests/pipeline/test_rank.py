"""``supernet rank`` end to end on tiny runs: the report, the rows, resume, refusals, α strategies."""
import json
import shutil

import pytest
import yaml

from supernet.cli import main

from ..strategies.test_darts_pipeline import TINY_DARTS
from ..test_pipeline import TINY

SHORT = ["archs=5", "steps=3", "pool=10", "repeat=3", "progress=false"]
ROW_KEYS = {"arch", "index", "seed", "source", "supernet_score", "standalone", "flops", "params", "naswot", "synflow"}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SPOS supernet (no search ran), trained once for the module."""
    root = tmp_path_factory.mktemp("rank")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def rows_of(run):
    return [json.loads(line) for line in (run / "rank" / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rank_trains_k_architectures_and_reports_against_the_baselines(run, capsys):
    code, out, err = run_cli(capsys, "rank", "--run-dir", run, *SHORT)
    assert code == 0, err
    rows = rows_of(run)
    assert len(rows) == 5 + 3 and all(ROW_KEYS <= set(r) for r in rows)
    assert [r["seed"] for r in rows] == [0] * 5 + [1] * 3
    assert len({json.dumps(r["arch"]) for r in rows if r["seed"] == 0}) == 5
    report = json.loads((run / "rank" / "report.json").read_text())
    assert report["archs"] == 5 and set(report["baselines"]) == {"flops", "params", "naswot", "synflow"}
    assert -1 <= report["kendall_tau"] <= 1 and "spearman" in report and "kendall_p" in report["supernet"]
    assert report["ceiling"]["archs"] == 3 and report["ceiling"]["kendall_tau"] is not None
    assert "pick" not in report  # no search ran: the score's own pick is reported per row
    assert (run / "rank" / "rank.png").stat().st_size > 10_000
    assert "ceiling" in out and "naswot" in out and "tau-b" in out
    # The K are spread over the supernet's scores: the lowest and the highest of the pool are among them.
    plan = json.loads((run / "rank" / "plan.json").read_text())
    assert [c["source"] for c in plan["candidates"]] == ["stratified"] * 5
    recorded = yaml.safe_load((run / "config.yaml").read_text())["rank"]
    assert recorded["archs"] == 5 and recorded["steps"] == 3


@pytest.mark.slow
def test_a_killed_rank_resumes_to_the_rows_of_an_uninterrupted_one(run, tmp_path, capsys):
    assert run_cli(capsys, "rank", "--run-dir", run, *SHORT)[0] == 0
    full = rows_of(run)
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "rank" / "report.json").unlink()
    (cut / "rank" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full[:3]))
    code, out, err = run_cli(capsys, "rank", "--run-dir", cut, "--resume", *SHORT)
    assert code == 0, err
    assert out.count("/8 arch ") == 5  # only the 5 jobs left were trained
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(rows_of(cut)) == strip(full)


def test_rank_refuses_to_overwrite_a_changed_resume_and_settings_of_other_stages(run, capsys):
    assert run_cli(capsys, "rank", "--run-dir", run, *SHORT)[0] == 0
    before = (run / "rank" / "results.jsonl").read_text()
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, *SHORT)
    assert code == 2 and "--resume to continue it or --force" in err
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, "--resume", *SHORT[:-2], "steps=4")
    assert code == 2 and "rank.steps was 3, now 4" in err
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, "population=4")
    assert code == 2 and "population" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, "--force", "archs=5", "repeat=2")
    assert code == 2 and "rank.repeat=2" in err
    assert (run / "rank" / "results.jsonl").read_text() == before


def test_rank_takes_a_users_list_of_architectures(run, tmp_path, capsys):
    from supernet.arch import SearchSpace
    from supernet.pipeline.build import build_supernet, load_data
    from supernet.pipeline.config import stage_config
    import random
    cfg = stage_config(run, [], "rank")
    space = SearchSpace(build_supernet(cfg, load_data(cfg)))
    rng = random.Random(3)
    archs = [space.sample(rng) for _ in range(4)]
    (tmp_path / "a.json").write_text(json.dumps({"arch": archs[0]}))
    listing = tmp_path / "archs.txt"
    listing.write_text("a.json\n" + "".join(json.dumps(a) + "\n" for a in archs[1:]))
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, f"archs_file={listing}", "steps=2", "repeat=0",
                           "progress=false")
    assert code == 0, err
    assert [r["arch"] for r in rows_of(run)] == archs
    assert json.loads((run / "rank" / "report.json").read_text())["ceiling"]["archs"] == 0


@pytest.mark.slow
def test_an_alpha_strategy_reports_its_pick_and_the_log_probability_of_each_architecture(tmp_path, capsys):
    config = tmp_path / "darts.yaml"
    search = {"recal_batches": 2, "recal_batch_size": 8, "val_batch_size": 16, "progress": False}  # scores the paths
    config.write_text(yaml.safe_dump({**TINY_DARTS, "search": search}))
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 0
    code, out, err = run_cli(capsys, "rank", "--run-dir", run, "archs=3", "steps=1", "pool=4", "repeat=0",
                             "proxy_batch=4", "progress=false")
    assert code == 0, err
    rows = rows_of(run)
    best = json.loads((run / "search" / "best_arch.json").read_text())["arch"]
    assert rows[0]["source"] == "pick" and rows[0]["arch"] == best
    assert all(r["log_prob"] < 0 for r in rows)
    report = json.loads((run / "rank" / "report.json").read_text())
    assert report["pick"]["index"] == 0 and "log_prob" in report and "the strategy's pick" in out


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # wall time differs


@pytest.mark.slow
def test_a_rank_killed_in_a_write_resumes_to_the_same_rows(run, tmp_path, capsys):
    import subprocess
    import sys
    from ..conftest import child_env
    full = tmp_path / "full"
    shutil.copytree(run, full)
    assert run_cli(capsys, "rank", "--run-dir", full, *SHORT)[0] == 0
    # writes: config.yaml, plan.json, then results.jsonl once per row; killed while writing the 3rd row
    cmd = [sys.executable, "-m", "supernet", "rank", "--run-dir", str(run), *SHORT]
    p = subprocess.run(cmd, env=child_env(kill_at_write=5, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -9, p.stderr[-2000:]
    assert len(rows_of(run)) == 2  # the last complete file; the third row's lies in a temp file beside it
    code, out, err = run_cli(capsys, "rank", "--run-dir", run, "--resume", *SHORT)
    assert code == 0, err
    assert not list((run / "rank").glob(".*.tmp"))
    assert _strip(rows_of(run)) == _strip(rows_of(full))


@pytest.mark.slow
def test_under_torchrun_the_ranks_train_different_architectures_to_the_same_rows(run, tmp_path, capsys):
    from ..test_distributed import launch
    alone = tmp_path / "alone"
    shutil.copytree(run, alone)
    assert run_cli(capsys, "rank", "--run-dir", alone, *SHORT)[0] == 0
    writes = launch(2, "rank", "--run-dir", run, *SHORT)
    assert writes[1] == 0 and writes[0] > 0  # rank 0 gathers and writes
    assert _strip(rows_of(run)) == _strip(rows_of(alone))


def refused(capsys, run, *options) -> str:
    """The one line a refused rank prints; it trains nothing and leaves config.yaml as it was."""
    before = (run / "config.yaml").read_text()
    code, _, err = run_cli(capsys, "rank", "--run-dir", run, *options)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (run / "rank").exists() and (run / "config.yaml").read_text() == before
    return err


def test_rank_refuses_more_architectures_than_the_space_or_the_pool_holds(tmp_path, capsys):
    config = tmp_path / "small.yaml"
    small = {**TINY, "space": {"name": "shufflenet-cifar", "options": {"width_mult": 0.25,
                                                                        "stage_repeats": [1, 1, 1, 1]}}}
    config.write_text(yaml.safe_dump(small))  # 4 blocks of 4 choices: 256 architectures
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 0
    err = refused(capsys, run, "archs=300", "pool=3000", "progress=false")
    assert "rank.archs=300 is more than this space holds (256 architectures); set archs to at most 256" in err
    # 220 random draws from 256 architectures repeat some: fewer than K distinct ones, refused before scoring
    err = refused(capsys, run, "archs=200", "pool=220", "progress=false")
    assert "rank.pool=220 random architectures hold" in err and "fewer than rank.archs=200; raise pool" in err


def test_rank_refuses_a_run_without_a_trained_supernet(run, capsys):
    shutil.rmtree(run / "supernet")
    err = refused(capsys, run, *SHORT)
    assert f"{run} has no trained supernet: run 'supernet train-supernet --run-dir {run}' first" in err


def test_rank_refuses_a_ground_truth_table_of_another_space(run, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("CIFAR10TestAccuracy200Epochs,ArchitectureString\n"
                     "93.5,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|\n")
    err = refused(capsys, run, "--ground-truth", table, *SHORT)
    assert "this run's space is 'shufflenet-cifar'; a table fits only a run of the nas-bench-201 space" in err
