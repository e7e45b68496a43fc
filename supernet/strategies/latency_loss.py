"""What the hardware-aware strategies (Proxyless, FBNet) share: the expected latency from a latency
table, differentiable in the architecture distribution, and the latency losses.

The table (``supernet.cost.LatencyTable``, built by ``supernet latency``) has the cost model's
groups: ``[(labels, {key: ms}, gate), ...]``, the last one the rest of the network, plus a constant
``overhead_ms``. Under a distribution ``w[label]`` over each label's options (softmax(α) for
Proxyless, a Gumbel-softmax sample for FBNet) the expected latency is

    E[LAT] = overhead + Σ_groups Σ_key Π_i w_{label_i}[key_i] · ms[key]

which is linear in every ``w[label]``, so its gradient reaches α. A table whose entries switch
layers between int8 and float (``supernet.cost.precision``) adds, for each entry's layer, the
expected change over its four states, each state's probability the product of its weight's and its
input's probability of 32 bits. (NNI's legacy ProxylessTrainer
wrapped the products in ``torch.tensor(...)``, which cuts that gradient: ``nni/retiarii/oneshot/pytorch/proxyless.py``
at tag v2.10.)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch

from ..arch import SearchSpace
from ..runtime.typed import ConfigError

LOSSES = ("mul#log", "add#linear")
UNITS = {"ms": 1.0, "us": 1000.0}


def latency_table(cost, who: str):
    """The run's latency table from its cost model, or a one-line error that says how to get one."""
    table = cost.latency_table if cost is not None else None
    if table is None:
        raise ConfigError(f"{who} needs a latency table for this target: set latency.table=FILE (built by "
                          f"`supernet latency ...`), or turn the latency loss off with strategy.latency_loss=null")
    return table


