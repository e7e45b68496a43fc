"""In-memory datasets: digits (the embedded default), CIFAR-10 (the python-pickle folder), synthetic.

All three keep every image in one tensor and hand out views (``ArrayDataset``) over a list of
positions, so train / val / test share memory and cannot overlap by construction.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .common import DataError, parse_item, stratified_fraction, stratified_holdout
from .memory import check_fits
from .transforms import CIFAR10_MEAN, CIFAR10_STD, finish, hflip, pad_crop, resize


class ArrayDataset(Dataset):
    """A view over in-memory images: ``images[positions]`` with one transform.

    ``__getitem__`` takes an int (no randomness) or ``(index, aug_seed)``; with ``augment`` the
    seed drives a random translation (and a flip where ``flip``), otherwise it is ignored.

    Attributes:
        positions: rows of ``images`` in this split (a LongTensor), e.g. to check disjointness.
        targets: labels of this split, a list of ints.
        classes: class names; ``num_classes`` their count.
        mean, std: per-channel normalisation of the [0, 1] image.
        skipped: unreadable images dropped (none: the arrays are in memory).
    """

    skipped: tuple = ()
    seeded_items = True  # __getitem__ takes (index, aug_seed): see supernet.data.loader.seeded

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor,
                 classes: Sequence[str], *, augment: bool, pad: int, flip: bool,
                 mean: Sequence[float], std: Sequence[float], preprocessing: str, size: int):
        self.images, self.labels = images, labels  # shared by all splits: (N, C, H, W), (N,)
        self.positions = torch.as_tensor(positions, dtype=torch.long)
        self.targets = labels[self.positions].tolist()
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.augment, self.pad, self.flip = augment, pad, flip
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32)  # built once, not per sample
        self._std_t = torch.tensor(self.std, dtype=torch.float32)
        self.preprocessing, self.size = preprocessing, size

    def __len__(self) -> int:
        return len(self.positions)

    def view(self, positions: torch.Tensor, augment: bool) -> "ArrayDataset":
        """Another split over the same images (e.g. the eval-transform val split)."""
        return ArrayDataset(self.images, self.labels, positions, self.classes, augment=augment,
                            pad=self.pad, flip=self.flip, mean=self.mean, std=self.std,
                            preprocessing=self.preprocessing, size=self.size)

    def __getitem__(self, item):
        x, y = self.raw(item)
        return self.finish(x), y

    def raw(self, item) -> tuple[torch.Tensor, int]:
        """The image of ``item`` before ``finish``: uint8 for CIFAR-10 at 32 px, float in [0, 1]
        otherwise; ``finish(raw(item)[0]) == self[item][0]``."""
        index, gen = parse_item(item)
        pos = int(self.positions[index])
        x = self.images[pos]  # (C, H, W), uint8 or float in [0, 1]
        if self.augment and gen is not None:
            x = pad_crop(x, self.pad, gen)
            if self.flip:
                x = hflip(x, gen)
        if x.shape[-1] != self.size:  # CIFAR at a size other than 32: resized per sample
            x = resize(x.float() / 255.0 if x.dtype == torch.uint8 else x, self.size)
        return x, int(self.labels[pos])

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Network input from ``raw`` images: one (CHW) or a batch (NCHW), the same values either way."""
        return finish(x, self._mean_t, self._std_t, self.preprocessing)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double() / (255.0 if images.dtype == torch.uint8 else 1.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)  # a constant channel must not divide by zero
    return tuple(mean.tolist()), tuple(std.tolist())


