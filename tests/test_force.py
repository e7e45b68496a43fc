"""--force never wrecks the old run: the old stage folder and config.yaml stay until the new run has
written its first checkpoint; an early failure (or a kill) before that puts the run back as it was."""
import hashlib
import signal
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from supernet.cli import main
from supernet.train import load_checkpoint
from supernet.train.metrics import read_metrics

from .conftest import child_env
from .test_pipeline import TINY


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("force")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "steps=2",
                 "checkpoint_every=1"]) == 0
    return root / "tiny.yaml", run


def test_a_forced_restart_that_fails_before_its_first_checkpoint_changes_nothing(trained, tmp_path, capsys):
    config, ref = trained
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = snapshot(run)
    capsys.readouterr()
    code = main(["train-supernet", "--config", str(config), "--run-dir", str(run), "--force", "optim.lr=1e30",
                 "checkpoint_every=100"])
    err = capsys.readouterr().err
    assert code == 2 and "loss became" in err and "No checkpoint was saved yet" in err
    assert f"--force changed nothing: the earlier supernet is still in {run / 'supernet'}" in err
    assert snapshot(run) == before


def test_a_nan_setting_is_refused_before_anything_is_touched(trained, tmp_path, capsys):
    config, ref = trained
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = snapshot(run)
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run), "--force", "optim.lr=.nan"]) == 2
    assert "supernet.optim.lr must be a finite number, got nan" in capsys.readouterr().err
    assert snapshot(run) == before


def test_a_forced_restart_replaces_the_whole_stage_once_it_has_a_checkpoint(trained, tmp_path):
    config, ref = trained
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run), "--force", "seed=1",
                 "steps=3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["supernet"]["seed"] == 1
    assert sorted(p.name for p in (run / "supernet").glob("*.pt")) == ["last.pt", "step-3.pt"]  # no old step-1/2
    assert [r["step"] for r in read_metrics(run / "supernet" / "metrics.jsonl")] == [2, 3]
    assert not (run / ".replaced").exists()


def _killed(*args, kill_at_write):
    env = child_env(kill_at_write)
    p = subprocess.run([sys.executable, "-m", "supernet", *map(str, args)], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()


# The forced run's writes: 1 = its pending config.yaml (before the old folder moves aside), then step-3.pt (2)
# and last.pt (3) at step 3, then the commit's config.yaml at the next log line (4).
@pytest.mark.parametrize("kill_at_write, committed", [
    (1, False),
    pytest.param(2, False, marks=pytest.mark.slow),
    pytest.param(4, True, marks=pytest.mark.slow),
])
def test_a_forced_restart_killed_is_finished_by_the_next_start(trained, tmp_path, capsys, kill_at_write, committed):
    config, ref = trained
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = snapshot(run)
    args = ["train-supernet", "--config", config, "--run-dir", run, "--force", "seed=1"]
    _killed(*args, kill_at_write=kill_at_write)
    capsys.readouterr()
    assert main(["train-supernet", "--run-dir", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert not (run / ".replaced").exists()
    if not committed:
        if kill_at_write > 1:
            assert "had written no checkpoint; the earlier results are back in place" in err
        drop_tb = lambda s: {k: v for k, v in s.items() if "/tb/" not in k}  # noqa: E731 (TensorBoard events, if installed)
        assert drop_tb(snapshot(run)) == drop_tb(before)  # the old run, already done: the resume found nothing to do
        return
    assert "had written a checkpoint; it replaces the earlier results" in err
    fresh = tmp_path / "fresh"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(fresh), "seed=1"]) == 0
    a, b = load_checkpoint(run / "supernet" / "last.pt"), load_checkpoint(fresh / "supernet" / "last.pt")
    assert a["step"] == b["step"] == 6 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (run / "config.yaml").read_text() == (fresh / "config.yaml").read_text()
