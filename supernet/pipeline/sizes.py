"""What a run's settings would allocate, estimated before anything is built.

A setting such as ``space.options.channels=100000`` or ``strategy.lstm_size=200000`` would
otherwise fail deep inside torch with an allocation traceback, or swap the machine. The network is
first built on PyTorch's meta device, which records shapes and allocates nothing: its parameters
(with their gradients and optimizer state) and the activations of one batch on the path, or the
options, that the strategy runs give an estimate of what training takes, checked by ``check_fits``
in one line that names the setting. A strategy's own allocations are its ``memory_needs``.
"""
from __future__ import annotations

import random
from typing import Iterable, Optional

import torch
from torch import nn

from ..arch import SearchSpace, fix, parse_arch
from ..arch.few_shot import parts_of, split_labels
from ..data.memory import check_fits
from ..nn.choices import LayerChoice
from ..runtime import dist
from ..runtime.device import resolve_device
from ..runtime.typed import ConfigError, from_dict, to_dict
from ..runtime.units import human_count
from ..spaces import create, space_options
from ..strategies import strategy_class
from ..train import TrainConfig
from .config import RunConfig

DATA_OPTIONS = ("num_classes", "in_channels", "input_size")  # set by the data, not by the user's options


def check_supernet_fits(cfg: RunConfig, data, options: dict) -> None:
    """Refuse, in one line, a supernet (with its strategy's own state) too large to train here;
    ``options`` are the space's, with what the data dictates."""
    model = meta_model(cfg.space, options)
    if model is None:
        return
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))  # one path: the least any strategy runs
    if not strategy_class(cfg.strategy.get("name", "spos")).path_only:
        mix_every_option(space)
    device = training_device(cfg.supernet.device)
    weights, train, activations = training_bytes(model, cfg.supernet, (data.in_channels, data.image_size,
                                                                       data.image_size), device)
    named = size_settings(cfg.space.name, options, lambda k: f"space.options.{k}")
    what = f"the {cfg.space.name} supernet ({in_words(count(model.parameters()))} parameters) trained with " \
           f"batches of {cfg.supernet.batch_size}"
    by_batch = activations > train / 2 or not named
    check_training(weights, train, device, what, ("supernet.batch_size", cfg.supernet.batch_size) if by_batch else named)
    if cfg.supernet.few_shot.split_at is not None:
        weights, train = check_few_shot_fits(cfg, model, space, weights, train, activations, device)
    check_strategy_fits(cfg, space, train, device, data)


def check_few_shot_fits(cfg: RunConfig, model: nn.Module, space: SearchSpace, weights: int, train: int,
                        activations: int, device: torch.device) -> tuple[int, int]:
    """Refuse, in one line, a few-shot split whose K sub-supernets (each with its gradients, momentum
    and BN statistics; one batch's activations, one path at a time) would not fit; returns the
    bytes of their weights and of their training."""
    try:
        labels = split_labels(space, cfg.supernet.few_shot.labels)
    except ValueError as e:
        raise ConfigError(f"supernet.few_shot.labels: {e}") from None
    k = parts_of(space, labels)
    weights, train = k * weights, k * (train - activations) + activations
    setting = f"supernet.few_shot.labels=[{','.join(labels)}]"
    what = (f"{k:,} sub-supernets of the {cfg.space.name} supernet ({in_words(count(model.parameters()))} parameters "
            f"each, {in_words(k * count(model.parameters()))} in all; one per option of {', '.join(labels)})")
    fix_ = "split on fewer decisions, or on decisions with fewer options"
    if device.type != "cpu":
        check_fits(weights, f"{setting}: building {what}", fix_)
    check_fits(max(weights, train) if device.type == "cpu" else train, f"{setting}: training {what}", fix_, device)
    return weights, train


def mix_every_option(space: SearchSpace) -> None:
    """Weight every option of every ``LayerChoice``, as DARTS and FBNet run them (their activations
    are several times one path's); left as one path where the space refuses weights."""
    layers = [label for label in space.labels if isinstance(space.choice(label), LayerChoice)]
    try:
        space.set_weights({label: torch.full((space.n_options(label),), 1 / space.n_options(label), device="meta")
                           for label in layers})
    except ValueError:
        pass


def check_subnet_fits(cfg: RunConfig, data, arch: dict, options: dict) -> None:
    """Refuse, in one line, a retrained network of ``arch`` (space ``options``) too large to build or
    train here: it is cut from its space's full supernet, so both are held for a moment."""
    supernet = meta_model(cfg.space, options)
    if supernet is None:
        return
    with torch.device("meta"):
        model = fix(supernet, parse_arch(arch, SearchSpace(supernet)), weights="copy")  # as build_subnet cuts it
    device = training_device(cfg.retrain.device)
    weights, train, activations = training_bytes(model, cfg.retrain, (data.in_channels, data.image_size,
                                                                      data.image_size), device)
    built = weights + count_bytes(supernet.parameters()) + count_bytes(supernet.buffers())
    named = size_settings(cfg.space.name, options, lambda k: f"retrain.space_options.{k}"
                          if k in cfg.retrain.space_options else f"space.options.{k}")
    what = f"the retrained {cfg.space.name} network ({in_words(count(model.parameters()))} parameters, cut " \
           f"from a supernet of {in_words(count(supernet.parameters()))}) trained with batches of " \
           f"{cfg.retrain.batch_size}"
    by_batch = activations > train / 2 and activations > built / 2 or not named
    check_training(built, train, device, what, ("retrain.batch_size", cfg.retrain.batch_size) if by_batch else named)


