"""The CPU thread count: set by --threads or runtime.threads, recorded in config.yaml and used by
every later stage; a warning when the machine is busy and nobody chose the count."""
import pytest
import torch
import yaml

from supernet.cli import main
from supernet.runtime import threads
from supernet.runtime.threads import warn_if_busy

from ..test_pipeline import TINY


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_busy_machine_is_said_once_with_the_fix(capsys, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert warn_if_busy(2, load=1.9)
    err = capsys.readouterr().err
    assert "this machine is busy (load average 1.9 on 2 cores) and torch would use 2 threads" in err
    assert "pass --threads 1" in err and len(err.strip().splitlines()) == 1
    assert not warn_if_busy(2, load=0.2) and not warn_if_busy(1, load=5.0)


def run(tmp_path, capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0, err
    return yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())


@pytest.mark.slow
def test_the_count_is_recorded_and_used_by_later_stages(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    recorded = run(tmp_path, capsys, "train-supernet", "--config", tmp_path / "tiny.yaml", "--run-dir",
                   tmp_path / "run", "steps=2", "--threads", "1")
    assert recorded["runtime"]["threads"] == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    run(tmp_path, capsys, "search", "--run-dir", tmp_path / "run", "generations=1")
    assert torch.get_num_threads() == 1  # the recorded count, not the process's
    recorded = run(tmp_path, capsys, "search", "--run-dir", tmp_path / "run", "generations=1", "--force",
                   "--threads", "2")
    assert recorded["runtime"]["threads"] == 2 and torch.get_num_threads() == 2


def test_without_a_choice_the_count_in_use_is_recorded(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    recorded = run(tmp_path, capsys, "train-supernet", "--config", tmp_path / "tiny.yaml", "--run-dir",
                   tmp_path / "run", "steps=1")
    assert recorded["runtime"]["threads"] == torch.get_num_threads()


@pytest.mark.parametrize("argv", [["info", "shufflenet-cifar", "--threads", "0"],
                                  ["search", "--run-dir", "nowhere", "--threads", "-1"]])
def test_a_thread_count_below_one_is_one_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--threads must be >= 1" in err and len(err.strip().splitlines()) == 1
