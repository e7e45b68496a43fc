"""BitOps and model size of mixed-precision architectures, from per-layer tables.

- ``bitops`` = sum over conv/linear layers of MACs x weight bits x activation bits (the SPOS
  paper's measure); a layer in full precision counts 32 x 32, as does every layer that is not
  quantized (the excluded stem and classifier).
- ``size`` = bytes of the conv/linear weights at their bit widths, every other parameter at 32
  bits, and each quantizer's step sizes at 32 bits (one per output channel, or per layer, for the
  weights; one for the input).

The cost model's tables record, for each option of each choice group, its quantized layers: the
labels of their bit decisions (or the fixed bits of a layer that has none), MACs, weight elements
and weight steps. A query multiplies those by the bits the architecture chose: microseconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from torch import nn

from ..nn.choices import FULL_PRECISION
from ..nn.quantized import Quantized

Bits = Union[str, int]  # a BitChoice label, or the fixed bit width of a layer without a decision


@dataclass(frozen=True)
class QuantLayer:
    """One quantized layer as the tables see it."""

    weight: Bits
    act: Bits
    macs: int
    numel: int      # weight elements
    steps: int      # weight step sizes (output channels, or 1)


def quant_layers(module: nn.Module, macs: dict[nn.Module, int]) -> tuple[QuantLayer, ...]:
    """The quantized layers of a fixed ``module`` with their MACs (``macs``: from ``macs_by_layer``)."""
    out = []
    for m in module.modules():
        if isinstance(m, Quantized):
            w = m.labels[0] if m.labels[0] is not None else m.weight_bits
            a = m.labels[1] if m.labels[1] is not None else m.act_bits
            steps = m.layer.weight.shape[0] if m.per_channel else 1
            out.append(QuantLayer(w, a, macs.get(m.layer, 0), m.layer.weight.numel(), steps))
    return tuple(out)


def without(layers: tuple[QuantLayer, ...], others: tuple[QuantLayer, ...]) -> tuple[QuantLayer, ...]:
    """``layers`` less one occurrence of each of ``others`` (the rest of a network after its units)."""
    left = list(layers)
    for q in others:
        left.remove(q)
    return tuple(left)


def bitops(flops: int, layers: tuple[QuantLayer, ...], bits: Callable[[Bits], int]) -> int:
    """BitOps of a part with ``flops`` MACs in all, of which ``layers`` are quantized at ``bits(...)``."""
    quantized = sum(q.macs for q in layers)
    return (flops - quantized) * FULL_PRECISION ** 2 + sum(q.macs * bits(q.weight) * bits(q.act) for q in layers)


def size_bits(params: int, layers: tuple[QuantLayer, ...], bits: Callable[[Bits], int]) -> int:
    """The size in bits of a part with ``params`` parameters (quantizer steps not included)."""
    total = (params - sum(q.numel for q in layers)) * FULL_PRECISION
    for q in layers:
        w, a = bits(q.weight), bits(q.act)
        total += q.numel * w + (q.steps * FULL_PRECISION if w != FULL_PRECISION else 0)
        total += FULL_PRECISION if a != FULL_PRECISION else 0
    return total


def resolver(space, arch: dict) -> Callable[[Bits], int]:
    """``bits(x)``: the bit width ``arch`` gives label ``x`` (an int is a fixed width)."""
    def bits(x: Bits) -> int:
        if isinstance(x, int):
            return x
        values, i = space.choice(x).values, arch[x]
        if not (isinstance(i, int) and 0 <= i < len(values)):  # no negative or other indexing
            raise KeyError(x)
        return values[i]
    return bits


def extreme_bits(space, metric: str, pick, layers: list[QuantLayer]) -> dict[str, int]:
    """The bit width of each label that makes ``metric`` smallest (``pick=min``) or largest.

    BitOps grow with every bit, so each label takes its fewest (most) bits. Size grows with a
    weight's bits, but a quantized tensor also stores its step sizes: an input at 32 bits stores
    nothing, and so does a float weight. Each label's size is weighed over all the layers it
    decides (``layers``: every table's), which is exact while a label's best width is the same in
    every option, true unless a layer holds as many steps as weights (a 1x1 depthwise conv)."""
    out = {}
    for label in {x for q in layers for x in (q.weight, q.act) if isinstance(x, str)}:
        values = space.choice(label).values
        if metric == "bitops":
            out[label] = pick(values)
            continue
        mine = [(q.numel, q.steps) for q in layers if q.weight == label]
        users = sum(q.act == label for q in layers)

        def cost(b):
            stored = FULL_PRECISION * (b != FULL_PRECISION)
            return sum(n * b + s * stored if b != FULL_PRECISION else n * b for n, s in mine) + users * stored
        out[label] = pick(values, key=cost)
    return out
