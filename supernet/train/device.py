"""Device selection and the CUDA-only speed-ups (bf16 autocast, channels_last)."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use device=cpu")
    return device


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device, channels_last: bool):
    return torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
freed_memory_kept = False  # set by keep_freed_memory(); the bench reports it


def keep_freed_memory() -> bool:
    """Make glibc keep the memory a CPU training step frees, instead of handing it back to the OS.

    By default glibc returns large freed blocks (``munmap``, heap trimming), and the next step
    page-faults its activations back in. How many depends on the heap's history: 1,000-15,000
    faults per step in plain training on our 2-core VM, and up to 90,000 per step of the CIFAR
    supernet at batch 64 when the bench alternates it with fixed subnets. A fault costs about 1.8 us
    there (writing 640 MiB of fresh 1 MiB blocks: 336 ms with 163,530 faults, 38 ms with the memory
    kept), so up to 5% of a step, and the faults were the largest source of order-dependent noise
    in the bench's step ratios. With these settings resident memory stays at the peak of one step,
    which a training process reaches anyway. The ``supernet`` command calls this at start;
    ``SUPERNET_MALLOC=default`` keeps glibc's defaults. Returns whether the settings were applied
    (False off glibc, e.g. on macOS)."""
    import ctypes
    import os
    global freed_memory_kept
    if os.environ.get("SUPERNET_MALLOC", "keep") == "default":
        return False
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
