"""What a run's config.yaml records: the settings that apply, loading back to the same config;
the settings of another dataset are refused rather than ignored."""
import shutil

import pytest
import torch
import yaml

from supernet.cli import main
from supernet.pipeline import RunConfig, dump_config, load_config
from supernet.runtime.typed import ConfigError, to_dict
from supernet.train import load_checkpoint

from ..test_pipeline import TINY

CLUTTER = {"clutter_copies", "clutter_fragments", "clutter_noise"}
OTHER_DATASETS = {"root", "skip_corrupt", "synthetic_train", "synthetic_test", "synthetic_classes", *CLUTTER}
DIGITS = {**TINY, "data": {"name": "digits", "image_size": 8, "val_per_class": 2}}


@pytest.mark.parametrize("data, left_out", [
    ({"name": "digits"}, OTHER_DATASETS),
    ({"name": "cluttered-digits", "clutter_noise": 0.1}, OTHER_DATASETS - CLUTTER),
    ({"name": "synthetic", "synthetic_classes": 3}, {"root", "skip_corrupt", "test_fraction", *CLUTTER}),
    ({"name": "cifar10", "root": "c10"}, {"skip_corrupt", "test_fraction", "synthetic_train", "synthetic_test",
                                          "synthetic_classes", *CLUTTER}),
    ({"name": "imagefolder", "root": "imgs", "skip_corrupt": True}, {"test_fraction", "synthetic_train",
                                                                      "synthetic_test", "synthetic_classes", *CLUTTER}),
])
def test_the_record_leaves_out_other_datasets_settings_and_loads_back(tmp_path, data, left_out):
    cfg = load_config(None, {"data": data})
    text = dump_config(cfg)
    recorded = yaml.safe_load(text)["data"]
    assert set(recorded) == {k for k in to_dict(cfg.data)} - left_out
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path) == cfg


def test_the_record_says_amp_acts_on_cuda_only():
    head = dump_config(RunConfig()).splitlines()[:2]
    assert all(line.startswith("# ") for line in head) and "amp acts on CUDA only" in head[1]
    if not torch.cuda.is_available():
        assert "this machine has no CUDA, so here it does nothing" in head[1]


@pytest.mark.parametrize("name, setting, applies", [
    ("digits", "synthetic_train=64", "synthetic"), ("synthetic", "test_fraction=0.3", "digits or cluttered-digits"),
    ("digits", "skip_corrupt=true", "imagefolder"), ("digits", "root=/data", "cifar10 or imagefolder"),
])
def test_a_setting_of_another_dataset_is_refused(name, setting, applies):
    key = setting.split("=")[0]
    with pytest.raises(ConfigError, match=f"data.{key}=.* applies only to data.name={applies}, and this run reads "
                                          f"{name}; remove it"):
        load_config(None, [f"data.name={name}", f"data.{setting}"])


def test_switching_the_dataset_by_override_drops_the_files_settings_of_the_old_one(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"data": {**TINY["data"], "name": "synthetic"}}))
    cfg = load_config(path, ["data.name=cifar10", "data.root=c10"])
    assert cfg.data.synthetic_train == 256 and cfg.data.image_size == TINY["data"]["image_size"]
    with pytest.raises(ConfigError, match="data.synthetic_test=8 is invalid: it applies only to data.name=synthetic"):
        load_config(path, ["data.name=cifar10", "data.root=c10", "data.synthetic_test=8"])


def test_a_digits_run_records_digits_settings_and_resumes_from_old_and_new_records(tmp_path, capsys):
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump(DIGITS))
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run)]) == 0
    full = load_checkpoint(run / "supernet" / "last.pt")
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["data"]["name"] == "digits" and not OTHER_DATASETS & set(recorded["data"])
    assert to_dict(load_config(run / "config.yaml")) == full["config"]  # what the checkpoint says it ran with

    # A crash after step 3, resumed with the new record, and with one written before settings of
    # other datasets were left out (every key, at its default).
    for record in ("new", "old"):
        crashed = tmp_path / record
        shutil.copytree(run, crashed)
        shutil.copy(run / "supernet" / "step-3.pt", crashed / "supernet" / "last.pt")
        if record == "old":
            (crashed / "config.yaml").write_text(yaml.safe_dump(full["config"], sort_keys=False))
        assert main(["train-supernet", "--run-dir", str(crashed), "--resume"]) == 0, capsys.readouterr().err
        resumed = load_checkpoint(crashed / "supernet" / "last.pt")
        assert resumed["step"] == 6 and all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
