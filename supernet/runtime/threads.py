"""How many CPU threads torch uses, and a warning when the machine is already busy.

torch runs one OpenMP thread per core by default. OpenMP threads spin while they wait for each
other, so when other processes share the cores a step can take many times longer, not twice as
long (measured numbers: docs/performance.md). The thread count also changes results by rounding:
a run is bitwise repeatable only with the same count, so the pipeline records it in
``config.yaml`` (``runtime.threads``) and every later stage uses the recorded count.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class RuntimeConfig:
    threads: Optional[int] = None  # torch's intra-op CPU threads (None: torch's default, one per core)

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"runtime.threads must be >= 1 (or null for torch's default), got {self.threads}")


_checked = False  # the load is read once, at the start: later it would count this process's own threads


def use_threads(threads: Optional[int]) -> int:
    """Set torch's intra-op thread count (None keeps torch's default) and return the count in use.

    When nobody chose the count (no ``threads``, no ``OMP_NUM_THREADS``), warn once per process if
    more threads than free cores would spin against other processes.
    """
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    in_use = torch.get_num_threads()
    if threads is None and "OMP_NUM_THREADS" not in os.environ:
        warn_if_busy(in_use)
    return in_use


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def warn_if_busy(threads: int, load: Optional[float] = None) -> bool:
    """One stderr line when the 1-minute load average leaves fewer free cores than ``threads``; True if
    it warned. The measured load is read once per process; ``load`` replaces it (and is always read)."""
    global _checked
    if load is None:
        if _checked:
            return False
        _checked = True
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            return False
    n = cores()
    free = max(n - load, 0.0)
    if threads <= 1 or threads <= free + 0.5:
        return False
    print(f"warning: this machine is busy (load average {load:.1f} on {n} cores) and torch would use {threads} "
          f"threads; spinning threads that share cores with other processes can make every step many times "
          f"slower: pass --threads {max(1, int(free + 0.5))} (or set runtime.threads)", file=sys.stderr)
    return True
