"""What every benchmark shares: statistics, the machine, the reference training step, interleaved
rounds, peak-memory accounting, glibc's allocator setting and the table they print into."""
from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import random
import statistics
import time
import weakref
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
# The one private torch API here: a dispatch mode sees every tensor a step allocates, which is how
# the memory figures count the activations on CPU (torch.cuda.max_memory_allocated is CUDA only).
from torch.utils._python_dispatch import TorchDispatchMode

from supernet.runtime.progress import progress_bar
from supernet.strategies import StepContext
from supernet.train.optim import SGD


# --- statistics and the machine ------------------------------------------------------------------------
def summary(xs: list[float]) -> dict:
    lo, hi = median_ci(xs)
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "ci95": [lo, hi]}


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics x_(j) and
    x_(n+1-j), with j the largest rank such that P(Binomial(n, 1/2) < j) <= (1 - level) / 2. With
    fewer than 6 samples no such j exists and the interval is min-max."""
    xs, n = sorted(xs), len(xs)
    j, tail = 0, 0.0
    while j < n // 2:
        tail += math.comb(n, j) / 2**n  # P(B = j)
        if tail > (1 - level) / 2:
            break
        j += 1
    return (xs[j - 1], xs[n - j]) if j else (xs[0], xs[-1])


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "malloc": "keeps freed memory" if freed_memory_kept else "glibc defaults"}


# --- glibc's allocator ----------------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
freed_memory_kept = False  # set by keep_freed_memory(); machine() reports it


def keep_freed_memory() -> bool:
    """Make glibc keep the memory a CPU training step frees, instead of handing it back to the OS.

    By default glibc returns large freed blocks (``munmap``, heap trimming), and the next step
    page-faults its activations back in. How many depends on the heap's history: 1,000-15,000
    faults per step in plain training on a 2-core VM, and up to 90,000 per step of the CIFAR
    supernet at batch 64 when the benchmark alternates it with fixed subnets. A fault costs about
    1.8 us there (writing 640 MiB of fresh 1 MiB blocks: 336 ms with 163,530 faults, 38 ms with the
    memory kept), so up to 5% of a step, and the faults were the largest source of order-dependent
    noise in the step ratios. With these settings resident memory stays at the peak of one step,
    which a training process reaches anyway. Users get the same from glibc's own environment
    variables, ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`` (mallopt(3)).
    Returns whether the settings were applied (False off glibc, e.g. on macOS)."""
    global freed_memory_kept
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl and macOS have no (compatible) mallopt
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Blocks up to 32 MiB (glibc's maximum) come from the heap rather than mmap, and the heap is
    # trimmed only when more than 2 GiB at its top are free. Both are 1 on success.
    freed_memory_kept = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return freed_memory_kept


# --- the reference step -----------------------------------------------------------------------------
def sgd(model: torch.nn.Module, lr: float = 0.01, weight_decay: float = 4e-5) -> torch.optim.SGD:
    """SGD as in SPOS training (DARTS: lr 0.025, wd 3e-4), with momentum buffers already there, so
    every timed step does the same work as a step in the middle of training."""
    opt = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    for p in model.parameters():
        opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return opt


def train_step(model, opt, x, y) -> None:
    """One plain training step: what a fixed subnet costs."""
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def step_context(model, opt, held_out: Optional[Callable] = None) -> StepContext:
    """What ``supernet.train.fit`` lends a strategy, on the CPU, without the loop around it."""
    return StepContext(net=model, criterion=F.cross_entropy, optimizer=opt, device=torch.device("cpu"),
                       autocast=contextlib.nullcontext, held_out=held_out)


@torch.no_grad()
def check_same_function(model, space, arch, fixed, x) -> None:
    """The supernet under ``arch`` and its fixed subnet must compute the same thing (eval mode)."""
    space.activate(arch)
    model.eval(), fixed.eval()
    try:
        a, b = model(x), fixed(x)
    finally:
        model.train(), fixed.train()
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max())):
        raise AssertionError(f"fix() changed the function: max |diff| {float((a - b).abs().max()):.3g}")


def rounds(forms: dict, seconds: float, min_rounds: int, seed: int, desc: str, progress: bool) -> dict:
    """Interleaved rounds of ``forms`` (name -> callable(round)), in a shuffled order each round,
    until about ``seconds`` are spent (at least ``min_rounds``); every form's times by name."""
    times = {k: [] for k in forms}
    t_end = time.perf_counter() + seconds
    bar = progress_bar(desc=desc, unit="round", disable=not progress, leave=False)
    r = 0
    while r < min_rounds or time.perf_counter() < t_end:
        order = list(forms)
        random.Random(seed + r).shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            forms[k](r)
            times[k].append(time.perf_counter() - t0)
        r += 1
        bar.update(1)
    bar.close()
    return times


