"""``fix``: a searched architecture as a plain ``nn.Module``, with no choice modules left."""
from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn

from ..nn.choices import BitChoice, ChannelChoice, InputChoice, LayerChoice, reduce_inputs
from ..nn.quantized import Quantized
from ..nn.sliced import SlicedBatchNorm2d, SlicedConv2d, fixed_batchnorm
from .space import Arch, SearchSpace


class FixedInput(nn.Module):
    """What an ``InputChoice`` becomes in a fixed subnet: a constant selection."""

    def __init__(self, indices: list[int], reduction: str):
        super().__init__()
        self.indices = list(indices)
        self.reduction = reduction

    def forward(self, inputs):
        return reduce_inputs(inputs, self.indices, self.reduction)


def fix(model: nn.Module, arch: Arch, weights: str = "copy") -> nn.Module:
    """A plain ``nn.Module`` holding only the ops ``arch`` selects; no choice modules remain.

    Args:
        weights: ``"copy"`` keeps the supernet's weights (equivalent output in eval mode);
            ``"init"`` re-initialises everything for retraining from scratch (the model's own
            ``init_weights()`` if it has one, else each layer's ``reset_parameters()``; quantized
            layers' step sizes start again from the new weights).

    BatchNorm in the result is always affine (identity-initialised where the supernet had none).
    The supernet's own decisions are left as they were.
    """
    if weights not in ("copy", "init"):
        raise ValueError(f"weights must be 'copy' or 'init', got {weights!r}")
    space = SearchSpace(model)
    saved = space.state()
    space.activate(arch)
    try:
        fixed = fix_module(model)
    finally:
        space.restore(saved)
    if weights == "init":
        if hasattr(fixed, "init_weights"):
            fixed.init_weights()
        else:
            for m in fixed.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
        for m in fixed.modules():
            if isinstance(m, Quantized):  # its steps start again from the new weights
                m.reset_steps()
    return fixed


def fix_module(m: nn.Module) -> nn.Module | None:
    """``m`` as plain modules under the choices' current decisions (None for a ChannelChoice)."""
    if isinstance(m, LayerChoice):
        return fix_module(m[m.active])
    if isinstance(m, InputChoice):
        return FixedInput(m.active, m.reduction)
    if isinstance(m, (ChannelChoice, BitChoice)):
        return None  # decided; the sliced layers below become plain layers of that width
    if isinstance(m, Quantized):
        return m.fixed(fix_module(m.layer))  # the chosen bit widths around the fixed layer
    if isinstance(m, (SlicedConv2d, SlicedBatchNorm2d)) or callable(getattr(m, "fixed", None)):
        return m.fixed()  # a module that knows its fixed form (sliced layers, a DARTS node's chosen edges)
    if isinstance(m, nn.BatchNorm2d) and not m.affine:
        return fixed_batchnorm(m, m.num_features)
    new = copy.copy(m)  # same class and attributes; fresh containers below, nothing shared
    new._parameters = OrderedDict(
        (k, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for k, p in m._parameters.items())
    new._buffers = OrderedDict((k, None if b is None else b.clone()) for k, b in m._buffers.items())
    children = ((k, fix_module(c) if c is not None else None) for k, c in m._modules.items())
    new._modules = OrderedDict((k, c) for k, c in children if c is not None)
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks"):
        if hasattr(new, hooks):
            setattr(new, hooks, OrderedDict())
    return new