def _splits(images, labels, classes, train_pos, val_pos, test_pos, *, augment, pad, flip,
            mean, std, preprocessing, size):
    base = ArrayDataset(images, labels, train_pos, classes, augment=augment, pad=pad, flip=flip,
                        mean=mean, std=std, preprocessing=preprocessing, size=size)
    return base, base.view(val_pos, augment=False), base.view(test_pos, augment=False)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(data (1797, 64) in 0..16, target (1797,))``.

    Reads the CSV that scikit-learn ships directly: ``import sklearn.datasets`` alone takes
    ~1.5 s, paid by every CLI call. Falls back to ``load_digits`` if the file ever moves.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",")  # (1797, 65): 64 pixels then the label
        return table[:, :-1], table[:, -1].astype(np.int64)
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError("data.name=digits needs scikit-learn (pip install scikit-learn)") from None
    bunch = sk_load_digits()
    return bunch.data, bunch.target


def load_digits(cfg):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upsampled once.

    The split is stratified and fixed by ``cfg.split_seed``: ``test_fraction`` of each class for
    test, then ``val_per_class`` per class held out of the rest for the search.
    Mean/std come from the train split only.

    Returns:
        ``(train, val, test)`` ArrayDatasets.
    """
    data, target = _digits_arrays()
    s = cfg.image_size
    # The images (float32) plus the float64 copy that the channel statistics make of the train split.
    check_fits(len(data) * s * s * (4 + 8), f"data.image_size={s}: {len(data):,} digits images of 1x{s}x{s} "
               f"held in memory", "lower data.image_size (the digits are 8x8; 8..64 is plenty)")
    x = torch.as_tensor(data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0  # [0, 1]
    x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                      align_corners=False).clamp_(0, 1)  # (1797, 1, S, S)
    labels = torch.as_tensor(target, dtype=torch.long)
    classes = [str(c) for c in range(10)]
    rest, test_pos = stratified_fraction(labels, 10, cfg.test_fraction, cfg.split_seed, "digits")
    train_rel, val_rel = stratified_holdout(labels[rest], 10, cfg.val_per_class, cfg.split_seed,
                                            "digits (after the test split)")
    train_pos, val_pos = rest[train_rel], rest[val_rel]
    mean, std = _channel_stats(x[train_pos])
    # Translation only: a flipped digit is a different (or no) digit.
    return _splits(x, labels, classes, train_pos, val_pos, test_pos, augment=cfg.augment,
                   pad=cfg.image_size // 8, flip=False, mean=mean, std=std,
                   preprocessing=cfg.preprocessing, size=cfg.image_size)


def load_cluttered_digits(cfg):
    """scikit-learn's digits made harder: each 8x8 digit at a random place on an ``image_size``
    canvas, beside ``clutter_fragments`` 4x4 pieces of other digits of its own split, with Gaussian
    noise (after the cluttered translated MNIST of Mnih et al., "Recurrent Models of Visual
    Attention", NeurIPS 2014). Finding the digit among the pieces needs receptive field and
    capacity, so architectures differ by more than their training seeds do.

    The digits are split first (``test_fraction`` for test, ``val_per_class`` held out, as for
    digits); each split's digits are then drawn ``clutter_copies`` times, each copy with its own
    place, pieces and noise, and pieces come only from the same split, so no test digit is seen in
    training. Everything is drawn from ``cfg.split_seed``: the same images every run.
    """
    data, target = _digits_arrays()
    s, copies = cfg.image_size, cfg.clutter_copies
    n = len(data) * copies
    check_fits(n * s * s * (4 + 4 + 8), f"data.image_size={s} with {n:,} cluttered digits images of 1x{s}x{s} "
               f"(data.clutter_copies={copies} per digit) held in memory", "lower data.image_size or data.clutter_copies")
    digits = torch.as_tensor(data, dtype=torch.float32).view(-1, 8, 8) / 16.0
    labels = torch.as_tensor(target, dtype=torch.long)
    rest, test_pos = stratified_fraction(labels, 10, cfg.test_fraction, cfg.split_seed, "cluttered-digits")
    train_rel, val_rel = stratified_holdout(labels[rest], 10, cfg.val_per_class, cfg.split_seed,
                                            "cluttered-digits (after the test split)")
    gen = torch.Generator().manual_seed(cfg.split_seed)
    images, image_labels, splits, start = [], [], [], 0
    for split in (rest[train_rel], rest[val_rel], test_pos):
        which = split.repeat(copies)
        images.append(_clutter(digits, which, split, s, cfg.clutter_fragments, cfg.clutter_noise, gen))
        image_labels.append(labels[which])
        splits.append(torch.arange(start, start + len(which)))
        start += len(which)
    x, y = torch.cat(images), torch.cat(image_labels)
    train_pos, val_pos, test_pos = splits
    mean, std = _channel_stats(x[train_pos])
    # No augmentation: every copy already sits at its own place (and a flipped digit is no digit).
    return _splits(x, y, [str(c) for c in range(10)], train_pos, val_pos, test_pos, augment=False,
                   pad=0, flip=False, mean=mean, std=std, preprocessing=cfg.preprocessing, size=s)


def _clutter(digits: torch.Tensor, which: torch.Tensor, pool: torch.Tensor, size: int, fragments: int,
             noise: float, gen: torch.Generator) -> torch.Tensor:
    """``(len(which), 1, size, size)`` canvases: the digit ``digits[which[i]]`` at a random place,
    ``fragments`` random 4x4 pieces of random digits of ``pool`` at random places (brightest pixel
    wins where they overlap), plus Gaussian noise of std ``noise``, clamped to [0, 1]."""
    m = len(which)
    canvas = torch.zeros(m, size, size)
    rows = torch.arange(m)

    def paste(patches: torch.Tensor) -> None:  # (m, h, w) at a random place on each canvas
        h, w = patches.shape[1:]
        top = torch.randint(0, size - h + 1, (m,), generator=gen)
        left = torch.randint(0, size - w + 1, (m,), generator=gen)
        r = (top[:, None] + torch.arange(h))[:, :, None].expand(m, h, w)
        c = (left[:, None] + torch.arange(w))[:, None, :].expand(m, h, w)
        i = rows[:, None, None].expand(m, h, w)
        canvas[i, r, c] = torch.maximum(canvas[i, r, c], patches)

    for _ in range(fragments):
        other = pool[torch.randint(0, len(pool), (m,), generator=gen)]
        a, b = torch.randint(0, 5, (2, m), generator=gen)
        r = (a[:, None] + torch.arange(4))[:, :, None].expand(m, 4, 4)
        c = (b[:, None] + torch.arange(4))[:, None, :].expand(m, 4, 4)
        paste(digits[other[:, None, None].expand(m, 4, 4), r, c])
    paste(digits[which])
    canvas += noise * torch.randn(canvas.shape, generator=gen)
    return canvas.clamp_(0, 1).unsqueeze(1)


def load_synthetic(cfg):
    """Tiny learnable data for tests: each class is a smooth random RGB prototype plus noise.

    Everything is drawn from ``cfg.split_seed``; the labels cycle through the classes so each
    class gets the same count.
    """
    gen = torch.Generator().manual_seed(cfg.split_seed)
    c, s = cfg.synthetic_classes, cfg.image_size
    n = cfg.synthetic_train + cfg.synthetic_test
    # The images (float32), the noise drawn for them and the float64 copy the statistics make.
    check_fits(n * 3 * s * s * (4 + 4 + 4 + 8), f"data.image_size={s} with {n:,} synthetic images of 3x{s}x{s} "
               f"(data.synthetic_train + data.synthetic_test) held in memory",
               "lower data.image_size or the synthetic image counts")
    # Low-resolution noise upsampled: smooth blobs a small convnet separates quickly.
    protos = F.interpolate(torch.rand(c, 3, 4, 4, generator=gen), size=(s, s), mode="bilinear",
                           align_corners=False)

    def draw(n):
        y = torch.arange(n) % c
        x = protos[y] + 0.15 * torch.randn(n, 3, s, s, generator=gen)
        return x.clamp_(0, 1), y

    x_tr, y_tr = draw(cfg.synthetic_train)
    x_te, y_te = draw(cfg.synthetic_test)
    images, labels = torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])
    train_rel, val_pos = stratified_holdout(y_tr, c, cfg.val_per_class, cfg.split_seed, "synthetic")
    test_pos = torch.arange(len(x_tr), len(images))
    mean, std = _channel_stats(images[train_rel])
    return _splits(images, labels, [f"class_{i}" for i in range(c)], train_rel, val_pos, test_pos,
                   augment=cfg.augment, pad=max(1, s // 8), flip=True, mean=mean, std=std,
                   preprocessing=cfg.preprocessing, size=s)


# ---- CIFAR-10 ----

_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_FILE = "test_batch"


class _ArrayUnpickler(pickle.Unpickler):
    """Loads only dicts/lists/bytes/numpy arrays: a CIFAR batch needs nothing else, and a
    general pickle from an untrusted folder could run arbitrary code."""

    def find_class(self, module, name):
        if name in ("_reconstruct", "scalar") and module in ("numpy.core.multiarray",
                                                              "numpy._core.multiarray"):
            return getattr(_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles store bytes
            import _codecs
            return _codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def cifar_folder(root: str) -> Path:
    """The folder holding the batch files: ``root`` itself or ``root/cifar-10-batches-py``.

    Raises:
        DataError: naming the missing file(s) and what the folder must contain.
    """
    root_p = Path(os.path.expanduser(root))
    for cand in (root_p, root_p / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file() or (cand / _TEST_FILE).is_file():
            folder = cand
            break
    else:
        folder = root_p
    missing = [f for f in _TRAIN_FILES + [_TEST_FILE] if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {folder} is missing {', '.join(missing)}; it must contain the python "
            f"version's data_batch_1..data_batch_5 and test_batch (the 'cifar-10-batches-py' folder "
            f"of cifar-10-python.tar.gz); set data.root to that folder or its parent")
    return folder


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(d.get(b"data", d.get("data")), dtype=np.uint8)
        labels = np.asarray(d.get(b"labels", d.get("labels")), dtype=np.int64)
    except Exception as e:  # any decoding problem is the file's fault, so name the file
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e}; re-extract cifar-10-python.tar.gz") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch {path} has data of shape {data.shape} and {len(labels)} "
                        f"labels; expected (N, 3072) uint8 and N labels")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as f:
                names = _ArrayUnpickler(f, encoding="bytes").load()[b"label_names"]
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        except Exception:  # names are cosmetic; fall back rather than fail
            pass
    return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_cifar10(cfg):
    """CIFAR-10 from the standard python-pickle folder, kept as uint8 in memory.

    ``val_per_class`` images per class are held out of the 50k training images (seeded by
    ``split_seed``); ``test_batch`` is the test split. At ``image_size != 32`` each sample is
    resized (bilinear) after augmentation, so memory stays at the native 32x32.
    """
    folder = cifar_folder(cfg.root)
    parts = [_read_batch(folder / f) for f in _TRAIN_FILES]
    x_te, y_te = _read_batch(folder / _TEST_FILE)
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(np.concatenate([x_tr, x_te]))  # (N, 3, 32, 32) uint8
    labels = torch.from_numpy(np.concatenate([y_tr, y_te]))
    classes = _class_names(folder)
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(f"CIFAR-10 folder {folder}: labels span {int(labels.min())}..{int(labels.max())}, "
                        f"expected 0..{len(classes) - 1}")
    train_pos, val_pos = stratified_holdout(labels[:len(x_tr)], len(classes), cfg.val_per_class,
                                            cfg.split_seed, f"CIFAR-10 ({folder})")
    test_pos = torch.arange(len(x_tr), len(images))
    return _splits(images, labels, classes, train_pos, val_pos, test_pos, augment=cfg.augment,
                   pad=4, flip=True, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                   preprocessing=cfg.preprocessing, size=cfg.image_size)