def step_rounds(make_forms: Callable, seconds: float, min_rounds: int, size_by: str, desc: str,
                progress: bool) -> tuple[dict, int, int]:
    """Interleaved rounds of training-step forms, ``k`` steps per timed sample.

    ``make_forms(steps)`` gives a round's ``[(name, callable)]``, each callable running the steps
    ``steps`` (anything it needs built, built outside the timing). The forms are rotated, so each
    leads in turn. Round 0 warms up the allocator and kernels and sets ``k`` (one sample of
    ``size_by`` lasts about 0.15 s: short samples, many rounds) and the number of rounds (about
    ``seconds``, at least ``min_rounds``). Returns the seconds per step of each form by name, ``k``,
    and the next step index."""
    k, step, r, rounds = 1, 0, 0, min_rounds
    times: dict[str, list[float]] = {}
    bar = progress_bar(total=rounds, desc=desc, leave=False, disable=not progress)
    while r <= rounds:
        steps = range(step, step + k)
        step += k
        forms = make_forms(steps)
        got = {}
        for form, fn in forms[r % len(forms):] + forms[:r % len(forms)]:
            t0 = time.perf_counter()
            fn()
            got[form] = (time.perf_counter() - t0) / k
        if r == 0:
            k = max(1, min(16, round(0.15 / got[size_by])))
            rounds = max(min_rounds, min(200, round(seconds / (k * sum(got.values())))))
            times = {form: [] for form, _ in forms}
            bar.reset(total=rounds)
        else:
            for form, dt in got.items():
                times[form].append(dt)
            bar.update()
        r += 1
    bar.close()
    return times, k, step


# --- memory ---------------------------------------------------------------------------------------------
def _tensors(out) -> list:
    """The tensors in an op's output (a tensor, or tuples and lists of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


class _PeakMemory(TorchDispatchMode):
    """Live bytes of the tensors created while active (activations, gradients, temporaries), and
    their peak; storages that existed before (weights, optimizer state, inputs) are not counted."""

    def __init__(self, existing: set[int]):
        super().__init__()
        self.existing, self.tracked = existing, {}
        self.live = self.peak = 0

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self.tracked.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            if t.device.type != "meta":
                st = t.untyped_storage()
                key, n = st.data_ptr(), st.nbytes()
                if n and key not in self.tracked and key not in self.existing:
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    self.tracked[key] = weakref.finalize(st, self._free, key, n)
        return out


def peak_step_bytes(step: Callable, model, opt, x, y) -> dict:
    """Peak memory of ``step(model, opt, x, y)``: resident state (weights, buffers, optimizer
    state) plus the peak of what the step allocates."""
    resident = [*model.parameters(), *model.buffers(),
                *(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v))]
    resident_bytes = sum(t.numel() * t.element_size() for t in resident)
    opt.zero_grad(set_to_none=True)
    existing = {t.untyped_storage().data_ptr() for t in [*resident, x, y]}
    with _PeakMemory(existing) as mem:
        step(model, opt, x, y)
    return {"resident_bytes": resident_bytes, "step_peak_bytes": mem.peak, "peak_bytes": resident_bytes + mem.peak}


# --- the NNI peer's files -------------------------------------------------------------------------------
def read_peer(path: Optional[str], script: str) -> Optional[dict]:
    """The JSON a peer script (``../shared/peers/nni/SCRIPT --json FILE``) wrote, or None."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the NNI results {path}: {err}; write them with {script} --json FILE") from None


def peer_rows(raw: dict) -> dict:
    """The rows of ``family_cpu.py --json FILE``'s table that ran, by (job, strategy)."""
    return {(r.get("job"), r.get("strategy")): r for r in raw["table"] if r.get("status") == "ok"}


# --- the printed table ----------------------------------------------------------------------------------
class Table:
    """The benchmark's printed table: one row per figure (median, 95% CI, min-max, n), plus text lines."""

    def __init__(self, title: str):
        self.lines = [title, "", f"| {'figure':<66} | {'median':>10} | {'95% CI of median':>19} | {'min-max':>19} | {'n':>3} |",
                      f"|{'-' * 68}|{'-' * 12}:|{'-' * 20}:|{'-' * 20}:|{'-' * 4}:|"]

    def row(self, label: str, s: dict, fmt: str = "{:.3f}", scale: float = 1.0) -> None:
        lo, hi = fmt.format(s["min"] * scale), fmt.format(s["max"] * scale)
        clo, chi = (fmt.format(v * scale) for v in s["ci95"])
        self.lines.append(f"| {label:<66} | {fmt.format(s['median'] * scale):>10} | {clo + ' - ' + chi:>19} | "
                          f"{lo + ' - ' + hi:>19} | {s['n']:>3} |")

    def memory(self, label: str, a: int, b: int) -> None:
        """Two peaks in bytes: their ratio, and both in MB."""
        self.lines.append(f"| {label:<66} | {a / b:>10.2f} | {'':>19} | {f'{a / 2**20:.0f} / {b / 2**20:.0f}':>19} | {1:>3} |")

    def text(self, line: str) -> None:
        self.lines.append(line)

    def __str__(self) -> str:
        return "\n".join(self.lines)
