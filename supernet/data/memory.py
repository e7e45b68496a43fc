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

import torch

from ..runtime.units import human_bytes
from .common import DataError

# Per image besides its pixels, in batches held in memory: its label, its index and seed in the
# batch plan (Python objects).
PER_IMAGE_OVERHEAD = 160


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


def device_memory(device: torch.device) -> Optional[int]:
    """Bytes free on ``device`` now: the host's for the CPU, a CUDA device's own; None if unknown."""
    if device.type == "cpu":
        return available_memory()
    if device.type != "cuda":
        return None  # no portable way to ask (MPS shares the host's memory with other users)
    try:
        return torch.cuda.mem_get_info(device)[0]
    except (RuntimeError, AssertionError):  # AssertionError: a torch built without CUDA
        return None


def check_fits(nbytes: float, what: str, fix: str, device: Optional[torch.device] = None) -> None:
    """Raise ``DataError`` if ``nbytes`` exceeds the memory available now.

    Args:
        nbytes: the estimate.
        what: what would take it, naming the setting (``"data.image_size=2240: 1,797 images ..."``).
        fix: how to make it fit (``"lower data.image_size"``).
        device: where it would be allocated; None or CPU: the host's memory.
    """
    avail = available_memory() if device is None else device_memory(device)
    if avail is not None and nbytes > avail:
        where = "memory" if device is None or device.type == "cpu" else f"{device} memory"
        raise DataError(f"{what} would take about {human_bytes(nbytes)} of {where}, more than the "
                        f"{human_bytes(avail)} available; {fix}")


def check_batches_fit(dataset, batch_size: int, num_batches: int, what: Optional[str], fix: str) -> None:
    """Refuse ``num_batches`` batches of ``batch_size`` images of ``dataset``, all held in memory
    (BN recalibration), when they would not fit; the size of one image is read from the first.

    Args:
        dataset: a dataset of ``(index, aug_seed)`` items.
        what: the setting that asks for them (``"retrain.bn_recal_batches=1000"``), if known.
        fix: how to make them fit.
    """
    need = batch_size * num_batches
    if not need or not len(dataset):
        return
    x = dataset[(0, 0)][0]
    per_image = x.numel() * x.element_size() + PER_IMAGE_OVERHEAD
    check_fits(need * per_image, f"{what + ': ' if what else ''}{num_batches:,} batches of {batch_size} images of "
               f"{'x'.join(map(str, x.shape))} for BN recalibration", fix)
