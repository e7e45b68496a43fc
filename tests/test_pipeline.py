"""End to end: the real CLI, stage by stage, on tiny synthetic data; and the shipped configs."""
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from supernet.data import build_data
from supernet.pipeline import build, load_config, stage_config
from supernet.cli import main
from supernet.train import load_checkpoint

from .data.test_data import _write_cifar, _write_folder

TINY = {
    "data": {"name": "synthetic", "image_size": 16, "synthetic_train": 96, "synthetic_test": 32,
             "synthetic_classes": 4, "val_per_class": 4},
    "space": {"name": "shufflenet-cifar",
              "options": {"width_mult": 0.25, "stage_repeats": [1, 1, 1, 1], "channel_search": True}},
    "supernet": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "keep_checkpoints": 3, "log_every": 2,
                 "progress": False, "optim": {"lr": 0.05}},
    "search": {"population": 6, "generations": 3, "topk": 3, "mutations": 3, "crossovers": 3,
               "recal_batches": 2, "recal_batch_size": 8, "val_batch_size": 16, "progress": False},
    "retrain": {"steps": 4, "batch_size": 16, "checkpoint_every": 2, "progress": False, "bn_recal_batches": 2,
                "optim": {"lr": 0.05}},
}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.slow
def test_stage_by_stage_with_resume(tmp_path, config, capsys):
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run)
    assert {p.name for p in (run / "supernet").iterdir()} >= {"last.pt", "step-3.pt", "step-6.pt", "metrics.jsonl"}
    full = load_checkpoint(run / "supernet" / "last.pt")
    assert full["step"] == 6 and full["config"]["supernet"]["steps"] == 6

    # A crash after step 3: the run directory holds step 3 as its last checkpoint; --resume finishes it.
    crashed = tmp_path / "crashed"
    shutil.copytree(run, crashed)
    shutil.copy(run / "supernet" / "step-3.pt", crashed / "supernet" / "last.pt")
    cli(capsys, "train-supernet", "--run-dir", crashed, "--resume")
    resumed = load_checkpoint(crashed / "supernet" / "last.pt")
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])

    out = cli(capsys, "search", "--run-dir", run)
    assert "search: 18 candidates" in out
    history = [json.loads(l) for l in (run / "search" / "history.jsonl").read_text().splitlines()]
    best = json.loads((run / "search" / "best_arch.json").read_text())
    assert len(history) == 18 and len({json.dumps(h["arch"]) for h in history}) == 18
    assert best["top1"] == max(h["top1"] for h in history)
    assert (run / "search" / "search.png").stat().st_size > 10_000

    # A search stopped after one generation continues to the same result.
    part = tmp_path / "part"
    shutil.copytree(run, part)
    shutil.rmtree(part / "search")
    cli(capsys, "search", "--run-dir", part, "generations=1")
    cli(capsys, "search", "--run-dir", part, "--resume", "generations=3")
    assert (part / "search" / "history.jsonl").read_text() == (run / "search" / "history.jsonl").read_text()

    cli(capsys, "retrain", "--run-dir", run)
    ck = load_checkpoint(run / "retrain" / "last.pt")
    assert ck["meta"]["arch"] == best["arch"] and ck["bn_recalibrated"]
    assert all(m.affine for m in build.load_subnet(run, stage_config(run, [], "retrain"),
                                                   build_data(load_config(run / "config.yaml").data))[0].modules()
               if isinstance(m, torch.nn.BatchNorm2d))

    cli(capsys, "evaluate", "--run-dir", run)
    report = json.loads((run / "eval.json").read_text())
    assert 0 <= report["top1"] <= report["top5"] <= 1 and report["n"] == 32 and report["split"] == "test"

    out = cli(capsys, "export", "--run-dir", run)
    assert "matches PyTorch" in out and "ONNX Runtime latency" in out
    measured = json.loads((run / "model_latency.json").read_text())
    assert measured["median_ms"] > 0 and measured["backend"] == "onnxruntime" and measured["batch"] == 1
    assert json.loads((run / "eval.json").read_text())["latency"]["onnxruntime"] == measured  # evaluate ran first
    assert json.loads((run / "arch.json").read_text()) == best["arch"]
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 16, 16)
    model, _ = build.load_subnet(run, load_config(run / "config.yaml"), build_data(load_config(run / "config.yaml").data))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    (got,) = session.run(None, {"images": x.numpy()})  # a batch of 5: the batch axis is dynamic
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_retrain_takes_an_explicit_arch(tmp_path, config, capsys):
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run, "steps=1")
    arch = {f"layer_{i}": 3 for i in range(4)} | {f"channel_{i}": 0 for i in range(4)}
    (tmp_path / "a.json").write_text(json.dumps(arch))
    cli(capsys, "retrain", "--run-dir", run, "--arch", tmp_path / "a.json", "steps=1")
    assert load_checkpoint(run / "retrain" / "last.pt")["meta"]["arch"] == arch


