"""ImageNet-style image folders: ``root/train/CLASS/*.jpg`` and ``root/val/CLASS/*.jpg``.

``val/`` is the TEST split (as for ImageNet, whose labelled val set is the usual test set); the
search's validation split is ``val_per_class`` images per class held out of ``train/``, as in
the SPOS paper. Images are decoded with Pillow on access.

What is read (each split prints one ``note: imagefolder ...`` line on stdout with the count per
class, so a wrong count shows at a glance):

* a class folder is any subfolder of ``train/`` or ``val/`` not starting with ``.``; it may itself
  be a link (a subset built from links to the full set's class folders);
* below a class folder, every file with an image extension, recursively. Linked *folders* are never
  entered (a link to ``..`` or to another class would loop or pull in other classes' images); the
  note names them. Linked *files* are read wherever they point. Each file is read once per split:
  a second link to it in the same class is dropped; the same file in two classes is an error
  (one image, two labels), and so is one in both ``train/`` and ``val/`` (a test image trained on).

Pixels: 8-bit modes (L, P, RGB, RGBA, CMYK, ...) are converted by Pillow. 16-bit images (modes
``I;16*``, and mode ``I`` with values in 0..65535: older Pillows read 16-bit PNGs so) are scaled
to 0..255 by rounding ``v / 257``, i.e. taken as full-range 16-bit as PNG and TIFF define it
(12-bit data stored unscaled in a 16-bit file looks dark: rescale it first). Float images (mode
``F``) and mode ``I`` values outside 0..65535 have no agreed scale and are refused by name.

Corrupt files: by default an unreadable image raises ``DataError`` naming the file when it is
loaded. With ``skip_corrupt=True`` every file is opened and ``verify()``-ed once at construction
and the bad ones (refused pixel modes included) are dropped and listed in ``dataset.skipped``; a
scan keeps the index -> image map fixed, which the determinism contract needs (a lazy substitute
would differ per worker).
"""
from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..runtime import dist
from .common import DataError, parse_item, stratified_holdout
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, color_jitter, finish, pil_hflip,
                         pil_to_uint8, random_resized_crop, resize_center_crop)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_MEAN, _STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)  # built once, not per sample
_LAYOUT = "data.root must contain train/CLASS/*.jpg and val/CLASS/*.jpg (one subfolder per class)"
_LISTED = 8  # classes named one by one in the note; more are summarised as min / median / max


@dataclasses.dataclass
class Scan:
    """What ``scan_folder`` found in one split folder.

    Attributes:
        folder: the split folder.
        classes: class names, sorted.
        samples: ``(path, class_index)`` per image, in a fixed order.
        unfollowed: linked folders found below class folders and not entered.
        duplicates: paths dropped as a second link to a file already read in the same class.
        files: real path -> the path it was read from, for every sample.
    """
    folder: Path
    classes: list[str]
    samples: list
    unfollowed: list[str]
    duplicates: list[str]
    files: dict[str, str]

    def note(self) -> str:
        """One line: images per class (min / median / max for many classes), and links not followed."""
        counts = [0] * len(self.classes)
        for _, label in self.samples:
            counts[label] += 1
        n, k = sum(counts), len(counts)
        line = f"note: imagefolder {self.folder}: {n} image{'s' * (n != 1)} in {k} class{'es' * (k != 1)}"
        listed = [f"{c} {m}" for c, m in zip(self.classes, counts)]
        if k <= _LISTED:
            line += f" ({', '.join(listed)})"
        else:
            lo = min(range(k), key=counts.__getitem__)
            hi = max(range(k), key=counts.__getitem__)
            line += (f"; per class min {counts[lo]} ({self.classes[lo]}), median {statistics.median(counts):g}, "
                     f"max {counts[hi]} ({self.classes[hi]}); {', '.join(listed[:5])}, ...")
        for what, paths in (("did not follow {} linked folder{}", self.unfollowed),
                            ("read {} file{} linked twice in one class once", self.duplicates)):
            if paths:
                line += f"; {what.format(len(paths), 's' * (len(paths) != 1))} ({paths[0]}{', ...' * (len(paths) > 1)})"
        return line


def _walk(top: str, real_top: str, unfollowed: list) -> Iterator[tuple[str, str]]:
    """``(path, real path)`` of the images below ``top``: a folder's files (sorted) before its
    subfolders (sorted), as ``os.walk`` lists them. Linked folders go to ``unfollowed``, unentered."""
    with os.scandir(top) as it:
        entries = sorted(it, key=lambda e: e.name)
    subdirs = []
    for e in entries:  # is_dir/is_symlink come from the directory listing: no stat per plain file
        if e.is_dir(follow_symlinks=False):
            subdirs.append(e)
        elif e.is_symlink() and e.is_dir():
            unfollowed.append(e.path)
        elif e.name.lower().endswith(IMG_EXTENSIONS):  # a file, a link to one, or a broken link
            # A plain file's real path follows from its folder's; only a link needs resolving.
            yield e.path, os.path.realpath(e.path) if e.is_symlink() else os.path.join(real_top, e.name)
    for d in subdirs:
        yield from _walk(d.path, os.path.join(real_top, d.name), unfollowed)


