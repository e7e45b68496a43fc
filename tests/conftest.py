import random

import pytest
import torch

from supernet.spaces import SPACES, create

# Small variants of every registered space: same code, CPU-sized.
TINY = dict(stage_repeats=(1, 1, 2, 1), width_mult=0.25, num_classes=5)


def tiny_input_size(name: str) -> int:
    return 32


def tiny_model(name: str, **options) -> torch.nn.Module:
    return create(name, **{**TINY, "input_size": tiny_input_size(name), **options})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


SPACE_NAMES = sorted(SPACES)