def test_search_never_reads_the_test_split(tmp_path, config, capsys, monkeypatch):
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run, "steps=2")
    real = build.build_data

    class Poisoned(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            raise AssertionError("the search read the test split")

    def build_data(cfg):
        bundle = real(cfg)
        bundle.test = Poisoned()
        return bundle

    monkeypatch.setattr(build, "build_data", build_data)
    cli(capsys, "search", "--run-dir", run, "generations=1")


def test_stages_refuse_to_overwrite_and_name_the_fix(tmp_path, config, capsys):
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run, "steps=1")
    before = (run / "supernet" / "last.pt").read_bytes()
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 2
    assert "already holds a supernet; pass --resume" in capsys.readouterr().err
    assert (run / "supernet" / "last.pt").read_bytes() == before
    assert main(["search", "--run-dir", str(run), "data.image_size=32"]) == 2
    assert "search may not change data.image_size" in capsys.readouterr().err
    assert main(["search", "--run-dir", str(run), "population=0"]) == 2
    assert "population must be positive, got 0" in capsys.readouterr().err
    assert main(["search", "--run-dir", str(run), "popsize=3"]) == 2
    assert "unknown key 'search.popsize'" in capsys.readouterr().err
    assert main(["retrain", "--run-dir", str(tmp_path / "nope")]) == 2
    assert "has no config.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cifar10", "imagenet"])
def test_shipped_configs_run_a_few_steps_on_fake_folders(tmp_path, name, capsys):
    if name == "cifar10":
        _write_cifar(tmp_path / "data" / "cifar-10-batches-py", n=20)
        root = tmp_path / "data" / "cifar-10-batches-py"
        shrink = ["data.val_per_class=1"]
    else:
        _write_folder(tmp_path / "data", n_train=4, n_val=2)
        root = tmp_path / "data"
        shrink = ["data.image_size=32", "data.val_per_class=1", "space.options.width_mult=0.25"]
    run = tmp_path / "run"
    args = ["train-supernet", "--config", name, "--run-dir", run, f"data.root={root}", "data.num_workers=0",
            *shrink, "steps=2", "batch_size=4", "progress=false"]
    if name == "imagenet":  # the official 290M..360M bins cannot be met by a 32x32 quarter-width model
        assert main([str(a) for a in args]) == 2
        assert "FLOPs bin [290M, 300M] is outside this space's FLOPs range" in capsys.readouterr().err
        args.append("strategy.flops_bins=[450000, 550000, 650000, 750000]")
    cli(capsys, *args)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["name"] == ("cifar10" if name == "cifar10" else "imagefolder")
    if name == "imagenet":  # the official recipe survives the overrides
        assert cfg["supernet"]["optim"]["lr"] == 0.5 and cfg["search"]["constraints"] == ["flops<=330M"]
    assert load_checkpoint(run / "supernet" / "last.pt")["step"] == 2


def test_a_run_is_a_function_of_its_config_not_of_global_rng_state(tmp_path, config, capsys):
    weights = []
    for i, outside_seed in enumerate((1, 2)):
        torch.manual_seed(outside_seed)  # whatever the caller did before must not matter
        run = tmp_path / f"run{i}"
        cli(capsys, "train-supernet", "--config", config, "--run-dir", run, "steps=2")
        cli(capsys, "retrain", "--run-dir", run, "--arch", json.dumps([0, 1, 2, 3, 3, 2, 1, 0]), "steps=2")
        weights.append([load_checkpoint(run / s / "last.pt")["model"] for s in ("supernet", "retrain")])
    for a, b in zip(*weights):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_search_warns_loudly_when_every_candidate_scores_at_chance(tmp_path, config, capsys):
    run = tmp_path / "run"
    cli(capsys, "train-supernet", "--config", config, "--run-dir", run, "steps=2", "optim.lr=0")  # learns nothing
    assert main(["search", "--run-dir", str(run), "generations=2"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: all 6 candidates of generation 0 scored at chance") == 1  # once, not per generation
    assert "the supernet has not learned" in err and "lower supernet.optim.lr" in err
