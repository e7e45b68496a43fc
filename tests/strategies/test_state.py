"""Every registered strategy checks a state read back from a checkpoint before it loads any of it: a
state with a tensor of another shape, an entry missing or a string in place of an entry raises
``StrategyStateError`` naming the entry, never a traceback from deep in torch (a KeyError, a size
mismatch in ``copy_``, a failure at the optimizer's next step)."""
import copy
import functools

import pytest
import torch

from supernet.data import DataConfig, build_data
from supernet.strategies import STRATEGIES
from supernet.strategies.base import StrategyStateError
from supernet.train import fit
from supernet.train.config import OptimConfig, TrainConfig

from .standin import short_strategy


@functools.lru_cache(maxsize=None)
def _trained(name: str) -> dict:
    """The state of strategy ``name`` after a short run through its whole schedule."""
    model, strategy, _ = short_strategy(name)
    data = build_data(DataConfig(name="synthetic", image_size=16, synthetic_train=96, synthetic_test=32,
                                 synthetic_classes=5, val_per_class=2))
    fit(model, data.train, TrainConfig(steps=6, batch_size=8, log_every=6, progress=False, optim=OptimConfig(lr=0.05)),
        None, strategy=strategy)
    return strategy.state_dict()


def trained_state(name: str) -> dict:
    return copy.deepcopy(_trained(name))


@functools.lru_cache(maxsize=None)
def fresh(name: str):
    """A set-up strategy ``name``; shared, since a state that does not fit is refused before any of it loads."""
    strategy = short_strategy(name)[1]
    strategy.setup(torch.device("cpu"))
    return strategy


def entries(value, path=()):
    """Every entry below ``value`` as a key path (a long list contributes its first and last item)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(enumerate(value))
        items = items if len(items) <= 2 else [items[0], items[-1]]
    else:
        return
    for key, item in items:
        yield path + (key,), item
        yield from entries(item, path + (key,))


def changed(state: dict, path: tuple, how: str) -> dict:
    """A deep copy of ``state`` with the entry at ``path`` deleted, replaced by a string or reshaped."""
    out = copy.deepcopy(state)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, tuple):  # (an optimizer's betas)
        return changed_tuple(out, path, how)
    if how == "delete":
        del parent[path[-1]]
    elif how == "string":
        parent[path[-1]] = "oops"
    else:
        parent[path[-1]] = parent[path[-1]].reshape(1, *parent[path[-1]].shape)  # (n,) -> (1, n), () -> (1,)
    return out


def changed_tuple(out: dict, path: tuple, how: str) -> dict:
    holder = out
    for key in path[:-2]:
        holder = holder[key]
    items = list(holder[path[-2]])
    if how == "delete":
        del items[path[-1]]
    else:
        items[path[-1]] = "oops"
    holder[path[-2]] = tuple(items)
    return out


def mutations(state: dict):
    for path, value in entries(state):
        if isinstance(value, torch.Tensor):
            yield path, "reshape"
        if isinstance(path[-1], str) or isinstance(value, (torch.Tensor, list, tuple, dict)):
            yield path, "delete"  # a dict entry, or an item of a list of fixed length
        if not isinstance(value, str):
            yield path, "string"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_state_that_does_not_fit_is_refused_by_entry(name):
    state = trained_state(name)
    loaded = short_strategy(name)[1]
    loaded.setup(torch.device("cpu"))
    loaded.load_state_dict(copy.deepcopy(state))  # what it saved, it loads
    tried = 0
    for path, how in mutations(state):
        bad = changed(state, path, how)
        if how == "delete" and _optional(state, path):
            continue
        with pytest.raises(StrategyStateError) as e:
            fresh(name).load_state_dict(bad)
        message = str(e.value)
        assert name in message and "\n" not in message, message
        tried += 1
    assert not state or tried > 10  # a strategy with state of its own has entries to get wrong


def _optional(state, path) -> bool:
    """An item of a list of any length (a history, scores), a parameter's optimizer state (a
    parameter that has not had a gradient yet has none) or an optimizer's flag (torch fills a
    missing one with its default, so a state from another torch version loads)."""
    value = state
    for key in path:
        value = value[key]
    return (isinstance(path[-1], int) and (path[-2] in ("history", "scores") or path[-3:-1] == ("optimizer", "state"))
            or path[-4:-2] == ("optimizer", "param_groups") and (value is None or isinstance(value, bool)))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_state_of_another_kind_or_with_an_unknown_entry_is_refused(name):
    strategy = fresh(name)
    for bad in ("oops", [1, 2], {**strategy.state_dict(), "surplus": 1}):
        with pytest.raises(StrategyStateError, match=name):
            strategy.load_state_dict(bad)


def test_the_message_names_the_entry_what_was_expected_and_what_was_found():
    state = trained_state("darts")
    alpha = state["alpha"][0]
    with pytest.raises(StrategyStateError) as e:
        fresh("darts").load_state_dict({**state, "alpha": [alpha.reshape(1, -1)] + state["alpha"][1:]})
    n = alpha.numel()
    assert str(e.value) == (f"darts state entry 'alpha[0]': expected a tensor of shape ({n},), found a tensor of "
                            f"shape (1, {n})")
    with pytest.raises(StrategyStateError, match=r"darts state entry 'history': expected a list, each item a dict of "
                                                 r"step, weights, found str 'oops'"):
        fresh("darts").load_state_dict({**state, "history": "oops"})
    with pytest.raises(StrategyStateError, match="darts state lacks entry 'optimizer'"):
        fresh("darts").load_state_dict({k: v for k, v in state.items() if k != "optimizer"})


def test_an_optimizer_state_from_another_torch_version_loads():
    """Its groups may lack a flag torch added since (filled with its default on load) or carry one it
    has dropped; its numbers are still checked."""
    state = trained_state("darts")
    group = state["optimizer"]["param_groups"][0]
    flag = next(k for k, v in group.items() if isinstance(v, bool))
    del group[flag]
    group["a_flag_of_another_version"] = True
    strategy = short_strategy("darts")[1]
    strategy.setup(torch.device("cpu"))
    strategy.load_state_dict(state)
    assert strategy.optimizer.param_groups[0][flag] is not None  # filled by torch
    del group["lr"]
    with pytest.raises(StrategyStateError, match=r"darts state lacks entry 'optimizer.param_groups\[0\].lr'"):
        fresh("darts").load_state_dict(state)
