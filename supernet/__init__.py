"""supernet: one-shot neural architecture search (SPOS, FairNAS, DARTS, ENAS, ProxylessNAS, FBNet) on plain PyTorch."""
from .arch import ArchError, SearchSpace, fix, parse_arch
from .nn import ChannelChoice, InputChoice, LayerChoice
from .spaces import create

__version__ = "0.1.0"
__all__ = ["LayerChoice", "InputChoice", "ChannelChoice", "SearchSpace", "ArchError", "fix", "parse_arch", "create"]