def check_training(built: int, train: int, device: torch.device, what: str, named) -> None:
    """``check_fits`` for a network built on the host (``built`` bytes) and trained on ``device``
    (``train`` bytes), naming what decides the size: the space options ``named`` (``key=value``
    strings), or a ``(key, value)`` batch size."""
    if isinstance(named, tuple):
        setting, fix_ = f"{named[0]}={named[1]}", f"lower {named[0]} or data.image_size"
    else:
        setting, fix_ = ", ".join(named), f"lower {', '.join(n.partition('=')[0] for n in named)}"
    if device.type != "cpu":
        check_fits(built, f"{setting}: building {what}", fix_)  # on the host first
    check_fits(max(built, train) if device.type == "cpu" else train, f"{setting}: {what}", fix_, device)


def meta_model(space, options: dict) -> Optional[nn.Module]:
    """The run's space (``cfg.space``: its name, and its ``quant`` settings) built on the meta device
    (shapes only, nothing allocated); None for a space that cannot be built there (the estimate is
    then skipped)."""
    try:
        with torch.device("meta"):
            return space.quant.apply(create(space.name, **options))
    except (RuntimeError, NotImplementedError):  # e.g. a space that reads a tensor's value while building
        return None


def training_bytes(model: nn.Module, tc: TrainConfig, input_shape: tuple,
                   device: torch.device) -> tuple[int, int, int]:
    """The bytes of ``model``'s weights; of its training on ``device`` (weights, gradients, SGD's
    momentum buffers, BN statistics and one batch's activations); and of those activations."""
    weights = count_bytes(model.parameters())
    states = 2 + (tc.optim.momentum > 0)
    activations = activation_bytes(model, input_shape, max(1, tc.batch_size // dist.world()))
    if tc.amp and device.type == "cuda":
        activations //= 2  # bf16 autocast
    return weights, weights * states + count_bytes(model.buffers()) + activations, activations


def activation_bytes(model: nn.Module, input_shape: tuple, batch: int) -> int:
    """The bytes of every leaf module's output in one forward of ``batch`` inputs on the meta
    device: about what training keeps for the backward pass. 0 where a forward cannot run there."""
    total = 0

    def add(module, inputs, output):
        nonlocal total
        if not getattr(module, "inplace", False):  # written over its input: no new memory
            total += count_bytes(t for t in (output if isinstance(output, (tuple, list)) else (output,))
                                 if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(add) for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.no_grad():
            model(torch.empty(batch, *input_shape, device="meta"))
    except Exception:  # an op meta tensors do not support: the weights alone are checked
        return 0
    finally:
        for h in hooks:
            h.remove()
    return total


def training_device(name: str) -> torch.device:
    return dist.local_device(resolve_device(name))


def in_words(n: int) -> str:
    """A parameter count for people, in T beyond human_count's G."""
    return f"{n / 1e12:.2f}T" if n >= 1e12 else human_count(n)


def count(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)


def count_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def size_settings(name: str, options: dict, key) -> list[str]:
    """The space options set above the space's defaults, as ``key(option)=value``: what makes a
    network larger than the space's own; all numeric options set when none is above."""
    defaults = to_dict(space_options(name))
    given = {k: v for k, v in options.items() if k not in DATA_OPTIONS and _size(v) is not None}
    above = [k for k, v in given.items() if _size(defaults.get(k)) is not None and _size(v) > _size(defaults[k])]
    return [f"{key(k)}={given[k]}" for k in (above or given)]


def _size(value) -> Optional[float]:
    """A number, or a list of numbers' sum (``stage_repeats``); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and value and all(_size(v) is not None and not isinstance(v, (list, tuple))
                                                         for v in value):
        return sum(value)
    return None


def check_strategy_fits(cfg: RunConfig, space: SearchSpace, train: int, device: torch.device, data) -> None:
    """Refuse strategy settings whose own allocations (an ENAS controller and its samples) would
    not fit beside the supernet's training (``train`` bytes)."""
    cls = strategy_class(cfg.strategy.get("name", "spos"))
    config = from_dict(cls.Config, {k: v for k, v in cfg.strategy.items() if k != "name"}, where="strategy.")
    image = 4 * data.in_channels * data.image_size ** 2 + 8
    batch = max(1, cfg.supernet.batch_size // dist.world()) * image
    for need, setting, what in cls.memory_needs(config, space, batch):
        check_fits(need + train, f"{setting}: {what}, beside the supernet's training,",
                   f"lower {setting.partition('=')[0]}", device)
