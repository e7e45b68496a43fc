"""Pieces shared by every dataset: the user-facing error, index parsing and seeded stratified splits.

Splits are made with a seeded ``torch.Generator`` so the same ``split_seed`` gives the same
train/val/test images on every machine and every run (the search must score each candidate on
the same validation images).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from ..runtime.seeding import mix_seed

# Each dataset's __getitem__ takes an int (deterministic) or (index, aug_seed).
Item = Union[int, Tuple[int, int]]


class DataError(ValueError):
    """A data problem the user can fix (missing folder, corrupt file, impossible split); says how."""


def parse_item(item) -> tuple[int, Optional[torch.Generator]]:
    """Split a dataset index into ``(index, generator)``.

    Args:
        item: an ``int`` (no randomness) or ``(index, aug_seed)``.

    Returns:
        The int index and a generator seeded with ``aug_seed``, or ``None`` for a plain index. The
        generator is the only source of randomness for the sample's augmentation, which makes a
        batch a pure function of its (index, seed) pairs whatever process loads it.
    """
    if isinstance(item, (tuple, list)):
        index, seed = item
        return int(index), torch.Generator().manual_seed(int(seed))
    return int(item), None


def _check_labels(targets: torch.Tensor, num_classes: int, where: str) -> None:
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}, "
                        f"got {int(targets.min())}..{int(targets.max())}")


def _by_class(targets: torch.Tensor, num_classes: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Positions of each class, in a seeded random order (one permutation draw per class, in class order)."""
    out = []
    for c in range(num_classes):
        pos = torch.nonzero(targets == c).flatten()
        out.append(pos[torch.randperm(len(pos), generator=gen)])
    return out


def stratified_fraction(targets: Sequence[int], num_classes: int, fraction: float, seed: int,
                        where: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions into ``(rest, taken)`` with ``fraction`` of every class in ``taken``.

    Each class contributes ``round(fraction * n_c)`` (at least 1, at most ``n_c - 1``) so every
    class appears on both sides.

    Raises:
        DataError: if some class has fewer than 2 images, so it cannot appear on both sides.
    """
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    _check_labels(targets, num_classes, where)
    gen = torch.Generator().manual_seed(mix_seed(seed, 1))
    rest, taken = [], []
    for c, pos in enumerate(_by_class(targets, num_classes, gen)):
        if len(pos) < 2:
            raise DataError(f"{where}: class {c} has {len(pos)} image(s); a stratified split needs "
                            f"at least 2 per class")
        k = min(max(1, round(fraction * len(pos))), len(pos) - 1)
        taken.append(pos[:k])
        rest.append(pos[k:])
    return torch.cat(rest).sort().values, torch.cat(taken).sort().values


def stratified_holdout(targets: Sequence[int], num_classes: int, per_class: int, seed: int,
                       where: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions into ``(rest, held)`` with exactly ``per_class`` images of each class held out.

    ``rest`` is sorted; ``held`` is interleaved by class (see the comment at the end).

    Raises:
        DataError: if a class has ``<= per_class`` images (nothing would be left to train on),
            naming the class, its count and ``val_per_class``.
    """
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    _check_labels(targets, num_classes, where)
    gen = torch.Generator().manual_seed(mix_seed(seed, 2))
    rest, held = [], []
    for c, pos in enumerate(_by_class(targets, num_classes, gen)):
        if len(pos) <= per_class:
            raise DataError(f"{where}: class {c} has only {len(pos)} training image(s), so "
                            f"val_per_class={per_class} would leave none to train on; set "
                            f"data.val_per_class below {len(pos)}")
        held.append(pos[:per_class])
        rest.append(pos[per_class:])
    # Held-out images round-robin over classes (c0, c1, ..., c0, c1, ...): any prefix of the val
    # split is class-balanced, so scoring the search on its first k images stays fair even for
    # class-sorted sources such as image folders.
    return torch.cat(rest).sort().values, torch.stack(held, dim=1).flatten()
