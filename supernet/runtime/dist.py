"""torch.distributed helpers: launched by torchrun (gloo on CPU, nccl on CUDA).

The supernet does not use the DistributedDataParallel wrapper: DDP's reducer needs
``find_unused_parameters=True`` when the set of used parameters changes every step, and that
search costs a graph traversal per step. Every rank trains the same (seed, step) path, so the
parameters with a gradient are the same on every rank, and ``average_gradients`` all-reduces
exactly those, in buckets. The fixed subnet (retrain) uses DDP itself.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn


def init_from_env() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


_alone = [False]  # inside ``alone()``: this process trains by itself, its own network on its own batches


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Inside, this process is a run of one (rank 0 of 1): it shares no batch, gradient or barrier
    with the others. ``supernet rank`` trains a different architecture on every rank this way;
    the ranks meet again outside (``all_gather_objects``)."""
    before = _alone[0]
    _alone[0] = True
    try:
        yield
    finally:
        _alone[0] = before


def _joined() -> bool:
    return dist.is_initialized() and not _alone[0]


def rank() -> int:
    return dist.get_rank() if _joined() else 0


def world() -> int:
    return dist.get_world_size() if _joined() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if _joined():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """On CUDA each process drives the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def average_gradients(params: list[nn.Parameter], bucket_bytes: int = 25 << 20) -> None:
    """Average the gradients that exist across ranks, in flat buckets (one all_reduce each)."""
    average([p.grad for p in params if p.grad is not None], bucket_bytes)


def average(tensors: list[torch.Tensor], bucket_bytes: int = 25 << 20) -> None:
    """Average ``tensors`` across ranks in place, in flat buckets (one all_reduce each)."""
    n = world()
    if n == 1:
        return
    bucket, size = [], 0
    for g in list(tensors) + [None]:
        if g is not None:
            bucket.append(g)
            size += g.numel() * g.element_size()
        if bucket and (g is None or size >= bucket_bytes):
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            flat /= n
            offset = 0
            for b in bucket:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()
            bucket, size = [], 0


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj) -> list:
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out