class ExpectedLatency:
    """``E[LAT]`` in ms of a distribution over each label's options, as a differentiable tensor.

    Each group becomes a dense tensor of shape ``(n_1, ..., n_k)`` over its labels' options, so a
    query is one small contraction per group. Closed gates (DARTS cell edges) are not supported.
    """

    def __init__(self, table, space: SearchSpace, device: torch.device):
        self.constant = float(table.overhead_ms)
        self.terms: list[tuple[list[str], torch.Tensor]] = []
        # (labels, key, [(weight bits, act bits, change per state)]): the int8/float switches of an entry
        self.switches: list[tuple[list[str], tuple, list]] = []
        self.floats = {label: torch.tensor(options, dtype=torch.float32, device=device)
                       for label, options in getattr(table, "float_options", {}).items()}
        self.table, self.device = table, device
        lowest = 0.0  # a lower bound of the fastest architecture's latency
        where = getattr(table, "source", None) or "the latency table"
        for i, (labels, entries, gate) in enumerate(table.groups):
            if gate is not None:
                raise ConfigError(f"{where} has a gated group ({gate!r}: DARTS-style cell edges), which the expected "
                                  f"latency of the Proxyless/FBNet loss does not cover; use a space without gated "
                                  f"edges, or SPOS with latency constraints on this one")
            labels = list(labels)
            for label in labels:
                if label not in space.labels:
                    raise ConfigError(f"{where} has label '{label}', which this model does not have; "
                                      f"build the table for this space (`supernet latency ...`)")
            shape = [space.n_options(l) for l in labels]
            ms = torch.zeros(shape, dtype=torch.float64)
            given = torch.zeros(shape, dtype=torch.bool)
            for key, value in entries.items():
                value = float(value)
                if not 0 <= value < math.inf:  # a table made in Python is not checked as a file is
                    raise ConfigError(f"{where} has entry {list(key)} of labels {labels} = {value!r} ms; a latency "
                                      f"must be a finite number >= 0: rebuild the table with `supernet latency`")
                ms[tuple(key)], given[tuple(key)] = value, True
            if not given.all():
                missing = [int(i) for i in torch.nonzero(~given)[0]]
                raise ConfigError(f"{where} lacks the entry {missing} of labels {labels}; rebuild it for "
                                  f"this space")
            switched = table.precision[i] if getattr(table, "precision", None) else {}
            lowest += min(float(v) + sum(min(t.change(s) for s in range(4) if t.ms[s] is not None)
                                         for t in switched.get(key, ())) for key, v in entries.items())
            for key, terms in switched.items():
                self.switches.append((labels, key, [(t.weight, t.act, torch.tensor(
                    [t.change(s) if t.ms[s] is not None else 0.0 for s in range(4)], device=device)) for t in terms]))
            if not labels:
                self.constant += float(ms)
            else:
                self.terms.append((labels, ms.to(device=device, dtype=torch.float32)))
        self.lowest = float(table.overhead_ms) + lowest
        if not math.isfinite(self.constant) or not self.minimum() > 0:
            raise ConfigError(f"{where} predicts {self.minimum():.4g} ms for the fastest architecture (its overhead_ms "
                              f"{float(table.overhead_ms):g} outweighs the entries), but a latency is > 0: rebuild "
                              f"the table with `supernet latency ... --check K`")

    def __call__(self, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), device=self.terms[0][1].device if self.terms else "cpu") + self.constant
        for labels, ms in self.terms:
            out = ms
            for label in reversed(labels):  # contract the last axis with its label's weights
                out = out @ weights[label].to(ms.dtype)
            total = total + out  # Σ_key Π_i w_{label_i}[key_i] · ms[key]
        for labels, key, terms in self.switches:
            change = sum(self._states(w, a, weights) @ delta for w, a, delta in terms)
            for label, k in zip(labels, key):
                change = change * weights[label][k]
            total = total + change
        return total

    def _states(self, w, a, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """The probabilities of a layer's four states (weight float?, input float?)."""
        pw, pa = (self._float(x, weights) for x in (w, a))
        return torch.stack([(1 - pw) * (1 - pa), (1 - pw) * pa, pw * (1 - pa), pw * pa])

    def _float(self, x, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(x, int):
            return torch.tensor(float(x == 32), device=self.device)
        if x not in self.floats:
            return torch.tensor(0.0, device=self.device)
        return weights[x].to(torch.float32) @ self.floats[x]

    def arch(self, arch: dict) -> float:
        """The table latency of one architecture (ms)."""
        if self.switches:
            return self.table.predict(arch)
        return self.constant + sum(float(ms[tuple(arch[l] for l in labels)]) for labels, ms in self.terms)

    def minimum(self) -> float:
        """The fastest architecture's latency, or a lower bound of it where layers switch precision."""
        if self.switches:
            return self.lowest
        return self.constant + sum(float(ms.min()) for _, ms in self.terms)


def check_loss_settings(c, kind_keys: dict[str, tuple[str, ...]]) -> None:
    """A latency setting that the chosen loss does not use is an error (it would be silently ignored).

    Args:
        c: a strategy's Config dataclass instance, with ``latency_loss``.
        kind_keys: loss name -> the keys it uses.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(c)}
    used = kind_keys.get(c.latency_loss, ())
    for key in sorted({k for keys in kind_keys.values() for k in keys}):
        if key not in used and getattr(c, key) != defaults[key]:
            raise ValueError(f"{key}={getattr(c, key)} is not used by latency_loss={c.latency_loss}; "
                             f"remove it (or choose a loss that uses it)")


def _unit_fix(unit: str) -> str:
    if unit != "us":
        return "set strategy.latency_unit=us"
    return ("the latency table's figures are too small for it even in us: check the table, or turn the loss off "
            "with strategy.latency_loss=null")


def check_log_unit(latency: ExpectedLatency, unit: str, who: str, ref_latency: Optional[float] = None) -> None:
    """At setup, before any step: a log-form loss needs every latency it will take the log of above 1
    in ``unit``. The expected latency is linear in each label's weights, so no distribution goes
    below the fastest architecture: checking that one (and ``ref_latency``) covers the whole run."""
    for what, ms in [("ref_latency", ref_latency), ("the fastest architecture", latency.minimum())]:
        if ms is not None and not ms * UNITS[unit] > 1:
            raise ValueError(f"{who} takes log latency in {unit}: {what} is {ms:.4g} ms, not above 1 {unit}; "
                             f"{_unit_fix(unit)}")


def log_latency(lat_ms: torch.Tensor, unit: str, who: str) -> torch.Tensor:
    """log LAT in ``unit`` (the log-form losses need LAT > 1 in their unit; ``check_log_unit``
    refuses a table that could go below at setup, so this guards only against what it cannot see)."""
    lat = lat_ms * UNITS[unit]
    if not float(lat.detach()) > 1.0:
        raise ValueError(f"{who}: the expected latency {float(lat.detach()):.3g} {unit} is <= 1 {unit}, where the "
                         f"log-form latency loss is not positive; {_unit_fix(unit)}")
    return lat.log()
