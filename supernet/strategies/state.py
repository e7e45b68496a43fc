"""Checks of a strategy state read back from a checkpoint, against the strategy that loads it.

A checkpoint with a valid header can still hold a state made for another space, by another
version or by hand: α of the wrong shape, a string where the history was. torch would fail deep
inside ``copy_`` or at the optimizer's next step; these checks name the entry instead, with what
was expected and what was found.

A strategy describes its state by a template, an example of what it accepts:

    a tensor            a tensor of that shape
    an int / a float    an int / a number (int or float), never a bool
    a bool, a str       the same type
    None                None
    a list or tuple     a list or tuple of that length, item by item
    a dict              a dict with exactly those entries
    Fields(d, o)        a dict with d's entries and any of o's (``others=True``: and any other)
    ListOf(t)           a list of any length, each item fitting t
    Maybe(t)            None, or fitting t
    Check(what, test)   a value for which test(value) returns None (else the problem, in words)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch


class StrategyStateError(ValueError):
    """A strategy state that does not fit the strategy loading it; the message names the entry,
    what was expected and what was found."""


@dataclass(frozen=True)
class Fields:
    required: dict
    optional: dict = field(default_factory=dict)
    others: bool = False  # entries of neither are accepted unchecked


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class Maybe:
    inner: Any


@dataclass(frozen=True)
class Check:
    what: str
    test: Callable[[Any], Optional[str]]


ANY = Check("any value", lambda value: None)


def check_state(name: str, state, template) -> None:
    """Raise ``StrategyStateError`` unless ``state`` fits ``template`` (see the module docstring).

    Args:
        name: the strategy's name, for the message.
    """
    _fit(state, template, name, "")


def positive(value) -> Optional[str]:
    """``Check`` test: a number above zero."""
    return None if _is_number(value) and value > 0 else "not a number > 0"


def optimizer_template(optimizer: torch.optim.Optimizer) -> Fields:
    """What ``optimizer.state_dict()`` may hold: its groups' settings and, per parameter, the state
    one step of this optimizer keeps (learnt from one step of a copy on stand-in parameters)."""
    groups = optimizer.param_groups
    stand_ins = [[torch.zeros_like(p, requires_grad=True) for p in g["params"]] for g in groups]
    for p in (p for ps in stand_ins for p in ps):
        p.grad = torch.zeros_like(p)
    probe = type(optimizer)([{**g, "params": ps} for g, ps in zip(groups, stand_ins)])
    probe.step()
    saved = probe.state_dict()
    per_param = {i: Fields(s) for i, s in saved["state"].items()}  # a parameter not stepped yet has none
    return Fields({"state": Fields({}, per_param), "param_groups": [_group_template(g) for g in saved["param_groups"]]})


def _group_template(group: dict) -> Fields:
    """A parameter group's settings. Its numbers (lr, betas, eps, weight_decay) are needed; its flags
    (amsgrad, foreach, fused, ...) may be absent or extra, as between torch versions, whose
    optimizers fill a missing flag with its default when they load a state."""
    flags = {k: Maybe(True) if v is None else v for k, v in group.items() if v is None or isinstance(v, bool)}
    return Fields({k: v for k, v in group.items() if k not in flags}, flags, others=True)


def _fit(value, t, name: str, path: str) -> None:
    if isinstance(t, Fields) or isinstance(t, dict):
        _fit_fields(value, t if isinstance(t, Fields) else Fields(t), name, path)
    elif isinstance(t, Maybe):
        if value is not None:
            _fit(value, t.inner, name, path)
    elif isinstance(t, Check):
        problem = t.test(value)
        if problem is not None:
            raise StrategyStateError(f"{_where(name, path)}: expected {t.what}, found {_found(value)} ({problem})")
    elif isinstance(t, ListOf):
        _expect(isinstance(value, (list, tuple)), value, t, name, path)
        for i, item in enumerate(value):
            _fit(item, t.item, name, f"{path}[{i}]")
    elif isinstance(t, (list, tuple)):
        _expect(isinstance(value, (list, tuple)) and len(value) == len(t), value, t, name, path)
        for i, (item, ti) in enumerate(zip(value, t)):
            _fit(item, ti, name, f"{path}[{i}]")
    else:
        _expect(_same_kind(value, t), value, t, name, path)


def _fit_fields(value, t: Fields, name: str, path: str) -> None:
    _expect(isinstance(value, dict), value, t, name, path)
    for key in t.required:
        if key not in value:
            raise StrategyStateError(f"{name} state lacks entry '{_join(path, key)}' "
                                     f"(expected {_describe(t.required[key])})")
    known = {**t.optional, **t.required}
    for key, item in value.items():
        if key not in known and t.others:
            continue
        if key not in known:
            raise StrategyStateError(f"{_where(name, _join(path, key))}: {name} saves no such entry (expected "
                                     f"{_describe(t)})")
        _fit(item, known[key], name, _join(path, key))


def _same_kind(value, t) -> bool:
    if isinstance(t, torch.Tensor):
        return isinstance(value, torch.Tensor) and value.shape == t.shape
    if isinstance(t, bool):
        return isinstance(value, bool)
    if isinstance(t, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, float):
        return _is_number(value)
    if isinstance(t, str):
        return isinstance(value, str)
    if t is None:
        return value is None
    raise TypeError(f"not a state template: {t!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expect(ok: bool, value, t, name: str, path: str) -> None:
    if not ok:
        raise StrategyStateError(f"{_where(name, path)}: expected {_describe(t)}, found {_found(value)}")


def _where(name: str, path: str) -> str:
    return f"{name} state entry '{path}'" if path else f"{name} state"


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path and isinstance(key, str) else (key if isinstance(key, str) else f"{path}[{key}]")


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"a tensor of shape {tuple(t.shape)}"
    if isinstance(t, (dict, Fields)):
        f = t if isinstance(t, Fields) else Fields(t)
        if any(not isinstance(k, str) for k in f.optional):  # an optimizer's state
            return "a dict from parameter index to that parameter's state"
        keys = [str(k) for k in f.required] + [f"{k} (optional)" for k in f.optional if isinstance(k, str)]
        return f"a dict of {', '.join(keys)}" if keys else "an empty dict"
    if isinstance(t, ListOf):
        return f"a list, each item {_describe(t.item)}"
    if isinstance(t, (list, tuple)):
        return f"a list of {len(t)} items"
    if isinstance(t, Maybe):
        return f"None or {_describe(t.inner)}"
    if isinstance(t, Check):
        return t.what
    return {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(type(t), "None")


def _found(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
