"""Data loaders whose batches are a pure function of (seed, step).

``StepBatchSampler`` yields, for each training step, the indices of that step's batch together
with one augmentation seed per image. Datasets draw a sample's augmentation only from its seed,
so the batch at step t is the same whether it is loaded in the main process or a worker, in
this run or in a run resumed at step t (the DataLoader's own RNG is never used).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..runtime.seeding import mix_seed
from .common import DataError
from .memory import check_batches_fit
from .transforms import cutout


def _aug_seed(seed: int, step: int, k: int) -> int:
    return ((seed * 1_000_003 + step) * 4099 + k) % 2**63


class StepBatchSampler(Sampler):
    """Batches of ``(index, aug_seed)`` for steps ``start_step .. start_step + num_steps - 1``.

    Step t is in epoch ``t // (n // batch_size)`` (the last partial batch is dropped); each epoch
    is a fresh permutation of ``range(n)`` seeded by (seed, epoch). With ``world_size > 1`` rank r
    keeps the elements k of the global batch with ``k % world_size == r``, so the ranks' batches
    are disjoint and together form the single-process batch.

    Args:
        n: dataset length.
        batch_size: the GLOBAL batch size (all ranks together).
        seed: the run's data seed.
        start_step: first step to yield (resume at the checkpoint's step).
        num_steps: how many steps to yield; ``len(sampler)``.
        rank: this process's rank.
        world_size: number of processes.

    Raises:
        DataError: if ``n < batch_size`` or ``batch_size`` is not divisible by ``world_size``.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, num_steps: int,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1 or n < batch_size:
            raise DataError(f"the training split has {n} images but batch_size is {batch_size}; "
                            f"use a batch_size between 1 and {n} (or more data)")
        if world_size < 1 or batch_size % world_size:
            raise DataError(f"batch_size {batch_size} must be divisible by world_size {world_size} "
                            f"(it is the global batch, split evenly across processes)")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} must lie in 0..{world_size - 1}")
        if start_step < 0 or num_steps < 0:
            raise DataError(f"start_step ({start_step}) and num_steps ({num_steps}) must be >= 0")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.num_steps = start_step, num_steps
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = n // batch_size
        self._epoch: Optional[int] = None
        self._perm: Optional[torch.Tensor] = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of ``range(n)`` in ``epoch`` (cached: one randperm per epoch, not per step)."""
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm, self._epoch = torch.randperm(self.n, generator=gen), epoch
        return self._perm

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, aug_seed)`` pairs for ``step``."""
        epoch, j = divmod(step, self.batches_per_epoch)
        idx = self.permutation(epoch)[j * self.batch_size:(j + 1) * self.batch_size].tolist()
        return [(i, _aug_seed(self.seed, step, k)) for k, i in enumerate(idx)
                if k % self.world_size == self.rank]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for t in range(self.start_step, self.start_step + self.num_steps):
            yield self.batch(t)

    def __len__(self) -> int:
        return self.num_steps


def _loader_kwargs(num_workers: int, device) -> dict:
    # A private generator: without one, DataLoader draws its workers' base seed from the global
    # torch RNG, which would shift the dropout stream of a resumed run. (Augmentation never uses
    # that seed: it comes from the (index, aug_seed) pairs.)
    kw = dict(num_workers=num_workers, pin_memory=torch.device(device).type == "cuda",
              persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))
    if num_workers > 0:
        kw["prefetch_factor"] = 4  # a few batches ahead per worker hides decode-time jitter
    return kw


def train_loader(dataset: Dataset, batch_size: int, seed: int, start_step: int, num_steps: int,
                 num_workers: int = 0, device="cpu", rank: int = 0, world_size: int = 1) -> DataLoader:
    """A loader yielding ``num_steps`` augmented batches from ``start_step`` on.

    Each batch is ``(images (B, C, H, W) float32, labels (B,) int64)`` with
    ``B = batch_size // world_size``; see ``StepBatchSampler`` for which images.
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, num_steps,
                               rank=rank, world_size=world_size)
    return DataLoader(dataset, batch_sampler=sampler, **_loader_kwargs(num_workers, device))


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, device="cpu") -> DataLoader:
    """Sequential, unshuffled batches of the eval transform, the last partial batch kept."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      **_loader_kwargs(num_workers, device))


class Compact(Dataset):
    """``dataset``'s images before normalisation (its ``raw``), to keep many of them in memory.

    For image folders and CIFAR-10 that is uint8, a quarter of the float32 network input: the
    official search's 200x128 recalibration images plus 50,000 validation images at 224 px take
    11 GB instead of 45 GB. ``finish`` turns a batch of them into exactly the values
    ``dataset[item]`` gives.
    """

    seeded_items = True

    def __init__(self, dataset: Dataset):
        if not (hasattr(dataset, "raw") and hasattr(dataset, "finish")):
            raise TypeError(f"{type(dataset).__name__} has no raw() and finish(); Compact needs both")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset.raw(item)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.dataset.finish(x)


