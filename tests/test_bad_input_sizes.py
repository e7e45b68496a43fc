"""Bad-input rows for sizes: a setting that would allocate more memory than the machine has, and a
file that is not one (a device, a FIFO) or is far too large. Each gets one clear line on stderr,
exit 2, no traceback, before anything is built or read, and leaves the run directory as it was."""
import shutil

import pytest

from supernet.cli import main

from . import bad_scenes
from .test_bad_input import refused_in_one_line, trained  # noqa: F401  (trained: the fixture)

HUGE = 10 ** 9


@pytest.fixture(scope="module")
def retrained(trained):  # noqa: F811
    """The trained run with a retrained network, so that a forced retrain has results to keep."""
    root, run = trained
    out = root / "retrained"
    shutil.copytree(run, out)
    assert main(["retrain", "--run-dir", str(out), "steps=2"]) == 0
    return root, out


def new(t, config, *overrides):
    return ["train-supernet", "--config", config, "--run-dir", t / "new", *overrides]


# (id, command builder(tmp, run) -> argv, the message it must print); the run is retrained
CASES = [
    # train-supernet: a network, or the ENAS controller's state, beyond memory
    ("DARTS channels", lambda t, r: new(t, "darts-digits", "space.options.channels=100000"),
     "space.options.channels=100000: the darts supernet ("),
    ("Proxyless width", lambda t, r: new(t, "proxyless-digits", "space.options.width_mult=500"),
     "space.options.width_mult=500: the proxyless-small supernet ("),
    ("ENAS controller", lambda t, r: new(t, "enas-digits", "strategy.lstm_size=200000"),
     "strategy.lstm_size=200000: the ENAS controller (400.02G parameters) with its gradients and Adam state"),
    ("ENAS export samples", lambda t, r: new(t, "enas-digits", f"strategy.export_samples={HUGE}"),
     f"strategy.export_samples={HUGE:,}: {HUGE:,} architectures sampled at once to choose the final one"),
    ("supernet batch", lambda t, r: new(t, t / "tiny.yaml", f"batch_size={HUGE}"),
     f"supernet.batch_size={HUGE}: the shufflenet-cifar supernet ("),
    # --force over a finished run: refused before the earlier supernet is moved aside
    ("--force with a supernet beyond memory", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml",
                                                            "--run-dir", r, "--force", "space.options.width_mult=500"],
     "space.options.width_mult=500: the shufflenet-cifar supernet ("),
    ("--force with an ENAS controller beyond memory", lambda t, r: [
        "train-supernet", "--config", t / "tiny.yaml", "--run-dir", r, "--force", "strategy.name=enas",
        "strategy.lstm_size=200000"], "strategy.lstm_size=200000: the ENAS controller"),
    # retrain: the network, its batch and the final BN recalibration, before the earlier retrain is moved aside
    ("retrain --force, recalibration beyond memory", lambda t, r: ["retrain", "--run-dir", r, "--force",
                                                                   f"bn_recal_batches={HUGE}"],
     f"retrain.bn_recal_batches={HUGE:,}: {HUGE:,} batches of 16 images of 3x16x16 for BN recalibration would take"),
    ("retrain --force, network beyond memory", lambda t, r: ["retrain", "--run-dir", r, "--force",
                                                             "space_options.width_mult=500"],
     "retrain.space_options.width_mult=500: the retrained shufflenet-cifar network ("),
    ("retrain --force, batch beyond memory", lambda t, r: ["retrain", "--run-dir", r, "--force", f"batch_size={HUGE}"],
     f"retrain.batch_size={HUGE}: the retrained shufflenet-cifar network ("),
    # architecture files that are not small regular files, refused unopened
    ("info --arch /dev/zero", lambda t, r: ["info", "shufflenet-cifar", "--arch", "/dev/zero"],
     "architecture file /dev/zero is a character device, not a regular file"),
    ("info --arch FIFO", lambda t, r: ["info", "shufflenet-cifar", "--arch", bad_scenes.fifo_arch(t)],
     "arch.fifo is a FIFO (named pipe), not a regular file"),
    ("retrain --force --arch FIFO", lambda t, r: ["retrain", "--run-dir", r, "--force", "--arch",
                                                  bad_scenes.fifo_arch(t)],
     "arch.fifo is a FIFO (named pipe), not a regular file"),
    ("retrain --arch of 100 MB", lambda t, r: ["retrain", "--run-dir", r, "--force", "--arch", bad_scenes.huge_arch(t)],
     "huge.json is 100.0 MB, more than the 64.0 MB such a file may be"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_too_large_gets_one_clear_line_and_changes_nothing(retrained, tmp_path, capsys, argv, message):
    refused_in_one_line(retrained, tmp_path, capsys, argv, message)
    assert not (tmp_path / "new" / "supernet").exists()  # refused before anything was built


def test_a_cuda_device_is_checked_against_its_own_free_memory(monkeypatch):
    import torch

    from supernet.data.common import DataError
    from supernet.data.memory import check_fits
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 ** 9, 2 * 10 ** 9))
    check_fits(10 ** 8, "x", "y", torch.device("cuda", 0))
    with pytest.raises(DataError, match=r"^x would take about 2.0 GB of cuda:0 memory, more than the 1.0 GB "
                                        r"available; y$"):
        check_fits(2 * 10 ** 9, "x", "y", torch.device("cuda", 0))
