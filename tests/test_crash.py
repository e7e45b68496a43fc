"""SIGKILL at arbitrary moments, then --resume: the result equals an uninterrupted run, bitwise.

Kills come two ways: ``child_env(kill_at_write=N)`` kills the process in the middle of its N-th atomic
write (temp file written, not yet renamed: the worst moment for a checkpoint), and a timer kills
it wherever it happens to be.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from supernet.strategies import STRATEGIES
from supernet.train import load_checkpoint
from supernet.train.metrics import read_metrics

from .conftest import assert_equal_nested, child_env
from .strategies.standin import SHORT, short_strategy, standin_table_file
from .test_pipeline import TINY

pytestmark = pytest.mark.slow  # every test here runs and kills the CLI in subprocesses

CONFIG = {**TINY, "supernet": {**TINY["supernet"], "steps": 12, "checkpoint_every": 2, "log_every": 1}}


def supernet(*args, kill_at_write=0, kill_after=None, kill_when=None) -> int:
    """Run the CLI; SIGKILL it after ``kill_after`` seconds, or as soon as ``kill_when()`` holds
    (polled every 10 ms: a moment defined by the run's progress, not by this machine's speed)."""
    env = child_env(kill_at_write)
    p = subprocess.Popen([sys.executable, "-m", "supernet", *map(str, args)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_when is not None:
        while p.poll() is None and not kill_when():
            time.sleep(0.01)
        kill_after = 0
    try:
        p.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return p.returncode


def lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def finish(stage_args, out_dir):
    """Re-run a stage (resuming when it left a checkpoint or state) until it exits 0."""
    for _ in range(20):
        started = out_dir.is_dir() and any(p.suffix in (".pt", ".json") for p in out_dir.iterdir())
        args = list(stage_args) + (["--resume"] if started else [])
        if supernet(*args) == 0:
            return
    raise AssertionError("the stage never finished")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = root / "reference"
    assert supernet("train-supernet", "--config", config, "--run-dir", run) == 0
    assert supernet("search", "--run-dir", run) == 0
    return config, run


def same_training(a, b, steps=12):
    ca, cb = load_checkpoint(a / "supernet" / "last.pt"), load_checkpoint(b / "supernet" / "last.pt")
    assert ca["step"] == cb["step"] == steps
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sa)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "img_s"} for r in rows]  # noqa: E731 (wall time)
    assert drop(read_metrics(a / "supernet" / "metrics.jsonl")) == drop(read_metrics(b / "supernet" / "metrics.jsonl"))


# Writes: 1 = config.yaml, then per checkpoint step-N.pt and last.pt (2, 3 at step 2; 4, 5 at step 4 ...).
@pytest.mark.parametrize("kill_at_write", [2, 3, 7])
def test_training_killed_during_a_checkpoint_write_resumes_exactly(reference, tmp_path, kill_at_write):
    config, ref = reference
    run = tmp_path / "run"
    args = ["train-supernet", "--config", config, "--run-dir", run]
    assert supernet(*args, kill_at_write=kill_at_write) == -signal.SIGKILL
    for path in (run / "supernet").glob("*.pt"):  # whatever was renamed into place is complete
        load_checkpoint(path)
    finish(args, run / "supernet")
    same_training(ref, run)
    assert not list((run / "supernet").glob(".*.tmp"))  # the killed write's temp file was cleaned up


def test_training_killed_at_arbitrary_moments_resumes_exactly(reference, tmp_path):
    config, ref = reference
    run = tmp_path / "run"
    args = ["train-supernet", "--config", config, "--run-dir", run]
    metrics = run / "supernet" / "metrics.jsonl"
    for rows in (3, 8):  # mid-run by construction: after that many logged steps of 12, between checkpoints
        started = (run / "supernet").is_dir() and list((run / "supernet").glob("*.pt"))
        code = supernet(*args, *(["--resume"] if started else []), kill_when=lambda: lines(metrics) >= rows)
        assert code == -signal.SIGKILL, "the run ended before the kill: this test would prove nothing"
        assert load_checkpoint(run / "supernet" / "last.pt")["step"] < 12
    finish(args, run / "supernet")
    same_training(ref, run)


# Search writes: 1 = config.yaml, then per generation state.json, history.jsonl, topk.json (2, 3, 4; 5, 6, 7 ...).
@pytest.mark.parametrize("kill_at_write", [2, 6])
def test_search_killed_mid_generation_resumes_to_the_same_result(reference, tmp_path, kill_at_write):
    import shutil
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    shutil.rmtree(run / "search")
    assert supernet("search", "--run-dir", run, kill_at_write=kill_at_write) == -signal.SIGKILL
    assert not (run / "search" / "best_arch.json").exists()
    finish(["search", "--run-dir", run], run / "search")
    assert (run / "search" / "history.jsonl").read_text() == (ref / "search" / "history.jsonl").read_text()
    assert json.loads((run / "search" / "best_arch.json").read_text()) == json.loads((ref / "search" / "best_arch.json").read_text())


def test_a_damaged_checkpoint_is_reported_and_the_previous_one_used(reference, tmp_path, capsys):
    import shutil
    from supernet.cli import main
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    last = run / "supernet" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated, e.g. by a full disk
    assert main(["search", "--run-dir", str(run), "--force", "generations=1"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "is damaged or truncated" in line]
    assert len(warning) == 1 and f"{last.parent}: last.pt is damaged or truncated (checksum mismatch" in warning[0]
    assert "using step-" in warning[0]  # one line: what was skipped, and what is used instead


def test_search_killed_at_arbitrary_moments_resumes_to_the_same_result(reference, tmp_path):
    import shutil
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    shutil.rmtree(run / "search")
    history = run / "search" / "history.jsonl"
    for done in (0, 6, 12):  # at its start, then inside generations 1 and 2 (6 candidates each, of 3)
        started = (run / "search" / "state.json").exists()
        code = supernet("search", "--run-dir", run, *(["--resume"] if started else []),
                        kill_when=lambda: (run / "search").is_dir() and lines(history) >= done)
        assert code == -signal.SIGKILL, "the search ended before the kill: this test would prove nothing"
        assert not (run / "search" / "best_arch.json").exists()
    finish(["search", "--run-dir", run], run / "search")
    assert (run / "search" / "history.jsonl").read_text() == (ref / "search" / "history.jsonl").read_text()
    assert json.loads((run / "search" / "best_arch.json").read_text()) == json.loads((ref / "search" / "best_arch.json").read_text())


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.parametrize("strategy", [*sorted(STRATEGIES), "custom_strategy:LearnedSampling"])
def test_every_strategy_killed_during_a_checkpoint_write_resumes_exactly(tmp_path, monkeypatch, strategy):
    """The harness above for every registered strategy (on the first space it accepts, with its short
    settings and a stand-in latency table) and for the example's learned sampler: architecture
    parameters, controllers, their optimizers, baselines and held-out streams are all in the
    checkpoint's strategy state."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [EXAMPLES, os.environ.get("PYTHONPATH")])))
    name = "spos" if ":" in strategy else strategy  # the example runs where SPOS runs
    _, _, space = short_strategy(name)
    config = tmp_path / "tiny.yaml"
    short = {**CONFIG, "supernet": {**CONFIG["supernet"], "steps": 6}, "space": space}  # a FairNAS step is 8 paths
    config.write_text(yaml.safe_dump(short))  # the table is the model's: the strategy does not change it
    short.update(latency={"table": str(standin_table_file(config, tmp_path / "latency.json"))},
                 strategy={"name": strategy, **SHORT.get(strategy, {})})
    config.write_text(yaml.safe_dump(short))
    ref, run = tmp_path / "reference", tmp_path / "run"
    assert supernet("train-supernet", "--config", config, "--run-dir", ref) == 0
    args = ["train-supernet", "--config", config, "--run-dir", run]
    assert supernet(*args, kill_at_write=5) == -signal.SIGKILL  # inside last.pt's write at step 4
    assert load_checkpoint(run / "supernet" / "step-4.pt")["step"] == 4
    finish(args, run / "supernet")
    same_training(ref, run, steps=6)
    a, b = load_checkpoint(ref / "supernet" / "last.pt"), load_checkpoint(run / "supernet" / "last.pt")
    assert_equal_nested(a["strategy"], b["strategy"])  # θ, Adam's moments and step, the baseline
    chose = ref / "search" / "best_arch.json"
    assert not chose.exists() or chose.read_text() == (run / "search" / "best_arch.json").read_text()
