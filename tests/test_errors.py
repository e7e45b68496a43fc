"""User errors the bad-input table cannot stage with an argv alone: a full
disk, a missing optional extra, a damaged checkpoint's fallback, hand-edited search states and
sizes that exceed the memory. Each one is a single stderr line that names the file or setting."""
import errno
import json
import os
import re
import shutil
import sys

import pytest
import yaml

from supernet import cli, demo
from supernet.arch import SearchSpace
from supernet.pipeline.config import load_config
from supernet.runtime.typed import ConfigError
from supernet.search.config import SearchConfig
from supernet.data import DataError, memory
from supernet.export import INSTALL, check_export, export_onnx, opset_range
from supernet.search.state import SearchStateFileError, check_population, validate_state
from supernet.spaces import create
from supernet.train import CheckpointError, load_checkpoint, load_latest, save_checkpoint

from .test_bad_input import snapshot
from .test_pipeline import TINY

TINY_SPACE = dict(width_mult=0.25, stage_repeats=[1, 1, 1, 1], channel_search=True, input_size=16, num_classes=4)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny run after train-supernet and search (what the later stages read)."""
    root = tmp_path_factory.mktemp("errors")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert cli.main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "steps=2"]) == 0
    assert cli.main(["search", "--run-dir", str(run), "generations=1"]) == 0
    return root, run


def one_line(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


# --- 5: a full disk ----------------------------------------------------------------------------------
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device"),
                                         (errno.EDQUOT, "disk quota exceeded")])
def test_full_disk_is_one_line_with_the_path_and_the_free_space(searched, tmp_path, capsys, monkeypatch, code, words):
    from supernet.train import checkpoint

    def full(path, write, mode="w"):  # what atomic_write's temp file meets on a full disk
        raise OSError(code, os.strerror(code), str(path.parent / f".{path.name}.abc123.tmp"))

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    root, _ = searched
    run = tmp_path / "run"
    err = one_line(capsys, cli.main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run),
                                     "steps=2"]), words, "free on", "--resume")
    assert f"while writing {run / 'supernet'}" in err and ".tmp" not in err  # the target, not the temp file
    assert re.search(r"\(\d+(\.\d)? [KMGT]?B free on ", err), err


def test_full_disk_without_a_file_name_names_the_run_dir(searched, tmp_path, capsys, monkeypatch):
    from supernet.train import checkpoint

    def full(path, write, mode="w"):  # a failed write() carries no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    root, _ = searched
    run = tmp_path / "run"
    one_line(capsys, cli.main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run),
                               "steps=2"]), f"while writing {run} (", "free on")


def test_other_os_errors_still_raise(monkeypatch):
    monkeypatch.setattr(cli, "cmd_info", lambda args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        cli.main(["info", "shufflenet"])


# --- 6: ONNX export ----------------------------------------------------------------------------------
def test_opset_range_is_checked_and_never_clamped(tmp_path):
    low, high = opset_range()
    assert low == 10 and high >= 18  # strided Slice needs 10; this torch's TorchScript exporter: 20
    for bad in (low - 1, high + 1, 99):
        with pytest.raises(ConfigError, match=rf"export.opset={bad} is not supported.*opset {low}..{high}"):
            check_export(bad)
    model = create("shufflenet-cifar", **TINY_SPACE)
    with pytest.raises(ConfigError):  # the library call refuses too, before writing anything
        export_onnx(model, None, tmp_path / "m.onnx", opset=99)
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture
def no_onnx(monkeypatch):
    """Python as if the export extra were not installed: importing onnx fails."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)


def test_export_without_the_extra_is_refused_before_any_work(searched, tmp_path, capsys, no_onnx):
    _, trained = searched
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    one_line(capsys, cli.main(["export", "--run-dir", str(run)]), "needs onnx", INSTALL)
    assert snapshot(run) == before  # no arch.json without model.onnx: a retry is not refused
    assert not (run / "arch.json").exists()


