"""Search-space primitives: choices and the layers that share weights across widths."""
from .choices import ChannelChoice, Choice, InputChoice, LayerChoice
from .layers import DropPath
from .sliced import DepthwiseConv2d, full_kernels, SlicedBatchNorm2d, SlicedConv2d

__all__ = ["Choice", "LayerChoice", "InputChoice", "ChannelChoice", "DepthwiseConv2d", "full_kernels", "SlicedConv2d", "SlicedBatchNorm2d", "DropPath"]
