"""Search-space primitives: choices and the layers that share weights across widths."""
from .choices import ChannelChoice, Choice, InputChoice, LayerChoice
from .sliced import SlicedBatchNorm2d, SlicedConv2d

__all__ = ["Choice", "LayerChoice", "InputChoice", "ChannelChoice", "SlicedConv2d", "SlicedBatchNorm2d"]