def fixed_batches(dataset: Dataset, batch_size: int, num_batches: int, seed: int, num_workers: int = 0,
                  wrap: Optional[Callable[[Iterable], Iterable]] = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` augmented training batches, materialised in memory.

    Used for BN recalibration, so every candidate sees exactly the same images. Indices come from
    seeded permutations of the dataset, concatenated (cycling) when it is smaller than
    ``batch_size * num_batches``; the augmentation of image k of batch b is seeded by
    (seed, b, k), so the batches do not depend on ``num_workers`` (loader processes). ``wrap``
    wraps the loader, e.g. in a progress bar.

    Returns:
        A list of ``(images, labels)`` tensor pairs.
    """
    dataset = seeded(dataset)
    if batch_size < 1 or num_batches < 0:
        raise DataError(f"fixed_batches needs batch_size >= 1 and num_batches >= 0, "
                        f"got {batch_size} and {num_batches}")
    n, need = len(dataset), batch_size * num_batches
    if n == 0 and need:
        raise DataError("fixed_batches: the dataset is empty")
    # All of them stay in memory: estimated from one image before anything is built.
    check_batches_fit(dataset, batch_size, num_batches, None, "lower search.recal_batches (or retrain.bn_recal_batches)")
    perms, have, cycle = [], 0, 0
    while have < need:  # bounded: ceil(need / n) permutations
        gen = torch.Generator().manual_seed(mix_seed(seed, 7919, cycle))  # 7919: apart from epochs
        perms.append(torch.randperm(n, generator=gen))
        have, cycle = have + n, cycle + 1
    order = torch.cat(perms)[:need].tolist() if perms else []
    items = [[(i, _aug_seed(mix_seed(seed, 7919), b, k))
              for k, i in enumerate(order[b * batch_size:(b + 1) * batch_size])] for b in range(num_batches)]
    loader = DataLoader(dataset, batch_sampler=items, **_loader_kwargs(num_workers, "cpu"))
    return list(loader if wrap is None else wrap(loader))


def seeded(dataset) -> Dataset:
    """``dataset`` under the loaders' ``(index, aug_seed)`` items.

    supernet's datasets take them (``seeded_items``): their augmentation is drawn from
    ``aug_seed`` alone, so a resumed run repeats its batches exactly. Any other map-style dataset
    (``dataset[i] -> (x, y)`` and ``len(dataset)``, e.g. a ``TensorDataset``) is wrapped: its items
    are read by index, with whatever augmentation it does itself.
    """
    if getattr(dataset, "seeded_items", False):
        return dataset
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(f"a training set must be a map-style dataset (dataset[i] -> (x, y), and len(dataset)); "
                        f"got {type(dataset).__name__}")
    return IndexOnly(dataset)


class IndexOnly(Dataset):
    """A user's dataset read by the index of each ``(index, aug_seed)`` item (the seed is unused)."""

    seeded_items = True

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        for attr in ("num_classes", "classes"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset[item[0] if isinstance(item, (tuple, list)) else item]


class HeldOutSplit(Dataset):
    """The items ``indices`` of ``dataset``, keeping the ``(index, aug_seed)`` protocol
    (``torch.utils.data.Subset`` would pass the pair through as an index)."""

    seeded_items = True

    def __init__(self, dataset: Dataset, indices: list[int]):
        dataset = seeded(dataset)
        self.dataset, self.indices = dataset, list(indices)
        for attr in ("num_classes", "finish", "raw"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item):
        if isinstance(item, tuple):
            index, aug_seed = item
            return self.dataset[(self.indices[index], aug_seed)]
        return self.dataset[self.indices[item]]


def split_held_out(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Optional[Dataset]]:
    """``(rest, held_out)``: a seeded random ``fraction`` of ``dataset`` set apart for a strategy's
    architecture updates (DARTS: half); ``(dataset, None)`` when ``fraction`` is 0."""
    if fraction <= 0:
        return dataset, None
    n = len(dataset)
    k = int(round(n * fraction))
    if not 0 < k < n:
        raise DataError(f"holding out {fraction:g} of {n} training images leaves {k} for the architecture stream "
                        f"and {n - k} for the weights; both need images (more data or another fraction)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, 104729))).tolist()
    return HeldOutSplit(dataset, sorted(order[k:])), HeldOutSplit(dataset, sorted(order[:k]))


class StepBatches:
    """Batch ``i`` of a step-indexed stream, loaded on demand in this process and moved to ``device``.

    The held-out stream of a strategy: batch ``i`` is a function of (seed, i) as training batches
    are, so a resumed run reads the same images. A strategy may read several batches per step by
    its own numbering of ``i``. Loaded without worker processes: one batch per step at most.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device="cpu", rank: int = 0,
                 world_size: int = 1, memory_format: torch.memory_format = torch.contiguous_format):
        self.dataset, self.device, self.memory_format = dataset, torch.device(device), memory_format
        self.sampler = StepBatchSampler(len(dataset), batch_size, seed, 0, 0, rank=rank, world_size=world_size)

    def __call__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = default_collate([self.dataset[item] for item in self.sampler.batch(i)])
        return (x.to(self.device, non_blocking=True, memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))


class Cutout(Dataset):
    """``dataset`` with cutout on its augmented items (``(index, aug_seed)``); plain indices are
    left alone. The square's position comes from its own stream of the item's seed, so the
    dataset's augmentation is unchanged and a batch stays a function of (seed, step)."""

    seeded_items = True

    def __init__(self, dataset: Dataset, length: int):
        self.dataset, self.length = seeded(dataset), length

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        x, y = self.dataset[item]
        if isinstance(item, (tuple, list)):
            x = cutout(x, self.length, torch.Generator().manual_seed(mix_seed(int(item[1]), 16)))
        return x, y
