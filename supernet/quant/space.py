"""``mixed_precision``: any model, or any search space, as a mixed-precision search space.

Every ``Conv1d/2d/3d`` and ``Linear`` (depthwise and sliced ones included) becomes a ``Quantized``
layer with a weight-bit and an activation-bit ``BitChoice``, labelled
``<dotted module path>.weight_bits`` and ``<dotted module path>.act_bits``. These are ordinary
labels: an architecture stores the index into the candidates in the order given, and they
sample, mutate, constrain, ``fix()``, serialise and resume like every other choice, beside the
model's own LayerChoices and ChannelChoices.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import FULL_PRECISION, BitChoice, LayerChoice, check_bits
from ..nn.quantized import QUANTIZABLE, Quantized
from ..runtime.typed import from_dict, to_dict

DEFAULT_BITS = (2, 3, 4, 8)
Share = Union[str, Callable[[str], str], dict]


@dataclass
class QuantConfig:
    """The ``space.quant`` settings: which bit widths each layer may take (empty: no quantization)."""

    weight_bits: list = field(default_factory=list)  # e.g. [2, 3, 4, 8]; 32 = full precision; [] = off
    act_bits: list = field(default_factory=list)     # the same for each layer's input activations
    exclude: list | None = None      # layers (names or glob patterns) kept in float; None: the first and the last
    share: str = "layer"             # one decision per layer, or per block (the enclosing LayerChoice, else module)
    per_channel: bool = True         # one weight step per output channel

    def __post_init__(self):
        if bool(self.weight_bits) != bool(self.act_bits):
            raise ValueError("space.quant needs both weight_bits and act_bits (e.g. [2, 3, 4, 8]; [32] keeps that "
                             "tensor in float), or neither")
        if self.weight_bits:
            check_bits(self.weight_bits, "space.quant.weight_bits")
            check_bits(self.act_bits, "space.quant.act_bits")
        if self.share not in ("layer", "block"):
            raise ValueError(f"space.quant.share must be 'layer' or 'block', got {self.share!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.weight_bits)

    def apply(self, model: nn.Module) -> nn.Module:
        """``model`` made a mixed-precision space with these settings (unchanged when off)."""
        if not self.enabled:
            return model
        return mixed_precision(model, self.weight_bits, self.act_bits, self.exclude, self.share, self.per_channel)

    def recorded(self, options: dict) -> dict:
        """A space's ``options`` as a latency table records them: with these settings when they are on."""
        return {**options, "quant": to_dict(self)} if self.enabled else dict(options)

    @classmethod
    def taken_from(cls, options: dict) -> "QuantConfig":
        """The ``quant`` entry of a dict of space options (removed from it), checked; off if none."""
        return from_dict(cls, options.pop("quant", None) or {}, "quant")


def for_timing(model: nn.Module) -> nn.Module:
    """``model`` with every quantizer's steps started (``Quantized.start_untrained``): a fresh
    mixed-precision supernet, ready to export its blocks for a latency table."""
    for m in model.modules():
        if isinstance(m, Quantized):
            m.start_untrained()
    return model


