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


def tiny_input_size(name: str) -> int:
    return 32


def tiny_model(name: str, **options) -> torch.nn.Module:
    return create(name, **{**TINY_OPTIONS[name], "input_size": tiny_input_size(name), **options})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


SPACE_NAMES = sorted(SPACES)
# (space, channel_search) for every space; channel search where the space has it.
SPACE_CASES = [(n, cs) for n in SPACE_NAMES
               for cs in ((False, True) if hasattr(SPACES[n].options(), "channel_search") else (False,))]