def scan_folder(folder: Path, classes: Optional[Sequence[str]] = None) -> Scan:
    """Every image under ``folder/CLASS/`` (recursively), in a fixed order, by the rules of the
    module docstring.

    Args:
        folder: a split folder (``root/train`` or ``root/val``).
        classes: the expected class names (those of ``train/``); ``None`` takes the subfolders.

    Raises:
        DataError: if the folder is missing, has no class subfolders, a class has no images,
            its class names differ from ``classes``, or one file is in two classes.
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
    samples, unfollowed, duplicates = [], [], []
    owner = {}  # real path -> (path, class index) of the first sample read from it
    for idx, name in enumerate(found):
        top = str(folder / name)
        n, links_before = 0, len(unfollowed)  # the class folder may be a link; nothing below it is followed
        for path, real in _walk(top, os.path.realpath(top), unfollowed):
            if real in owner:
                first, first_idx = owner[real]
                if first_idx != idx:
                    raise DataError(f"{first} and {path} are the same file, in classes {found[first_idx]!r} "
                                    f"and {name!r}; an image has one label: remove the link from one class")
                duplicates.append(path)
                continue
            owner[real] = (path, idx)
            samples.append((path, idx))
            n += 1
        if not n:
            links = unfollowed[links_before:]
            skipped = f"; did not follow the linked folder {links[0]}" if links else ""
            raise DataError(f"class folder {folder / name} has no images (looked for {', '.join(IMG_EXTENSIONS)}"
                            f"{skipped}); add images or remove it")
    return Scan(folder, found, samples, unfollowed, duplicates, {real: p for real, (p, _) in owner.items()})


def to_rgb(img: Image.Image, path: str) -> Image.Image:
    """``img`` as 8-bit RGB; 16-bit pixels are scaled, not clipped as ``convert("RGB")`` clips them.

    Raises:
        DataError: for float pixels (mode F) and integers outside 0..65535, naming the file.
    """
    fix = "save it as 8- or 16-bit, or set data.skip_corrupt=true to skip it"
    if img.mode == "F":
        raise DataError(f"image {path} has mode F (32-bit float pixels), which has no agreed 0..255 scale; {fix}")
    if img.mode == "I" or img.mode.startswith("I;16"):
        a = np.asarray(img)  # (H, W) int32 or (u)int16
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            kind = "32-bit integer" if img.mode == "I" else "signed 16-bit"
            raise DataError(f"image {path} has mode {img.mode} ({kind} pixels) with values {lo}..{hi} outside "
                            f"0..65535, the range read as 16-bit; {fix}")
        # round(v / 257) exactly (65535 -> 255); v * 255 + 32767 < 2**24 fits uint32
        a8 = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    return img.convert("RGB")


def verify_images(samples: list) -> tuple[list, list[str]]:
    """Drop images Pillow cannot open and verify, or whose pixels ``to_rgb`` refuses;
    returns ``(good_samples, bad_paths)``."""
    good, bad = [], []
    for path, label in samples:
        try:
            with Image.open(path) as img:
                mode = img.mode
                img.verify()
            if mode == "F" or mode == "I" or mode.startswith("I;16"):  # rare: decode to check the values
                decode(path)
            good.append((path, label))
        except Exception:  # any failure means this file cannot be trained on
            bad.append(path)
    return good, bad


def decode(path: str, skip_hint: bool = True) -> Image.Image:
    """Open an image as 8-bit RGB (``to_rgb``), turning any decoder failure into a ``DataError``
    naming the file."""
    try:
        with Image.open(path) as img:
            return to_rgb(img, path)
    except DataError:
        raise
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

    seeded_items = True  # __getitem__ takes (index, aug_seed): see supernet.data.loader.seeded

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
    """``(train, val, test)`` from ``cfg.root``: val is held out of train/, test is val/.

    Prints one note per split folder on stdout (rank 0 only), saying what was read per class.
    Stdout, because a failing command's stderr must stay its one error line.
    """
    root = Path(os.path.expanduser(cfg.root))
    train_scan = scan_folder(root / "train")
    test_scan = scan_folder(root / "val", train_scan.classes)
    classes = train_scan.classes
    shared = [(train_scan.files[real], p) for real, p in test_scan.files.items() if real in train_scan.files]
    if shared:  # a test image seen in training makes the test score a training score
        raise DataError(f"{shared[0][1]} is the same file as {shared[0][0]} ({len(shared)} of val/'s images "
                        f"are in train/); val/ is the test split and must not share images with train/")
    train_bad, test_bad = [], []
    if cfg.skip_corrupt:
        train_scan.samples, train_bad = verify_images(train_scan.samples)
        test_scan.samples, test_bad = verify_images(test_scan.samples)
        for name, s in (("train", train_scan.samples), ("val", test_scan.samples)):
            if not s:
                raise DataError(f"every image under {root / name} failed to open; check the files")
    if dist.is_main():  # one note per run, not one per DDP process
        print(train_scan.note())
        print(test_scan.note())
    train_samples, test_samples = train_scan.samples, test_scan.samples
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
