import random

import pytest
import torch

from supernet.spaces import SPACES, create

# Small variants of every registered space: same code, CPU-sized.
_SHUFFLE = dict(stage_repeats=(1, 1, 2, 1), width_mult=0.25, num_classes=5)
TINY_OPTIONS = {"shufflenet": _SHUFFLE, "shufflenet-cifar": _SHUFFLE,
                "darts": dict(channels=4, layers=3, num_classes=5),
                "enas-macro": dict(layers=4, channels=4, num_classes=5), "enas-macro-digits": dict(num_classes=5),
                "enas-micro": dict(cells=1, channels=4, nodes=3, num_classes=5),
                "enas-micro-digits": dict(nodes=3, num_classes=5)}
_PROXYLESS = dict(stage_widths=(8, 16, 16), stage_repeats=(1, 2, 1), stage_strides=(2, 1, 2), first_width=8,
                  first_block_width=8, feature_width=32, expansions=(3, 6), num_classes=5)
_FBNET = dict(stage_widths=(8, 16, 16), stage_repeats=(1, 2, 1), stage_strides=(1, 2, 1), stem_width=8, head_width=32,
              num_classes=5)
TINY_OPTIONS.update({"proxyless": _PROXYLESS, "proxyless-small": _PROXYLESS, "fbnet": _FBNET, "fbnet-small": _FBNET})


def tiny_input_size(name: str) -> int:
    return 32


def tiny_model(name: str, **options) -> torch.nn.Module:
    return create(name, **{**TINY_OPTIONS[name], "input_size": tiny_input_size(name), **options})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


# Registered variants that are the same class with the same tiny options as another entry: looping
# over them would repeat the other's tests (CI time).
SAME_AS = {"proxyless-small": "proxyless", "fbnet-small": "fbnet"}
SPACE_NAMES = sorted(n for n in SPACES if n not in SAME_AS)
# (space, channel_search) for every space; channel search where the space has it.
SPACE_CASES = [(n, cs) for n in SPACE_NAMES
               for cs in ((False, True) if hasattr(SPACES[n].options(), "channel_search") else (False,))]
