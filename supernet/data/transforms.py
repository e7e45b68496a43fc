"""Image transforms without torchvision, each drawing its randomness from an explicit generator.

Every random transform takes ``gen: torch.Generator``; none touches the global RNG, so a sample's
augmentation is a function of its ``aug_seed`` alone. Two families:

* tensor transforms for in-memory datasets (digits, CIFAR-10, synthetic): CHW tensors;
* PIL transforms for image folders, following torchvision's algorithms (RandomResizedCrop,
  ColorJitter, Resize + CenterCrop) so results match what users of torchvision expect.

``finish`` turns an image into the network's input: ``standard`` = [0, 1] then mean/std,
``spos`` = the official SPOS input (BGR channel order, raw 0..255 floats, no mean/std).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

PREPROCESSING = ("standard", "spos")


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=gen))


def _randint(gen: torch.Generator, high: int) -> int:
    """Uniform int in ``[0, high)``."""
    return int(torch.randint(0, high, (1,), generator=gen))


# ---- tensor transforms (CHW) ----

def pad_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation: zero-pad ``pad`` pixels on each side, then crop back to the input size."""
    if pad <= 0:
        return x
    _, h, w = x.shape
    # Same result as F.pad(x, (pad,) * 4)[:, i:i+h, j:j+w], with one copy instead of two:
    # output pixel (r, c) is x[r + di, c + dj], zero (black / background) outside the image.
    di, dj = _randint(gen, 2 * pad + 1) - pad, _randint(gen, 2 * pad + 1) - pad
    out = torch.zeros_like(x)
    out[:, max(0, -di):max(0, h - max(0, di)), max(0, -dj):max(0, w - max(0, dj))] = \
        x[:, max(0, di):max(0, h - max(0, -di)), max(0, dj):max(0, w - max(0, -dj))]
    return out


def cutout(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """Zero a ``length`` x ``length`` square centred on a uniform pixel, clipped at the borders
    (DeVries & Taylor 2017, as DARTS' retraining applies it to the normalised image)."""
    _, h, w = x.shape
    cy, cx = _randint(gen, h), _randint(gen, w)
    out = x.clone()
    out[:, max(0, cy - length // 2):min(h, cy + length // 2), max(0, cx - length // 2):min(w, cx + length // 2)] = 0
    return out


def hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip left-right with probability ``p``."""
    return x.flip(-1) if float(torch.rand(1, generator=gen)) < p else x


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a float CHW tensor to ``size x size`` (antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink)[0]


def finish(x: torch.Tensor, mean: Sequence[float], std: Sequence[float],
           preprocessing: str = "standard") -> torch.Tensor:
    """Convert an image, or a batch of them, to the network input.

    Elementwise, so a batch gives exactly the values of its images finished one by one.

    Args:
        x: CHW or NCHW, either ``uint8`` 0..255 or float in [0, 1].
        mean: per-channel mean of the [0, 1] image (``standard`` only); a float32 tensor
            avoids rebuilding it per sample.
        std: per-channel std (``standard`` only).
        preprocessing: ``standard`` (normalise) or ``spos`` (BGR for 3 channels, raw 0..255, no
            mean/std: what the official SPOS checkpoints were trained on).

    Returns:
        float32, the shape of ``x``.
    """
    if preprocessing == "spos":
        raw = x.float() if x.dtype == torch.uint8 else x.float() * 255.0  # uint8 stays exact
        return raw.flip(-3) if raw.shape[-3] == 3 else raw  # RGB -> BGR
    x01 = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    # No copy if already a float32 tensor on x's device (a batch may be on the GPU).
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return x01.sub(m).div_(s)  # sub allocates: x01 may be the dataset's own storage


# ---- PIL transforms (image folders) ----

def random_resized_crop_params(width: int, height: int, gen: torch.Generator,
                               scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box: 10 tries at a random area/aspect, then a centre crop.

    Returns:
        ``(top, left, h, w)`` of the crop.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * _uniform(gen, scale[0], scale[1])
        aspect = math.exp(_uniform(gen, log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _randint(gen, height - h + 1), _randint(gen, width - w + 1), h, w
    # Fallback: the largest centred box whose aspect lies in ``ratio``.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(img: Image.Image, size: int, gen: torch.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """Crop a random box (see ``random_resized_crop_params``) and resize it to ``size x size``."""
    top, left, h, w = random_resized_crop_params(img.width, img.height, gen, scale, ratio)
    return img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))


def color_jitter(img: Image.Image, gen: torch.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4) -> Image.Image:
    """Scale brightness, contrast and saturation by factors drawn from ``[1-b, 1+b]``.

    Applied in a fixed order (torchvision shuffles the order); the factors and operations are
    otherwise the same as ``ColorJitter(brightness, contrast, saturation)``.
    """
    for amount, enhancer in ((brightness, ImageEnhance.Brightness),
                             (contrast, ImageEnhance.Contrast),
                             (saturation, ImageEnhance.Color)):
        if amount > 0:
            img = enhancer(img).enhance(_uniform(gen, max(0.0, 1 - amount), 1 + amount))
    return img


def pil_hflip(img: Image.Image, gen: torch.Generator, p: float = 0.5) -> Image.Image:
    """Flip left-right with probability ``p``."""
    return img.transpose(Image.FLIP_LEFT_RIGHT) if float(torch.rand(1, generator=gen)) < p else img


def resize_center_crop(img: Image.Image, size: int, resize_to: Optional[int] = None) -> Image.Image:
    """Eval transform: resize the shorter side to ``resize_to``, then centre-crop ``size x size``.

    Args:
        img: the decoded image.
        size: output side.
        resize_to: shorter side after resizing; default ``round(size * 256 / 224)``, the ImageNet
            convention (256 -> 224) that the official SPOS evaluation uses.
    """
    resize_to = round(size * 256 / 224) if resize_to is None else resize_to
    w, h = img.size
    if w <= h:
        nw, nh = resize_to, int(resize_to * h / w)
    else:
        nw, nh = int(resize_to * w / h), resize_to
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return img.crop((left, top, left + size, top + size))  # PIL zero-fills if size > image


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 CHW tensor (exact pixel values; ``finish`` converts)."""
    arr = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)
