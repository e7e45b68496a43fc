"""ImageNet-style image folders: ``root/train/CLASS/*.jpg`` and ``root/val/CLASS/*.jpg``.

``val/`` is the TEST split (as for ImageNet, whose labelled val set is the usual test set); the
search's validation split is ``val_per_class`` images per class held out of ``train/``, as in
the SPOS paper. Images are decoded with Pillow on access.

Corrupt files: by default an unreadable image raises ``DataError`` naming the file when it is
loaded. With ``skip_corrupt=True`` every file is opened and ``verify()``-ed once at construction
and the bad ones are dropped and listed in ``dataset.skipped``; a scan keeps the index -> image
map fixed, which the determinism contract needs (a lazy substitute would differ per worker).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from .common import DataError, parse_item, stratified_holdout
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, color_jitter, finish, pil_hflip,
                         pil_to_uint8, random_resized_crop, resize_center_crop)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_MEAN, _STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)  # built once, not per sample
_LAYOUT = "data.root must contain train/CLASS/*.jpg and val/CLASS/*.jpg (one subfolder per class)"


def scan_folder(folder: Path, classes: Optional[Sequence[str]] = None) -> tuple[list[str], list]:
    """List ``(path, class_index)`` for every image under ``folder/CLASS/`` (recursively), sorted.

    Args:
        folder: a split folder (``root/train`` or ``root/val``).
        classes: the expected class names (those of ``train/``); ``None`` takes the subfolders.

    Raises:
        DataError: if the folder is missing, has no class subfolders, a class has no images,
            or its class names differ from ``classes``.
    """
    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found; {_LAYOUT}")
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DataError(f"image folder {folder} has no class subfolders; {_LAYOUT}")
    if classes is not None and found != list(classes):
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise DataError(f"class folders of {folder} differ from those of train/: missing {missing}, "
                        f"extra {extra}; both splits need the same class names")
    samples = []
    for idx, name in enumerate(found):
        files = []
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames.sort()
            files += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if f.lower().endswith(IMG_EXTENSIONS)]
        if not files:
            raise DataError(f"class folder {folder / name} has no images "
                            f"(looked for {', '.join(IMG_EXTENSIONS)}); add images or remove it")
        samples += [(p, idx) for p in files]
    return found, samples


def verify_images(samples: list) -> tuple[list, list[str]]:
    """Drop images Pillow cannot open and verify; returns ``(good_samples, bad_paths)``."""
    good, bad = [], []
    for path, label in samples:
        try:
            with Image.open(path) as img:
                img.verify()
            good.append((path, label))
        except Exception:  # any failure means this file cannot be trained on
            bad.append(path)
    return good, bad


def decode(path: str, skip_hint: bool = True) -> Image.Image:
    """Open an image as RGB, turning any decoder failure into a ``DataError`` naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:
        hint = ("set data.skip_corrupt=true to skip unreadable images" if skip_hint else
                "it passed the skip_corrupt scan but cannot be decoded (truncated?)")
        raise DataError(f"cannot decode image {path}: {e}; delete or replace it, or {hint}") from None


class ImageFolderDataset(Dataset):
    """A view over the samples of one image folder.

    ``__getitem__`` takes an int (eval transform: resize + centre crop) or ``(index, aug_seed)``
    (with ``augment``: RandomResizedCrop, ColorJitter(0.4, 0.4, 0.4), horizontal flip, drawn from
    the seed alone).

    Attributes:
        samples: ``(path, label)`` for every image of the folder (shared by views).
        positions: which samples are in this split.
        targets, classes, num_classes: labels of this split and the class names.
        skipped: paths dropped by the ``skip_corrupt`` scan of this folder (empty otherwise).
    """

    def __init__(self, samples: list, positions, classes: Sequence[str], *, augment: bool,
                 size: int, preprocessing: str, skipped: Sequence[str] = (), scanned: bool = False):
        self.samples = samples
        self.positions = torch.as_tensor(positions, dtype=torch.long)
        self.targets = [samples[int(p)][1] for p in self.positions]
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.augment, self.size, self.preprocessing = augment, size, preprocessing
        self.skipped = list(skipped)
        self.scanned = scanned

    def __len__(self) -> int:
        return len(self.positions)

    def view(self, positions, augment: bool) -> "ImageFolderDataset":
        """Another split over the same samples."""
        return ImageFolderDataset(self.samples, positions, self.classes, augment=augment,
                                  size=self.size, preprocessing=self.preprocessing,
                                  skipped=self.skipped, scanned=self.scanned)

    def __getitem__(self, item):
        x, y = self.raw(item)
        return self.finish(x), y

    def raw(self, item) -> tuple[torch.Tensor, int]:
        """The uint8 CHW image of ``item`` before ``finish`` (a quarter of the float input's memory)."""
        index, gen = parse_item(item)
        path, label = self.samples[int(self.positions[index])]
        img = decode(path, skip_hint=not self.scanned)
        if self.augment and gen is not None:
            img = random_resized_crop(img, self.size, gen)
            img = color_jitter(img, gen, 0.4, 0.4, 0.4)
            img = pil_hflip(img, gen)
        else:
            img = resize_center_crop(img, self.size)
        return pil_to_uint8(img), label

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Network input from ``raw`` images: one (CHW) or a batch (NCHW), the same values either way."""
        return finish(x, _MEAN, _STD, self.preprocessing)


def load_imagefolder(cfg):
    """``(train, val, test)`` from ``cfg.root``: val is held out of train/, test is val/."""
    root = Path(os.path.expanduser(cfg.root))
    classes, train_samples = scan_folder(root / "train")
    _, test_samples = scan_folder(root / "val", classes)
    train_bad, test_bad = [], []
    if cfg.skip_corrupt:
        train_samples, train_bad = verify_images(train_samples)
        test_samples, test_bad = verify_images(test_samples)
        for name, s in (("train", train_samples), ("val", test_samples)):
            if not s:
                raise DataError(f"every image under {root / name} failed to open; check the files")
    targets = [label for _, label in train_samples]
    train_pos, val_pos = stratified_holdout(targets, len(classes), cfg.val_per_class,
                                            cfg.split_seed, f"image folder {root / 'train'}")
    train = ImageFolderDataset(train_samples, train_pos, classes, augment=cfg.augment,
                               size=cfg.image_size, preprocessing=cfg.preprocessing,
                               skipped=train_bad, scanned=cfg.skip_corrupt)
    test = ImageFolderDataset(test_samples, torch.arange(len(test_samples)), classes,
                              augment=False, size=cfg.image_size, preprocessing=cfg.preprocessing,
                              skipped=test_bad, scanned=cfg.skip_corrupt)
    return train, train.view(val_pos, augment=False), test
