"""What the NNI-style trainers check before training, so that misuse is one error naming the
argument or the choice, not a torch traceback some steps into ``fit()``.

``probe_candidates`` runs one small batch through the model once with every ``LayerChoice``
running all its candidates on its input: candidates whose outputs differ in shape would fail
only when mixed (DARTS, FBNet), or at a later layer on the step that samples them (SPOS, ENAS,
Proxyless).
"""
from __future__ import annotations

import random
from typing import Optional

import torch
from torch import nn
from torch.utils.data import default_collate

from ..arch import SearchSpace
from ..nn.choices import InputChoice, LayerChoice

PROBE_IMAGES = 2  # the probe's batch: enough for BatchNorm in any mode, cheap for any model


def check_inputs(who: str, model, loss, metrics, optimizer, dataset, dataset_name: str) -> SearchSpace:
    """The arguments every trainer shares, checked; returns the model's search space."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{who}: model must be a torch.nn.Module, got {type(model).__name__}")
    if loss is not None and not callable(loss):  # None: cross-entropy, the loop's default
        raise TypeError(f"{who}: loss must be callable as loss(logits, y) (or None: cross-entropy), got "
                        f"{type(loss).__name__}")
    if metrics is not None and not callable(metrics):
        raise TypeError(f"{who}: metrics must be None or callable as metrics(logits, y) -> dict, got "
                        f"{type(metrics).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{who}: optimizer must be a torch.optim.Optimizer over the model's weights, got "
                        f"{type(optimizer).__name__}")
    check_dataset(who, dataset, dataset_name)
    space = SearchSpace(model)
    if not space.labels:
        raise ValueError(f"{who}: the model has no LayerChoice or InputChoice, so there is nothing to search; build "
                         f"its choices with supernet.oneshot.nn (LayerChoice, InputChoice), or train it with a "
                         f"plain loop")
    return space


def check_dataset(who: str, dataset, name: str) -> None:
    """A map-style dataset: ``len(dataset)`` and ``dataset[i] -> (x, y)``."""
    if dataset is None or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"{who}: {name} must be a Dataset with len() and dataset[i] -> (x, y), got "
                        f"{type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{who}: {name} is empty")


def probe_candidates(who: str, model: nn.Module, space: SearchSpace, dataset) -> None:
    """One forward of ``PROBE_IMAGES`` items of ``dataset``, every LayerChoice running all its
    candidates and every InputChoice checking its inputs; a mismatch raises ``ValueError`` naming
    the label and the shapes. BatchNorm statistics are left as they were (eval mode, no grad)."""
    x, _ = default_collate([dataset[i] for i in range(min(PROBE_IMAGES, len(dataset)))])
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    hooks = [m.register_forward_pre_hook(_layer_probe(who) if isinstance(m, LayerChoice) else _input_probe(who),
                                         with_kwargs=True)
             for m in model.modules() if isinstance(m, (LayerChoice, InputChoice))]
    was_training = model.training
    try:
        space.activate(space.sample(random.Random(0)))  # any path: the hooks run every candidate
        model.eval()
        with torch.no_grad():
            model(x.to(device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def _layer_probe(who: str):
    def hook(module: LayerChoice, args, kwargs):
        shapes = {}
        for name, candidate in module.candidates.items():
            try:
                shapes[name] = _shape(candidate(*args, **kwargs))
            except RuntimeError as e:  # a candidate that cannot take the choice's input
                raise ValueError(f"{who}: LayerChoice '{module.label}' candidate '{name}' fails on the choice's "
                                 f"input of shape {_shape(args[0]) if args else '?'}: {_first_line(e)}") from None
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"'{n}' {s}" for n, s in shapes.items())
            raise ValueError(f"{who}: LayerChoice '{module.label}' candidates give outputs of different shapes on "
                             f"one batch ({listed}); every candidate must map the choice's input to the same shape")
    return hook


def _input_probe(who: str):
    def hook(module: InputChoice, args, kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        if module.reduction == "none" or not isinstance(inputs, (list, tuple)):
            return
        shapes = [_shape(t) for t in inputs]
        comparable = [s[:1] + s[2:] for s in shapes] if module.reduction == "concat" else shapes  # concat: along dim 1
        if len(set(comparable)) > 1:
            raise ValueError(f"{who}: InputChoice '{module.label}' gets inputs of different shapes on one batch "
                             f"({', '.join(map(str, shapes))}); reduction {module.reduction!r} needs them "
                             f"{'equal but for dim 1' if module.reduction == 'concat' else 'equal'}")
    return hook


def _shape(value) -> Optional[tuple]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
