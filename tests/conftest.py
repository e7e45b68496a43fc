import os
import random
import shutil
from pathlib import Path

import pytest
import torch

# The tests choose their thread count (torch's default), so no command warns that the
# machine is busy, and child processes run with the same count.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

from supernet.spaces import SPACES, create  # noqa: E402
from supernet.train import fit, load_checkpoint
from supernet.train.metrics import read_metrics

# Small variants of every registered space: same code, CPU-sized.
_SHUFFLE = dict(stage_repeats=(1, 1, 2, 1), width_mult=0.25, num_classes=5)
TINY_OPTIONS = {"shufflenet": _SHUFFLE, "shufflenet-cifar": _SHUFFLE,
                "darts": dict(channels=4, layers=3, num_classes=5),
                "enas-macro": dict(layers=4, channels=4, num_classes=5), "enas-macro-digits": dict(num_classes=5),
                "enas-micro": dict(cells=1, channels=4, nodes=3, num_classes=5),
                "enas-micro-digits": dict(nodes=3, num_classes=5)}
_PROXYLESS = dict(stage_widths=(8, 16, 16), stage_repeats=(1, 2, 1), stage_strides=(2, 1, 2), first_width=8,
                  first_block_width=8, feature_width=32, expansions=(3, 6), num_classes=5)
_FBNET = dict(stage_widths=(8, 16, 16), stage_repeats=(1, 2, 1), stage_strides=(1, 2, 1), stem_width=8, head_width=32,
              num_classes=5)
TINY_OPTIONS.update({"proxyless": _PROXYLESS, "proxyless-small": _PROXYLESS, "fbnet": _FBNET, "fbnet-small": _FBNET})
_RESNET = dict(depths=(1, 1, 1, 1), widths=(4, 8, 8, 8), num_classes=5)
TINY_OPTIONS.update({"resnet18": _RESNET, "resnet18-cifar": _RESNET, "resnet-digits": _RESNET})
TINY_OPTIONS["nas-bench-201"] = dict(channels=4, cells=1, num_classes=5)


def tiny_input_size(name: str) -> int:
    return 32


def tiny_model(name: str, **options) -> torch.nn.Module:
    return create(name, **{**TINY_OPTIONS[name], "input_size": tiny_input_size(name), **options})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


# Registered variants that are the same class with the same tiny options as another entry: looping
# over them would repeat the other's tests (CI time).
SAME_AS = {"proxyless-small": "proxyless", "fbnet-small": "fbnet", "resnet-digits": "resnet18-cifar"}
SPACE_NAMES = sorted(n for n in SPACES if n not in SAME_AS)
# (space, channel_search) for every space; channel search where the space has it.
SPACE_CASES = [(n, cs) for n in SPACE_NAMES
               for cs in ((False, True) if hasattr(SPACES[n].options(), "channel_search") else (False,))]


def assert_equal_nested(a, b):
    """Nested dicts / lists / tensors (a checkpoint's parts) equal, tensors bitwise."""
    _assert_nested(a, b, lambda x, y: torch.equal(x, y), lambda x, y: x == y)


def assert_close_nested(a, b, rtol=1e-5, atol=1e-6):
    """Nested dicts / lists / tensors and floats equal up to float summation order; the rest exactly."""
    _assert_nested(a, b, lambda x, y: x.shape == y.shape and torch.allclose(x.double(), y.double(), rtol=rtol, atol=atol),
                   lambda x, y: abs(x - y) <= atol + rtol * abs(y) if isinstance(x, float) else x == y)


def _assert_nested(a, b, same_tensor, same_value):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_nested(a[k], b[k], same_tensor, same_value)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_nested(x, y, same_tensor, same_value)
    elif isinstance(a, torch.Tensor):
        assert same_tensor(a, b), (a, b)
    else:
        assert same_value(a, b), (a, b)


def assert_resume_is_exact(tmp_path, make, train, cfg, at: int) -> tuple[dict, object]:
    """Trains ``make()``'s fresh ``(model, strategy)`` on ``train`` for ``cfg.steps`` uninterrupted,
    then a fresh pair again from the step-``at`` checkpoint (as after a kill there). Asserts the two
    end bitwise equal: weights, optimizer, strategy state, the metrics rows after ``at`` and the
    export. Returns the uninterrupted run's last checkpoint and strategy."""
    def run(out, resume_from=None):
        model, strategy = make()
        if resume_from is not None:
            out.mkdir()
            shutil.copy(resume_from, out / "last.pt")
        fit(model, train, cfg, out, meta={}, run_config={}, strategy=strategy, resume=resume_from is not None)
        return load_checkpoint(out / "last.pt"), strategy

    full, s_full = run(tmp_path / "full")
    resumed, s_res = run(tmp_path / "resumed", resume_from=tmp_path / "full" / f"step-{at}.pt")
    assert resumed["step"] == full["step"] == cfg.steps
    for k in full["model"]:
        assert torch.equal(full["model"][k], resumed["model"][k]), k
    assert_equal_nested(full["optimizer"], resumed["optimizer"])
    assert_equal_nested(full["strategy"], resumed["strategy"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "img_s"} for r in rows]  # noqa: E731 (wall time)
    full_rows = strip(read_metrics(tmp_path / "full" / "metrics.jsonl"))
    assert strip(read_metrics(tmp_path / "resumed" / "metrics.jsonl")) == full_rows[at:]
    assert s_full.final_arch() == s_res.final_arch()
    return full, s_full


FAULTS = Path(__file__).parent / "faults"  # sitecustomize.py: fault injection and write counting in a child process


def child_env(kill_at_write: int = 0, count_writes: bool = False, **extra) -> dict:
    """The environment of a CLI child process with the test hooks of ``tests/faults/sitecustomize.py``:
    SIGKILL in its ``kill_at_write``-th atomic write (0: never), a report of the files it wrote."""
    env = {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    env["SUPERNET_TEST_KILL_AT_WRITE"] = str(kill_at_write)
    if count_writes:
        env["SUPERNET_TEST_COUNT_WRITES"] = "1"
    return env