def quantizable(model: nn.Module) -> list[str]:
    """The dotted paths of the layers ``mixed_precision`` would quantize, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)
            and not any(name.startswith(q + ".") for q in _quantized(model))]


def _quantized(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, Quantized)]


def mixed_precision(model: nn.Module | SearchSpace, weight_bits: Sequence[int] = DEFAULT_BITS,
                    act_bits: Sequence[int] = DEFAULT_BITS, exclude: Sequence[str] | None = None,
                    share: Share = "layer", per_channel: bool = True) -> nn.Module:
    """Make every conv and linear layer of ``model`` searchable in bit width (in place; returned).

    Args:
        model: a model, or a ``SearchSpace`` (its model is changed).
        weight_bits: the weights' candidates, in 2..8, and 32 for full precision.
        act_bits: the inputs' candidates, likewise.
        exclude: layer names or glob patterns (``"features.0.*"``) kept in float; each must name
            a layer. None excludes the first and the last quantizable layer (the stem conv and the
            classifier, as the papers do); ``()`` excludes nothing.
        share: ``"layer"`` (a decision per layer), ``"block"`` (per enclosing ``LayerChoice``, so
            a block's candidates share it; else per parent module), a dict from glob pattern to
            group name (``{"features.[0-3].*": "stage1"}``: each layer takes its first match; a
            layer matching none keeps its own), or a function from a layer's path to its group.
            A group's labels are ``<group>.weight_bits`` and ``<group>.act_bits``.
        per_channel: one weight step per output channel (else one per layer).

    Raises:
        ValueError: bad bit widths, a model with nothing quantizable, an ``exclude`` entry that
            names no layer, a model that is mixed-precision already.
    """
    if isinstance(model, SearchSpace):
        model = model.model
    weight_bits = check_bits(list(weight_bits), "weight_bits")
    act_bits = check_bits(list(act_bits), "act_bits")
    if _quantized(model):
        raise ValueError(f"{type(model).__name__} already has quantized layers ({_quantized(model)[0]}, ...); "
                         f"apply mixed_precision once")
    names = quantizable(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no layer to quantize: mixed_precision quantizes Conv1d/2d/3d "
                         f"and Linear layers")
    skipped = _excluded(names, exclude)
    group_of = _grouping(model, share)
    choices: dict[str, tuple[BitChoice, BitChoice]] = {}
    for name in names:
        if name in skipped:
            continue
        group = group_of(name)
        if group not in choices:
            choices[group] = (BitChoice(weight_bits, f"{group}.weight_bits"), BitChoice(act_bits, f"{group}.act_bits"))
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, Quantized(getattr(owner, attr), *choices[group], per_channel=per_channel))
    if not choices:
        raise ValueError(f"exclude={list(exclude) if exclude is not None else None} leaves no layer to quantize "
                         f"(the model's layers: {_few(names)})")
    return model


def _excluded(names: list[str], exclude: Sequence[str] | None) -> set[str]:
    if exclude is None:
        return {names[0], names[-1]} if len(names) > 2 else set()
    if isinstance(exclude, str):
        exclude = [exclude]
    out = set()
    for pattern in exclude:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(f"exclude {pattern!r} names no quantizable layer; the layers are {_few(names)}")
        out.update(hits)
    return out


def _grouping(model: nn.Module, share: Share) -> Callable[[str], str]:
    if callable(share):
        return lambda name: _check_group(share(name), name)
    if isinstance(share, dict):
        def by_pattern(name):
            hits = [g for p, g in share.items() if fnmatch.fnmatchcase(name, p)]
            return _check_group(hits[0], name) if hits else name
        return by_pattern
    if share == "layer":
        return lambda name: name
    if share == "block":
        blocks = [name for name, m in model.named_modules() if isinstance(m, LayerChoice) and name]

        def by_block(name):
            inside = [b for b in blocks if name.startswith(b + ".")]
            return max(inside, key=len) if inside else (name.rpartition(".")[0] or name)
        return by_block
    raise ValueError(f"share must be 'layer', 'block', a dict from pattern to group or a function, got {share!r}")


def _check_group(group, name: str) -> str:
    if not isinstance(group, str) or not group:
        raise ValueError(f"share gave {group!r} as the group of layer {name!r}; a group is a non-empty string")
    return group


def _few(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")


def bit_labels(space: SearchSpace) -> list[str]:
    """The labels of the space's bit-width decisions."""
    return [l for l in space.labels if isinstance(space.choice(l), BitChoice)]


def with_bits(space: SearchSpace, arch: Arch, weight: int, act: int | None = None) -> Arch:
    """``arch`` with every weight decision at ``weight`` bits and every activation decision at
    ``act`` (default: ``weight``): the uniform-precision network of the same blocks and widths."""
    act = weight if act is None else act
    out = dict(arch)
    for label in bit_labels(space):
        want = weight if label.endswith(".weight_bits") else act
        values = space.choice(label).values
        if want not in values:
            raise ValueError(f"label '{label}' has no {want}-bit option (its options: {values})")
        out[label] = values.index(want)
    return out


def describe_bits(space: SearchSpace, arch: Arch) -> dict[str, int]:
    """label -> bit width of ``arch`` (32: full precision), for reports."""
    return {l: space.choice(l).values[arch[l]] for l in bit_labels(space)}


__all__ = ["QuantConfig", "mixed_precision", "quantizable", "bit_labels", "with_bits", "describe_bits",
           "DEFAULT_BITS", "FULL_PRECISION"]