def test_demo_without_the_extra_says_so_first_and_skips_only_onnx(tmp_path, capsys, monkeypatch, no_onnx):
    calls = []

    def stage(name, result):
        def fn(*a, **k):
            calls.append(name)
            print(f"[{name}]")
            return result
        return fn

    best = {"top1": 0.5, "top5": 1.0, "flops": 1e6, "params": 1e4}
    monkeypatch.setattr(demo.pipeline, "train_supernet", stage("train", {"steps": 1, "acc": 0.5, "arch": None}))
    monkeypatch.setattr(demo.pipeline, "search", stage("search", {"best": best, "evaluated": 2, "random_mean_top1": 0.2}))
    monkeypatch.setattr(demo.pipeline, "retrain", stage("retrain", {}))
    monkeypatch.setattr(demo.pipeline, "evaluate", stage("evaluate", {"top1": 0.9, "top5": 1.0, "n": 3, "flops": 1e6,
                                                                       "params": 1e4, "arch": {"layer_0": 1}}))
    monkeypatch.setattr(demo.pipeline, "export", stage("export", None))
    run = tmp_path / "demo"
    run.mkdir()
    demo.run_demo(run)
    out, err = capsys.readouterr()
    assert calls == ["train", "search", "retrain", "evaluate"]  # no export attempt
    assert err.startswith("note: onnx not installed: the demo will skip model.onnx") and INSTALL in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((run / "arch.json").read_text()) == {"layer_0": 1} and not (run / "model.onnx").exists()
    assert "ONNX skipped" in out


def test_demo_checks_its_export_opset_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(demo.pipeline, "train_supernet", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(ConfigError, match="export.opset=7 is not supported"):
        demo.run_demo(tmp_path / "demo", ["export.opset=7"])


# --- 7 and 9: files handed in or read back --------------------------------------------------------
def _ck(path, **drop):
    state = {"model": {}, "optimizer": {}, "step": 3, "rng": {}, "meta": {"kind": "subnet", "arch": {}}}
    save_checkpoint(path, {k: v for k, v in state.items() if k not in drop})
    return path


@pytest.mark.parametrize("key", ["meta", "model", "step", "rng", "optimizer"])
def test_checkpoint_missing_an_entry_names_the_file_and_the_entry(tmp_path, key):
    path = _ck(tmp_path / "last.pt", **{key: True})
    with pytest.raises(CheckpointError, match=rf"{path} has no '{key}' entry"):
        load_checkpoint(path)


def test_subnet_checkpoint_needs_its_arch(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "optimizer": {}, "step": 3, "rng": {}, "meta": {"kind": "subnet"}})
    with pytest.raises(CheckpointError, match=r"has no meta\['arch'\] entry"):
        load_checkpoint(path)


def test_weights_only_refusal_is_one_line(tmp_path):
    import argparse
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"x": argparse.Namespace(a=1)})
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value) and "argparse.Namespace, which safe loading (weights_only=True)" in str(e.value)


def test_a_fallback_warns_in_one_line_naming_each_damaged_file(tmp_path, capsys):
    good = _ck(tmp_path / "step-3.pt")
    for name in ("last.pt", "step-6.pt"):
        (tmp_path / name).write_bytes(good.read_bytes()[:200])
    state, used = load_latest(tmp_path)
    err = capsys.readouterr().err
    assert used == good and state["step"] == 3
    assert len(err.strip().splitlines()) == 1, err
    assert "last.pt is damaged" in err and "step-6.pt is damaged" in err and "using step-3.pt (step 3)" in err
    good.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_latest(tmp_path)
    assert capsys.readouterr().err == ""  # the error alone says it: no warnings repeating it
    assert "\n" not in str(e.value) and "last.pt" in str(e.value) and "step-3.pt" in str(e.value)


def test_config_yaml_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  name: [digits\nsupernet: {}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value) and "at line 3, column" in str(e.value)


