"""Mixed-precision quantization search: bit widths as choices, LSQ fake quantization, BitOps and size.

    >>> from supernet.quant import mixed_precision
    >>> model = mixed_precision(create("shufflenet-cifar"), weight_bits=[2, 3, 4, 8], act_bits=[2, 3, 4, 8])
"""
from ..nn.choices import BitChoice
from ..nn.fake_quant import bit_range, fake_quantize
from ..nn.quantized import Quantized
from .space import (DEFAULT_BITS, FULL_PRECISION, QuantConfig, bit_labels, describe_bits, for_timing,
                    mixed_precision, quantizable, with_bits)

__all__ = ["mixed_precision", "QuantConfig", "BitChoice", "Quantized", "fake_quantize", "bit_range", "bit_labels",
           "with_bits", "describe_bits", "quantizable", "DEFAULT_BITS", "FULL_PRECISION"]
