"""Search-space primitives: choices and the layers that share weights across widths."""
from .choices import BitChoice, ChannelChoice, Choice, InputChoice, LayerChoice, NoneChosen, gate_open
from .layers import DropPath
from .quantized import Quantized
from .sliced import DepthwiseConv2d, full_kernels, SlicedBatchNorm2d, SlicedConv2d

__all__ = ["Choice", "LayerChoice", "InputChoice", "ChannelChoice", "BitChoice", "Quantized", "NoneChosen", "gate_open", "DepthwiseConv2d", "full_kernels", "SlicedConv2d", "SlicedBatchNorm2d", "DropPath"]
