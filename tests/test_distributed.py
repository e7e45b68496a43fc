"""torch.distributed on CPU: 2 processes with gloo, launched by torchrun, 1 thread each."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from supernet.strategies import STRATEGIES
from supernet.train import load_checkpoint
from supernet.train.metrics import read_metrics

from .conftest import assert_close_nested, assert_equal_nested, child_env
from .test_pipeline import TINY
from .train.ddp_worker import VARIANTS

pytestmark = pytest.mark.slow  # end-to-end: pytest -m "not slow" leaves them out


def launch(nproc, *args):
    env = child_env(count_writes=True, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "supernet", *map(str, args)]
    if nproc == 1:
        cmd = [sys.executable, "-m", "supernet", *map(str, args)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return {int(r): int(n) for r, n in re.findall(r"rank (\d+) wrote (\d+) files", p.stderr)}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    writes = launch(2, "train-supernet", "--config", root / "tiny.yaml", "--run-dir", run)
    return root, run, writes


def test_only_rank_0_writes(two_process_run):
    root, run, writes = two_process_run
    assert writes[1] == 0 and writes[0] > 0
    assert [r["step"] for r in read_metrics(run / "supernet" / "metrics.jsonl")] == [2, 4, 6]  # logged once


def test_two_process_training_resumes_exactly_and_across_world_sizes(two_process_run, tmp_path):
    root, run, _ = two_process_run
    full = load_checkpoint(run / "supernet" / "last.pt")
    crashed = tmp_path / "crashed"
    shutil.copytree(run, crashed)
    shutil.copy(run / "supernet" / "step-3.pt", crashed / "supernet" / "last.pt")
    launch(2, "train-supernet", "--run-dir", crashed, "--resume")
    resumed = load_checkpoint(crashed / "supernet" / "last.pt")
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    # Across world sizes (2 processes' checkpoint resumed in 1): the BN-free weights test below.


def worker(nproc, out, kinds, resume=False):
    """Run ``kinds`` one after the other in one launch; their checkpoints, by kind."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    script = ["-m", "tests.train.ddp_worker", str(out), ",".join(kinds), "resume" if resume else "start"]
    cmd = [sys.executable, *script] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *script]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return {k: load_checkpoint(Path(out) / k / "last.pt") for k in kinds}


KINDS = ["subnet", *sorted(STRATEGIES), *VARIANTS]  # every registered strategy, present and future


def test_two_processes_and_a_resume_across_world_sizes_give_the_one_process_weights(tmp_path):
    """Without BatchNorm, 2 ranks on half batches (averaged gradients; DDP for the fixed subnet)
    compute one process's update on the whole batch, up to float summation order. For every kind,
    a 2-process run, and a 2-process checkpoint resumed in 1 process, end at the 1-process weights;
    both ranks hold bitwise the same strategy state (α, θ, a controller and its baseline), and
    that state is the 1-process one."""
    ones, twos = worker(1, tmp_path / "one", KINDS), worker(2, tmp_path / "two", KINDS)
    for kind in KINDS:
        (tmp_path / "mixed" / kind).mkdir(parents=True)
        shutil.copy(tmp_path / "two" / kind / "step-3.pt", tmp_path / "mixed" / kind / "last.pt")
    resumed = worker(1, tmp_path / "mixed", KINDS, resume=True)
    for kind in KINDS:
        one, two, res, o, t = ones[kind], twos[kind], resumed[kind], tmp_path / "one" / kind, tmp_path / "two" / kind
        for k, v in one["model"].items():
            assert not torch.equal(v, load_checkpoint(o / "step-3.pt")["model"][k]) or "layer" in k, (kind, k)
            assert torch.allclose(two["model"][k], v, rtol=1e-5, atol=1e-6), (kind, k)
            assert torch.allclose(res["model"][k], v, rtol=1e-5, atol=1e-6), (kind, k)
        if kind != "subnet":
            r0, r1 = (torch.load(t / f"strategy-rank{r}.pt") for r in (0, 1))
            assert_equal_nested(r0, r1)  # the ranks agree exactly
            assert_close_nested(r0, torch.load(o / "strategy-rank0.pt"))  # and with one process


def test_a_search_split_across_two_processes_equals_one_process(two_process_run, tmp_path):
    root, run, _ = two_process_run
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(run, one)
    shutil.copytree(run, two)
    launch(1, "search", "--run-dir", one)
    writes = launch(2, "search", "--run-dir", two)
    assert writes[1] == 0
    assert (one / "search" / "history.jsonl").read_text() == (two / "search" / "history.jsonl").read_text()
    assert (one / "search" / "best_arch.json").read_text() == (two / "search" / "best_arch.json").read_text()


def test_an_nsga2_search_split_across_two_processes_equals_one_process(two_process_run, tmp_path):
    root, run, _ = two_process_run
    one, two = tmp_path / "one", tmp_path / "two"
    nsga2 = ["algorithm=nsga2", "objectives=[error,flops]"]
    shutil.copytree(run, one)
    shutil.copytree(run, two)
    launch(1, "search", "--run-dir", one, *nsga2)
    assert launch(2, "search", "--run-dir", two, *nsga2)[1] == 0
    for name in ("history.jsonl", "pareto.json", "best_arch.json"):
        assert (one / "search" / name).read_text() == (two / "search" / name).read_text(), name


def test_retrain_runs_with_ddp(two_process_run, tmp_path):  # the weights: the BN-free test above
    root, run, _ = two_process_run
    work = tmp_path / "work"
    shutil.copytree(run, work)
    writes = launch(2, "retrain", "--run-dir", work, "--arch", "[0, 1, 2, 3, 3, 2, 1, 0]")
    assert writes[1] == 0 and load_checkpoint(work / "retrain" / "last.pt")["step"] == TINY["retrain"]["steps"]
