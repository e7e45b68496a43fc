"""One run directory, one owner: every stage holds RUN/.lock (fcntl.flock) for its lifetime; a second
process is refused with the holder's pid; a lock left by a killed process never blocks a resume."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from supernet.cli import main
from supernet.pipeline.rundir import RunDirInUse, holder, run_lock
from supernet.train import load_checkpoint
from supernet.train.metrics import read_metrics

from .test_pipeline import TINY

_HELD = []  # lock files this test process holds until it exits (hold_lock)


def hold_lock(run_dir, stage="train-supernet") -> list:
    """Hold ``run_dir``'s lock as another supernet process would (for the bad-input table); returns []."""
    fd = os.open(os.path.join(run_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": os.getpid(), "stage": stage}).encode())
    _HELD.append(fd)
    return []


HOLD = "import sys, time; from supernet.pipeline.rundir import run_lock\nwith run_lock(sys.argv[1], 'test'):\n" \
       "    print('held', flush=True); time.sleep(600)"


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"held\n"
        with pytest.raises(RunDirInUse) as e:
            with run_lock(tmp_path, "search"):
                pass
        assert str(e.value) == f"{tmp_path} is in use by supernet pid {p.pid} (test); wait for it or use another --run-dir"
    finally:
        p.kill()
        p.wait()
    # The kernel dropped the killed holder's lock; its file (and pid) is still there and blocks nothing.
    assert holder(tmp_path)["pid"] == p.pid
    with run_lock(tmp_path, "search"):
        assert holder(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_the_lock_is_reentrant_within_a_process_and_exclusive_across_open_files(tmp_path):
    with run_lock(tmp_path, "demo"):
        with run_lock(tmp_path, "train-supernet"):  # the demo's stages
            pass
        assert holder(tmp_path)["stage"] == "demo"
        fd = os.open(tmp_path / ".lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


# A constant LR, so that the killed run may be resumed to a shorter length than it was started with.
CONFIG = {**TINY, "supernet": {**TINY["supernet"], "steps": 400, "checkpoint_every": 2, "log_every": 2,
                               "optim": {"lr": 0.05, "schedule": "constant"}}}


def _wait_for(cond, what, timeout=120):
    t = time.time()
    while not cond():
        assert time.time() - t < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_two_trainings_on_one_run_dir_one_is_refused_and_a_killed_holder_never_blocks_resume(tmp_path, capsys):
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(CONFIG))
    cmd = [sys.executable, "-m", "supernet", "train-supernet", "--config", str(config), "--run-dir", str(run)]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (holder(run) or {}).get("pid") == first.pid, "the first training to take the lock")
        _wait_for(lambda: (run / "supernet" / "step-2.pt").exists(), "the first checkpoint")
        second = subprocess.run(cmd + ["seed=1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        assert first.poll() is None, "the first training ended before the second started: the test proved nothing"
        err = second.stderr.decode()
        assert second.returncode == 2 and err.strip().splitlines() == [
            f"supernet train-supernet: error: {run} is in use by supernet pid {first.pid} (train-supernet); "
            f"wait for it or use another --run-dir"], err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == first.pid  # left behind by the killed holder
    step = load_checkpoint(run / "supernet" / "last.pt")["step"]
    assert main(["train-supernet", "--run-dir", str(run), "--resume", f"steps={step + 2}"]) == 0, capsys.readouterr().err
    steps = [r["step"] for r in read_metrics(run / "supernet" / "metrics.jsonl")]
    assert steps == list(range(2, step + 3, 2))  # one run's lines only, each step once
    ck = load_checkpoint(run / "supernet" / "last.pt")
    assert ck["step"] == step + 2 and ck["config"]["supernet"]["seed"] == 0
    assert not (run / ".lock").exists()


@pytest.mark.slow
def test_under_torchrun_every_rank_stops_when_the_run_dir_is_held(tmp_path):
    """Rank 0 takes the lock and every rank shares its outcome: a refusal stops both, none waits forever
    in a collective."""
    config, run = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(TINY))
    run.mkdir()
    hold_lock(run, "search")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "supernet", "train-supernet", "--config", str(config), "--run-dir", str(run)],
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode != 0
    refusal = f"supernet train-supernet: error: {run} is in use by supernet pid {os.getpid()} (search)"
    assert p.stderr.count(refusal) == 2, p.stderr[-3000:]  # rank 0 and rank 1
    assert sorted(x.name for x in run.iterdir()) == [".lock"]
