"""A resumed training stage is the run its config says: every setting that decides what the steps
compute must be the one the checkpoint was trained with (each difference is named); only how the
run logs, checkpoints, shows progress and reads its data may change, and the length only where
nothing already done depended on it. ``config.yaml`` is then what every step ran with."""
import json

import pytest
import yaml

from supernet.cli import main
from supernet.train import load_checkpoint

from ..strategies.test_darts_pipeline import TINY_DARTS
from ..test_pipeline import TINY


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def interrupted(tmp_path, capsys, config, name="run"):
    """A finished run whose last checkpoints were lost: its newest is at step 2 (of 4)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / name
    code, err = run_cli(capsys, "train-supernet", "--config", path, "--run-dir", run)
    assert code == 0, err
    for ck in (run / "supernet").glob("*.pt"):
        if ck.name != "step-2.pt":
            ck.unlink()
    return run


SHORT = {**TINY, "supernet": {**TINY["supernet"], "steps": 4, "checkpoint_every": 2, "keep_checkpoints": 5}}


@pytest.mark.parametrize("override, words", [
    ("supernet.seed=7", "supernet.seed: the run used 0, now 7"),
    ("batch_size=8", "supernet.batch_size: the run used 16, now 8"),
    ("optim.lr=0.1", "supernet.optim.lr: the run used 0.05, now 0.1"),
    ("steps=8", "supernet.steps: the run used 4, now 8"),  # the linear schedule runs over the length
    ("strategy.max_tries=3", "strategy.max_tries: the run used"),
    ("data.synthetic_train=64", "data.synthetic_train: the run used 96, now 64"),
])
def test_a_resume_that_changes_what_the_steps_compute_is_refused(tmp_path, capsys, override, words):
    run = interrupted(tmp_path, capsys, SHORT)
    before = (run / "config.yaml").read_text()
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", override)
    assert code == 2 and "was trained with other settings (" in err and words in err, err
    assert "resume with the saved ones, or start over with --force" in err and len(err.strip().splitlines()) == 1
    assert (run / "config.yaml").read_text() == before and not (run / "supernet" / "last.pt").exists()


def test_a_resume_may_change_logging_checkpoints_progress_and_workers(tmp_path, capsys):
    run = interrupted(tmp_path, capsys, SHORT)
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", "log_every=1", "checkpoint_every=4",
                        "keep_checkpoints=1", "progress=true", "data.num_workers=0", "diverged_at=20")
    assert code == 0, err
    recorded = yaml.safe_load((run / "config.yaml").read_text())["supernet"]
    assert (recorded["log_every"], recorded["checkpoint_every"], recorded["diverged_at"]) == (1, 4, 20)
    assert load_checkpoint(run / "supernet" / "last.pt")["step"] == 4


def test_more_steps_are_allowed_where_the_schedule_does_not_depend_on_them(tmp_path, capsys):
    constant = {**SHORT, "supernet": {**SHORT["supernet"], "optim": {"lr": 0.05, "schedule": "constant"}}}
    run = interrupted(tmp_path, capsys, constant)
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", "steps=6")
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["supernet"]["steps"] == 6
    assert load_checkpoint(run / "supernet" / "last.pt")["step"] == 6
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", "steps=5")
    assert code == 2 and "holds a checkpoint at step 6, beyond steps=5" in err


@pytest.mark.parametrize("override, words", [
    ("strategy.arch_lr=0.01", "strategy.arch_lr: the run used 0.0003, now 0.01"),
    pytest.param("strategy.unrolled=false", "strategy.unrolled: the run used True, now False", marks=pytest.mark.slow),
])
def test_a_strategy_setting_that_its_restored_state_would_override_is_refused(tmp_path, capsys, override, words):
    run = interrupted(tmp_path, capsys, TINY_DARTS)
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", override)
    assert code == 2 and words in err, err


@pytest.mark.slow
def test_a_finished_run_resumed_leaves_its_artifacts_as_they_were(tmp_path, capsys):
    path = tmp_path / "darts.yaml"
    path.write_text(yaml.safe_dump(TINY_DARTS))
    run = tmp_path / "run"
    assert run_cli(capsys, "train-supernet", "--config", path, "--run-dir", run)[0] == 0
    files = {p: p.read_bytes() for p in (run / "search").iterdir()}
    assert json.loads((run / "search" / "best_arch.json").read_text())["step"] == 4
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume")
    assert code == 0, err
    assert {p: p.read_bytes() for p in (run / "search").iterdir()} == files


def test_retrain_resume_refuses_another_seed(tmp_path, capsys):
    run = tmp_path / "run"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert run_cli(capsys, "train-supernet", "--config", path, "--run-dir", run, "steps=2")[0] == 0
    arch = json.dumps({f"layer_{i}": 0 for i in range(4)} | {f"channel_{i}": 0 for i in range(4)})
    assert run_cli(capsys, "retrain", "--run-dir", run, "--arch", arch)[0] == 0
    (run / "retrain" / "last.pt").unlink()
    code, err = run_cli(capsys, "retrain", "--run-dir", run, "--arch", arch, "--resume", "seed=3")
    assert code == 2 and "retrain.seed: the run used 0, now 3" in err, err
    code, err = run_cli(capsys, "retrain", "--run-dir", run, "--arch", arch, "--resume", "log_every=1")
    assert code == 0, err


def test_a_key_given_with_and_without_its_section_is_refused(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    code, err = run_cli(capsys, "train-supernet", "--config", path, "--run-dir", tmp_path / "r", "seed=1",
                        "supernet.seed=2")
    assert code == 2 and "seed is given twice, as 'seed' and as 'supernet.seed'; give it once" in err
    assert not (tmp_path / "r").exists()


def test_a_latency_table_set_by_a_later_stage_does_not_block_a_resume(tmp_path, capsys):
    from ..strategies.standin import standin_table_file
    run = interrupted(tmp_path, capsys, SHORT)
    table = standin_table_file(run / "config.yaml", tmp_path / "table.json")
    record = yaml.safe_load((run / "config.yaml").read_text())
    record["latency"]["table"] = str(table)  # as `supernet search ... latency.table=FILE` records it
    (run / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume")
    assert code == 0, err


def test_a_latency_table_that_decides_the_steps_is_compared_by_its_contents(tmp_path, capsys):
    from ..strategies.standin import standin_table_file
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(SHORT))
    table = standin_table_file(path, tmp_path / "table.json")
    other = standin_table_file(path, tmp_path / "other.json", overhead_ms=11.0)
    constrained = {**SHORT, "latency": {"table": str(table)}, "strategy": {"constraints": ["latency<=1000ms"]}}
    run = interrupted(tmp_path, capsys, constrained)
    moved = tmp_path / "moved.json"
    table.rename(moved)
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", f"latency.table={other}")
    assert code == 2 and "inputs.latency_table_sha256: the run used" in err, err
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume", f"latency.table={moved}")
    assert code == 0, err


def test_a_setting_added_since_the_checkpoint_was_written_does_not_block_a_resume(tmp_path, capsys):
    from supernet.train import save_checkpoint
    run = interrupted(tmp_path, capsys, SHORT)
    ck = run / "supernet" / "step-2.pt"
    state = {k: v for k, v in load_checkpoint(ck).items() if k != "format_version"}
    del state["config"]["supernet"]["grad_clip"]  # as an older release wrote it
    save_checkpoint(ck, state)
    code, err = run_cli(capsys, "train-supernet", "--run-dir", run, "--resume")
    assert code == 0, err
