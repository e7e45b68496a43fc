"""NNI 2.x's one-shot hooks (``nni.retiarii.oneshot.pytorch.utils``): swap choices for your own modules.

Our strategies never swap modules: they write ``active`` / ``weights`` (see ``supernet.nn.choices``).
These functions are for NNI scripts that build their own mixed ops, such as a ``DartsLayerChoice``
holding its own alpha. They work on any ``nn.Module`` and keep NNI's semantics.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..nn.choices import Choice, InputChoice, LayerChoice

Replaced = list[tuple[str, nn.Module]]  # (label, new module), in module order


def replace_layer_choice(root_module: nn.Module, init_fn: Callable[[LayerChoice], nn.Module],
                         modules: Replaced | None = None) -> Replaced:
    """Replace every ``LayerChoice`` below ``root_module`` with ``init_fn(choice)``.

    The children are walked recursively (``named_children``) and each ``LayerChoice`` is set on
    its parent under the same name. A replaced module is not searched further, so a choice
    nested in a candidate of a replaced one stays as it was. ``root_module`` itself is never
    replaced, even when it is a ``LayerChoice``: it has no parent to set it on (nor in NNI).

    Args:
        root_module: the model to walk; changed in place.
        init_fn: builds the new module from the choice it replaces.
        modules: a list to append to (NNI's argument); a new list if None.

    Returns:
        ``modules``, with one ``(choice.label, new_module)`` appended per replaced choice in
        module order. Choices sharing a label give one entry each, as in NNI (whose docstring
        says "dict" but whose code returns this list).
    """
    return _replace(root_module, LayerChoice, init_fn, [] if modules is None else modules)


def replace_input_choice(root_module: nn.Module, init_fn: Callable[[InputChoice], nn.Module],
                         modules: Replaced | None = None) -> Replaced:
    """Replace every ``InputChoice`` below ``root_module`` with ``init_fn(choice)``.

    The same walk as ``replace_layer_choice``; an ``InputChoice`` inside a LayerChoice's
    candidate is found (the LayerChoice is an ordinary container here).
    """
    return _replace(root_module, InputChoice, init_fn, [] if modules is None else modules)


def _replace(parent: nn.Module, kind: type[Choice], init_fn: Callable, modules: Replaced) -> Replaced:
    for name, child in list(parent.named_children()):  # a copy: setattr below changes the children
        if isinstance(child, kind):
            new = init_fn(child)
            setattr(parent, name, new)
            modules.append((child.label, new))
        else:
            _replace(child, kind, init_fn, modules)
    return modules
