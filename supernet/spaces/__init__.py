"""A small registry of search spaces, created by name with typed options.

    >>> from supernet.spaces import create
    >>> model = create("shufflenet-cifar", width_mult=0.25, channel_search=True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..runtime.typed import ConfigError, from_dict, to_dict
from .darts import DartsNetwork, DartsOptions
from .enas import EnasMacro, EnasMicro, MacroOptions, MicroOptions
from .fbnet import FBNet, FBNetOptions
from .nas_bench_201 import NasBench201Network, NasBench201Options
from .proxyless import ProxylessNet, ProxylessOptions
from .resnet import ResNet, ResNetOptions
from .shufflenet import ShuffleNet, ShuffleNetOptions


@dataclass(frozen=True)
class SpaceEntry:
    name: str
    options: type           # a dataclass of the space's options
    defaults: dict          # this entry's values for some of those options
    build: Callable[[Any], nn.Module]
    doc: str


SPACES: dict[str, SpaceEntry] = {}


def register(name: str, options: type, build: Callable, doc: str, **defaults) -> None:
    if name in SPACES:
        raise ValueError(f"space {name!r} is already registered")
    SPACES[name] = SpaceEntry(name, options, defaults, build, doc)


def entry(name: str) -> SpaceEntry:
    if name not in SPACES:
        raise ConfigError(f"unknown space {name!r}; registered spaces: {', '.join(SPACES)}")
    return SPACES[name]


def space_options(name: str, overrides: dict | None = None):
    """The typed options of space ``name`` with ``overrides`` applied (unknown keys are errors)."""
    e = entry(name)
    data = {**to_dict(e.options()), **e.defaults, **(overrides or {})}
    try:
        return from_dict(e.options, data)
    except ConfigError as err:
        raise ConfigError(f"space {name!r}: {err}") from None


def create(name: str, **options) -> nn.Module:
    """Build the supernet of space ``name``."""
    return entry(name).build(space_options(name, options))


register("shufflenet", ShuffleNetOptions, ShuffleNet,
         "SPOS ImageNet space: 20 ShuffleNetV2 layers x 4 blocks (k3/k5/k7/xception), 224x224, 1000 classes")
register("shufflenet-cifar", ShuffleNetOptions, ShuffleNet,
         "SPOS CIFAR-10 space (ShunLu91): stride-1 stem, stride 2 at layers 4 and 8, 32x32, 10 classes",
         input_size=32, num_classes=10, stem_stride=1, stage_strides=(1, 2, 2, 1))
register("darts", DartsOptions, DartsNetwork,
         "DARTS CIFAR-10 cell space: 8 ops x 14 edges per cell, normal + reduction genotypes; search network "
         "8 cells, C=16 (evaluation: channels=36 layers=20 affine=true auxiliary=true)")
register("enas-macro", MacroOptions, EnasMacro,
         "ENAS macro space: 12 layers x 6 branches (conv/sep 3x3 and 5x5, avg/max pool) with skips from any "
         "subset of the earlier layers, pooling after 1/3 and 2/3; 36 filters, 32x32")
register("enas-micro", MicroOptions, EnasMicro,
         "ENAS micro space: normal + reduction cells of B=5 nodes, each 2 inputs and 2 of 5 ops (sep 3x3/5x5, "
         "avg/max pool, identity), unused nodes concatenated; 3 stages of 2 cells, C=20, 32x32")
register("enas-macro-digits", MacroOptions, EnasMacro,
         "enas-macro for 8x8 digits: 6 layers of 16 filters (pooling after layers 1 and 3)",
         input_size=8, layers=6, channels=16)
register("enas-micro-digits", MicroOptions, EnasMicro,
         "enas-micro for 8x8 digits: 1 normal cell per stage, C=8, B=5",
         input_size=8, cells=1, channels=8)
register("proxyless", ProxylessOptions, ProxylessNet,
         "ProxylessNAS ImageNet space: 21 MobileNetV2 blocks x MBConv k3/5/7 x e3/6 (+ zero where an identity "
         "shortcut exists), 224x224, 1000 classes")
register("proxyless-small", ProxylessOptions, ProxylessNet,
         "ProxylessNAS space for 32x32 inputs: stride-1 first conv and first stage, 10 classes",
         input_size=32, num_classes=10, first_stride=1, stage_strides=(1, 2, 2, 1, 2, 1))
register("fbnet", FBNetOptions, FBNet,
         "FBNet ImageNet space: 22 layers x 9 candidates (k3/k5 x e1/e3/e6, two group-2 shuffle variants, skip), "
         "224x224, 1000 classes")
register("fbnet-small", FBNetOptions, FBNet,
         "FBNet space for 32x32 inputs: stride-1 stem and stride 1 at the 24-wide group, 10 classes",
         input_size=32, num_classes=10, stem_stride=1, stage_strides=(1, 1, 2, 2, 1, 2, 1))
register("resnet18", ResNetOptions, ResNet,
         "ResNet-18 ImageNet network (SPOS mixed precision: bits via space.quant), 7x7 stem + max-pool, 8 "
         "BasicBlocks, 224x224, 1000 classes; channel_search: each block's inner width 0.5/0.75/1.0x")
register("resnet18-cifar", ResNetOptions, ResNet,
         "ResNet-18 for 32x32 (CIFAR-10): 3x3 stride-1 stem, no max-pool, 10 classes; same options as resnet18",
         input_size=32, num_classes=10, stem="cifar")
register("resnet-digits", ResNetOptions, ResNet,
         "ResNet for 8x8 digits: 4 BasicBlocks of 16/32/64/128 channels, 3x3 stride-1 stem, 10 classes",
         input_size=8, num_classes=10, stem="cifar", depths=(1, 1, 1, 1), widths=(16, 32, 64, 128))
register("nas-bench-201", NasBench201Options, NasBench201Network,
         "NAS-Bench-201 cell space: 6 edges x 5 ops (none, skip, conv 1x1/3x3, avg pool 3x3) shared by 3 stages of "
         "N=5 cells at C=16/32/64 with ResNet reductions; 32x32, 10 classes; 5^6 = 15,625 architectures")
