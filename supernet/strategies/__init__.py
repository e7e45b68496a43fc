"""How a supernet is trained: one ``Strategy`` per one-shot method, all on the same loop.

    spos      uniform single-path sampling (SPOS), optionally under FLOPs/params constraints
    fairnas   strict fairness: m paths per step, each candidate trained once, one update
    darts     softmax relaxation, α by gradient on held-out batches (first or second order)
    enas      an LSTM controller trained by REINFORCE on held-out rewards samples the paths
    proxyless binary gates over softmax(α), one path per step, a latency loss from the latency table
    fbnet     Gumbel-softmax over θ, the latency loss CE·α·log(LAT)^β from the latency table

``strategy:`` in a config names one (``name``) and sets its own keys, checked against its
``Config`` dataclass. ``register`` adds a user's strategy (examples/custom_strategy.py).
``FewShot`` runs any single-path one on a supernet split into sub-supernets (few-shot NAS).
"""
from __future__ import annotations

import dataclasses
import inspect

from ..arch import SearchSpace
from ..runtime.typed import ConfigError, from_dict, to_dict
from .base import Plain, StepContext, Strategy, import_named
from .darts import DARTS
from .controller import Controller
from .enas import ENAS
from .fairnas import FairNAS, fair_paths
from .fbnet import FBNet
from .few_shot import FewShot
from .proxyless import Proxyless
from .spos import SPOS, PathSampler
from .state import StrategyStateError

STRATEGIES: dict[str, type[Strategy]] = {}


RENAMED = {"export": "final_arch", "export_info": "final_arch_info"}  # old hook name -> new


def check_hooks(cls: type[Strategy]) -> None:
    """Refuse a strategy written against the old hook names: its architecture would be lost silently."""
    for old, new in RENAMED.items():
        if old in vars(cls) and new not in vars(cls):
            raise ConfigError(f"strategy {cls.__name__} defines {old}(), which is now called {new}(); rename it")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make ``cls`` available as ``strategy.name: <cls.name>`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or cls.name in ("base", "plain"):
        raise ValueError(f"{cls!r} is not a Strategy subclass with its own name")
    check_hooks(cls)
    STRATEGIES[cls.name] = cls
    return cls


for _cls in (SPOS, FairNAS, DARTS, ENAS, Proxyless, FBNet):
    register(_cls)


def strategy_class(name) -> type[Strategy]:
    """A registered strategy, or a user's one named ``module:Class`` (imported, as an entry point is)."""
    if isinstance(name, str) and ":" in name and name not in STRATEGIES:
        cls = import_named("strategy.name", name, f"one of {', '.join(STRATEGIES)}")
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ConfigError(f"strategy.name {name!r} is not a supernet.strategies.Strategy subclass")
        check_hooks(cls)
        return cls
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; strategy.name must be one of {', '.join(STRATEGIES)} "
                          f"or a user's strategy as module:Class")
    return STRATEGIES[name]


def check_settings(settings: dict | None) -> dict:
    """The ``strategy`` section, validated and completed with the strategy's defaults."""
    settings = dict(settings or {})
    name = settings.pop("name", "spos")
    cls = strategy_class(name)
    valid = ["name"] + [f.name for f in dataclasses.fields(cls.Config)]
    unknown = [k for k in settings if k not in valid]
    if unknown:
        raise ConfigError(f"unknown key 'strategy.{unknown[0]}' for strategy {name!r}; valid keys: {', '.join(valid)}")
    config = from_dict(cls.Config, settings, where="strategy.")
    return {"name": name, **to_dict(config)}


def build_strategy(settings: dict | None, space: SearchSpace, seed: int, cost=None) -> Strategy:
    """The strategy a (validated) ``strategy`` section describes, for ``space``.

    ``cost``: the run's ``CostModel`` with its latency table (``latency.table``), for a strategy
    whose ``__init__`` takes ``cost=`` (latency constraints and losses); others do not get it.
    """
    settings = dict(settings or {})
    cls = strategy_class(settings.pop("name", "spos"))
    kw = {"cost": cost} if cost is not None and "cost" in inspect.signature(cls).parameters else {}
    return cls(space, from_dict(cls.Config, settings, where="strategy."), seed, **kw)


__all__ = ["Strategy", "StepContext", "Plain", "SPOS", "FairNAS", "DARTS", "ENAS", "Controller", "Proxyless", "FBNet", "PathSampler", "fair_paths", "FewShot", "STRATEGIES",
           "StrategyStateError",
           "register", "strategy_class", "check_settings", "build_strategy"]
