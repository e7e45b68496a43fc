"""``import supernet.oneshot.nn as nn`` in place of ``import nni.retiarii.nn.pytorch as nn``: all of
``torch.nn`` plus the choices, which accept NNI's arguments (``LayerChoice(ops, label=None)``,
``InputChoice(n_candidates, n_chosen=1, reduction='sum', label=None)``)."""
from torch.nn import *  # noqa: F401,F403  (NNI's module re-exports torch.nn the same way)
from torch.nn import functional, init, parameter, utils  # noqa: F401

from ..nn.choices import ChannelChoice, InputChoice, LayerChoice  # noqa: F401
