"""Proxyless and FBNet through the CLI: the packaged digits configs for a few steps, every stage,
and the one-line error of a latency loss without a latency table."""
import json

import pytest

from supernet.cli import main

NO_TABLE = {"proxyless-digits": ["strategy.latency_loss=null", "strategy.latency_lambda=0.1", "strategy.ref_latency=80"],
            "fbnet-digits": ["strategy.latency_loss=null"]}
SHRINK = {"proxyless-digits": ["space.options.stage_repeats=[1,1,1,1,2,1]"],  # one block with 'zero'
          "fbnet-digits": ["space.options.stage_repeats=[1,1,1,1,1,1,1]"]}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("config", ["proxyless-digits", "fbnet-digits"])
def test_packaged_config_runs_every_stage(tmp_path, capsys, config):
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", config, "--run-dir", str(run), "steps=2"]) == 2
    assert "needs a latency table for this target: set latency.table=FILE" in capsys.readouterr().err
    short = ["steps=3", "batch_size=8", "supernet.progress=false", "strategy.warmup_steps=1", "supernet.checkpoint_every=3",
             "retrain.batch_size=8"]
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run, *NO_TABLE[config], *SHRINK[config], *short)
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert best["strategy"] == config.split("-")[0] and (run / "search" / "search.png").stat().st_size > 0
    if config == "fbnet-digits":  # the stages after train-supernet do not know which strategy ran (CI time)
        return
    cli(capsys, "retrain", "--run-dir", run, "retrain.steps=2", "retrain.progress=false", "retrain.checkpoint_every=2")
    cli(capsys, "evaluate", "--run-dir", run)
    assert json.loads((run / "eval.json").read_text())["arch"] == best["arch"]
    cli(capsys, "export", "--run-dir", run)
    assert (run / "model.onnx").stat().st_size > 0