def test_seeds_take_the_whole_64_bit_range_and_no_more():
    assert load_config(None, [f"supernet.seed={2**63 - 1}", f"search.seed={2**63 - 1}"]).supernet.seed == 2**63 - 1
    for key in ("supernet.seed", "search.seed", "retrain.seed", "data.split_seed"):
        for bad in (2**63, -1):
            with pytest.raises(ConfigError, match=rf"seed={bad} is invalid"):
                load_config(None, [f"{key}={bad}"])


# --- search/state.json -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state(searched):
    _, run = searched
    return json.loads((run / "search" / "state.json").read_text())


def test_saved_state_passes(state):
    space = SearchSpace(create("shufflenet-cifar", **TINY_SPACE))
    assert validate_state(state, "state.json", space) is state


@pytest.mark.parametrize("key", ["version", "algorithm", "generation", "rng", "results", "topk"])
def test_state_missing_a_key_names_the_file_and_the_key(state, key):
    with pytest.raises(SearchStateFileError, match=rf"^s/state.json is not a usable search state: the key '{key}'"):
        validate_state({k: v for k, v in state.items() if k != key}, "s/state.json")


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.update(generation="2"), "'generation' must be an integer, got str"),
    (lambda s: s.update(supernet=[1]), "'supernet' must be an object, got list"),
    (lambda s: s.update(rng=[3, [1, 2]]), "'rng' must be [version, [integers], gauss]"),
    (lambda s: s["results"][0].pop("arch"), "results[0] has no 'arch'"),
    (lambda s: s["results"][1].update(top1_err=None), "results[1]['top1_err'] must be a number, got NoneType"),
    (lambda s: s["topk"].append("[9, 9]"), "topk entry [9, 9] is not among the results"),
    (lambda s: s["results"][0]["arch"].update(layer_0=9), "results[0]['arch'] does not fit this space"),
])
def test_state_with_a_wrong_entry_names_it(state, edit, words):
    bad = json.loads(json.dumps(state))
    edit(bad)
    space = SearchSpace(create("shufflenet-cifar", **TINY_SPACE))
    with pytest.raises(SearchStateFileError) as e:
        validate_state(bad, "state.json", space)
    assert words in str(e.value) and "\n" not in str(e.value)


# --- 8: sizes that exhaust the machine ---------------------------------------------------------------
def test_available_memory_is_known_here():
    avail = memory.available_memory()
    assert avail is None or avail > 0


def test_population_beyond_memory_is_refused_naming_the_setting():
    space = SearchSpace(create("shufflenet-cifar", **TINY_SPACE))
    check_population(SearchConfig(), space)  # the default fits anywhere
    with pytest.raises(DataError, match=r"search.population=1,000,000,000: .* would take about .* more than the .* "
                                        r"available; lower search.population"):
        check_population(SearchConfig(population=10**9), space)


def test_memory_check_uses_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 10**9)
    memory.check_fits(10**8, "x", "y")
    with pytest.raises(DataError, match=r"^data.image_size=64: digits would take about 2.0 GB of memory, more than "
                                        r"the 1.0 GB available; lower it$"):
        memory.check_fits(2 * 10**9, "data.image_size=64: digits", "lower it")
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # unknown: no check
    memory.check_fits(10**30, "x", "y")


# --- checked by pipeline.search ---------------------------------------------------------------------
def test_cli_state_without_a_key(searched, tmp_path, capsys):
    from .bad_scenes import state_without_key
    _, trained = searched
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    argv = [str(a) for a in state_without_key(tmp_path, run)]
    before = snapshot(run)
    one_line(capsys, cli.main(argv), "state.json is not a usable search state: the key 'topk' is missing")
    assert snapshot(run) == before


def test_cli_population_beyond_memory(searched, tmp_path, capsys, monkeypatch):
    from supernet.search import evolution
    # Unchecked, the search would build 10**9 candidates for hours: fail fast instead.
    monkeypatch.setattr(evolution.EvolutionSearch, "run", lambda *a, **k: pytest.fail("searched without the check"))
    _, trained = searched
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = snapshot(run)
    one_line(capsys, cli.main(["search", "--run-dir", str(run), "--force", f"population={10**9}"]),
             "search.population=1,000,000,000")
    assert snapshot(run) == before
