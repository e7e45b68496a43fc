"""Datasets for the pipeline: train / val (held out of train, for the search) / test.

``build_data(DataConfig(...))`` returns a ``DataBundle``. Every dataset's ``__getitem__`` takes
an ``int`` (deterministic, eval transform) or ``(index, aug_seed)`` (augmentation drawn only
from ``aug_seed``), which the loaders in ``supernet.data.loader`` rely on for exact resumes.

The search scores candidates on ``val``, a fixed part of the TRAINING data (the SPOS paper's
protocol); ``test`` is only for the final evaluation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

from torch.utils.data import Dataset

from ..runtime.seeding import check_seed
from .common import DataError
from .loader import StepBatchSampler, eval_loader, fixed_batches, train_loader

NAMES = ("digits", "cluttered-digits", "cifar10", "imagefolder", "synthetic")
# The settings that only some datasets read. Another dataset refuses a value other than the
# default rather than ignore it, so a run's config.yaml may leave them out (they load as defaults).
ONLY_FOR = {"root": ("cifar10", "imagefolder"), "test_fraction": ("digits", "cluttered-digits"),
            "skip_corrupt": ("imagefolder",),
            "synthetic_train": ("synthetic",), "synthetic_test": ("synthetic",), "synthetic_classes": ("synthetic",),
            "clutter_copies": ("cluttered-digits",), "clutter_fragments": ("cluttered-digits",),
            "clutter_noise": ("cluttered-digits",)}


@dataclass
class DataConfig:
    """Which dataset, how it is split and how images are prepared."""

    name: Literal["digits", "cluttered-digits", "cifar10", "imagefolder", "synthetic"] = "digits"  # digits ships with scikit-learn: runs anywhere, no download
    root: Optional[str] = None  # the folder for cifar10 / imagefolder; the embedded sets need none
    image_size: int = 32  # digits: upsampled to this; cluttered-digits: the canvas; cifar10: resized if not 32; imagefolder: crop size; synthetic: size
    val_per_class: int = 50  # held out of TRAIN to score the search, never the test set (paper: 50/class on ImageNet)
    test_fraction: float = 0.2  # digits and cluttered-digits only (no official test split): stratified fraction kept for test
    preprocessing: Literal["standard", "spos"] = "standard"  # spos = official SPOS input: BGR, raw 0..255, no mean/std
    augment: bool = True  # random crop/flip (and jitter for folders) on train; off for ablations
    num_workers: int = 0  # DataLoader workers, persistent when > 0; 0 keeps CPU tests simple
    split_seed: int = 0  # fixes the train/val(/test) split, independent of the training seed
    skip_corrupt: bool = False  # imagefolder: drop (and list) unreadable images instead of failing
    synthetic_train: int = 256  # synthetic only: training images before the val hold-out
    synthetic_test: int = 128  # synthetic only: test images
    synthetic_classes: int = 4  # synthetic only: number of classes
    clutter_copies: int = 4  # cluttered-digits only: images made of each digit, each at its own place, clutter and noise
    clutter_fragments: int = 2  # cluttered-digits only: 4x4 pieces of other digits of the same split on each canvas
    clutter_noise: float = 0.05  # cluttered-digits only: std of the Gaussian noise added to each canvas (pixels in [0, 1])

    def __post_init__(self):
        def bad(field, value, fix):
            raise ValueError(f"data.{field}={value!r} is invalid: {fix}")

        if self.name not in NAMES:
            bad("name", self.name, f"use one of {', '.join(NAMES)}")
        if self.preprocessing not in ("standard", "spos"):
            bad("preprocessing", self.preprocessing, "use 'standard' or 'spos'")
        for field in ("image_size", "synthetic_train", "synthetic_test"):
            if getattr(self, field) < 1:
                bad(field, getattr(self, field), "it must be a positive integer")
        if self.image_size < 4:
            bad("image_size", self.image_size, "use at least 4 pixels")
        if self.name == "cluttered-digits" and self.image_size < 8:
            bad("image_size", self.image_size, "cluttered-digits places 8x8 digits on a canvas of this size; use 8 or more "
                "(12 leaves them 5x5 places)")
        if self.clutter_copies < 1 or self.clutter_fragments < 0:
            bad("clutter_copies" if self.clutter_copies < 1 else "clutter_fragments",
                self.clutter_copies if self.clutter_copies < 1 else self.clutter_fragments,
                "use clutter_copies >= 1 and clutter_fragments >= 0")
        if not 0 <= self.clutter_noise <= 1:
            bad("clutter_noise", self.clutter_noise, "use a standard deviation between 0 and 1, e.g. 0.05")
        if self.synthetic_classes < 2:
            bad("synthetic_classes", self.synthetic_classes, "a classification task needs >= 2 classes")
        if not 0 < self.test_fraction < 1:
            bad("test_fraction", self.test_fraction, "use a fraction strictly between 0 and 1, e.g. 0.2")
        if self.val_per_class < 1:
            bad("val_per_class", self.val_per_class, "hold out at least 1 image per class for the search")
        check_seed("data.split_seed", self.split_seed)
        if self.num_workers < 0:
            bad("num_workers", self.num_workers, "use 0 (load in the main process) or more")
        if self.name in ("cifar10", "imagefolder") and not self.root:
            bad("root", self.root, f"data.name={self.name} reads from disk; set data.root to its folder")
        for field, names in ONLY_FOR.items():
            default = DATA_DEFAULTS[field]
            if self.name not in names and getattr(self, field) != default:
                bad(field, getattr(self, field), f"it applies only to data.name={' or '.join(names)}, and this "
                    f"run reads {self.name}; remove it (or set data.{field}={_yaml(default)})")

    def applies(self, field: str) -> bool:
        """Whether this dataset reads ``field`` (the settings of other datasets hold their defaults)."""
        return self.name in ONLY_FOR.get(field, NAMES)


def _yaml(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


DATA_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DataConfig)}


@dataclass
class DataBundle:
    """The three splits and the facts a model needs about them."""

    train: Dataset  # training split minus the val images; TRAIN transforms (augmentation)
    val: Dataset  # held out of the training data; EVAL transforms; the search scores on it
    test: Dataset  # the test split; EVAL transforms; only `evaluate` uses it
    num_classes: int
    in_channels: int  # digits and cluttered-digits: 1, the others: 3
    image_size: int
    name: str
    skipped: list  # unreadable images that data.skip_corrupt dropped (image folders only)


def build_data(cfg: DataConfig) -> DataBundle:
    """Load the dataset ``cfg`` names and split it.

    Raises:
        DataError: for missing or unreadable files and impossible splits, naming the path or
            numbers and how to fix them.
    """
    if cfg.name == "digits":
        from .datasets import load_digits as load
    elif cfg.name == "cluttered-digits":
        from .datasets import load_cluttered_digits as load
    elif cfg.name == "cifar10":
        from .datasets import load_cifar10 as load
    elif cfg.name == "imagefolder":
        from .imagefolder import load_imagefolder as load
    else:
        from .datasets import load_synthetic as load
    train, val, test = load(cfg)
    return DataBundle(train=train, val=val, test=test, num_classes=train.num_classes,
                      in_channels=1 if cfg.name in ("digits", "cluttered-digits") else 3,
                      image_size=cfg.image_size, name=cfg.name, skipped=[*train.skipped, *test.skipped])


__all__ = ["DataConfig", "DataBundle", "DataError", "build_data", "StepBatchSampler",
           "train_loader", "eval_loader", "fixed_batches"]
