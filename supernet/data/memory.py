"""Cheap memory estimates, checked before an allocation that a setting makes too large.

A setting such as ``data.image_size=2240`` on an in-memory dataset, or ``search.recal_batches=10**9``,
would otherwise allocate until the machine swaps or the process is killed. Where the size is a
product of a few numbers, it is compared with the memory available now and refused in one line
that names the setting, the estimate and what is available.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..runtime.units import human_bytes
from .common import DataError


def available_memory() -> Optional[int]:
    """Bytes that can be allocated now: Linux's MemAvailable, capped by a cgroup (container) limit;
    elsewhere the free physical pages; None if unknown (the checks are then skipped)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    try:  # cgroup v2: a container's limit can be far below the host's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail = min(avail, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return avail


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """Raise ``DataError`` if ``nbytes`` exceeds the memory available now.

    Args:
        nbytes: the estimate.
        what: what would take it, naming the setting (``"data.image_size=2240: 1,797 images ..."``).
        fix: how to make it fit (``"lower data.image_size"``).
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise DataError(f"{what} would take about {human_bytes(nbytes)} of memory, more than the "
                        f"{human_bytes(avail)} available; {fix}")
