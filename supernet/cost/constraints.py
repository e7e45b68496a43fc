"""Constraints on an architecture's cost: ``flops<=330M``, ``params<3.5e6``, ``latency<=12ms``,
``flops=290M..360M``, and for mixed-precision spaces ``bitops<=13G`` and ``size<=1.5MB``, checked
against a ``CostModel`` (and its latency table for latency)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..arch import Arch
from ..runtime.units import fmt_bytes, fmt_count, fmt_ms
from .flops import CostModel

METRICS = ("flops", "params", "latency", "bitops", "size")
_UNITS = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}
_TIME_UNITS = {"": 1, "ms": 1, "us": 1e-3, "µs": 1e-3, "s": 1e3}  # latency is kept in milliseconds
_BYTE_UNITS = {"": 1, "B": 1, "KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2 ** 10, "MiB": 2 ** 20,
               "GiB": 2 ** 30}  # size is kept in bytes


@dataclass(frozen=True)
class Constraint:
    """``min <= metric(arch) <= max``; either bound may be None. Latency bounds are in milliseconds."""

    metric: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown constraint metric {self.metric!r}; use one of {METRICS}")
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs a min or a max")
        for bound in (self.min, self.max):
            if bound is not None and not (math.isfinite(bound) and bound >= 0):
                # a bound below 0 could only be met by a broken cost model
                shown = formatter(self.metric)(bound) if math.isfinite(bound) else f"{bound:g}"
                raise ValueError(f"constraint {self.metric}: the bound {shown} must be a finite number >= 0")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"constraint {self.metric}: min {self.min:g} > max {self.max:g}")

    def ok(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        fmt = formatter(self.metric)
        lo = "" if self.min is None else f"{fmt(self.min)} <= "
        hi = "" if self.max is None else f" <= {fmt(self.max)}"
        return f"{lo}{self.metric}{hi}"

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        """``"flops<=330M"``, ``"params<3.5e6"``, ``"flops>=290e6"``, ``"flops=290M..360M"``,
        ``"latency<=12ms"`` (ms, us or s; a bare number is ms), ``"bitops<=13G"``, ``"size<=1.5MB"``
        (B, KB, MB, GB or KiB, MiB, GiB; a bare number is bytes)."""
        t = text.replace(" ", "")
        m = re.fullmatch(r"(flops|params|latency|bitops|size)(<=|>=|<|>|=|in)(.+)", t)
        if not m:
            raise ValueError(f"cannot read constraint {text!r}; write e.g. flops<=330M, params<=3.5M, "
                             f"latency<=12ms, bitops<=13G, size<=1.5MB or flops=290M..360M")
        metric, op, rhs = m.groups()
        if op in ("=", "in"):
            lo, sep, hi = rhs.strip("[]").replace(",", "..").partition("..")
            if not sep:
                raise ValueError(f"constraint {text!r}: a range is written lo..hi, e.g. flops=290M..360M")
            return cls(metric, _num(lo, text, metric), _num(hi, text, metric))
        value = _num(rhs, text, metric)
        return cls(metric, max=value) if op.startswith("<") else cls(metric, min=value)


def formatter(metric: str):
    """How a value of ``metric`` is written in constraints and messages: 1.5M, 0.08ms, 1.5MB."""
    return {"latency": fmt_ms, "size": fmt_bytes}.get(metric, fmt_count)


def _num(s: str, text: str, metric: str = "flops") -> float:
    if metric == "latency":
        m = re.fullmatch(r"([0-9.eE+-]+)(ms|us|µs|s|)", s)
        units, example = _TIME_UNITS, "12ms, 800us or 0.5s"
    elif metric == "size":
        m = re.fullmatch(r"([0-9.eE+-]+)(B|KB|kB|MB|GB|KiB|MiB|GiB|)", s)
        units, example = _BYTE_UNITS, "1.5MB, 800KB or 2e6"
    else:
        m = re.fullmatch(r"([0-9.eE+-]+)([kKmMgG]?)", s)
        units, example = _UNITS, "330M or 3.3e8"
    try:
        return float(m[1]) * units[m[2]]
    except (TypeError, ValueError):
        raise ValueError(f"constraint {text!r}: {s!r} is not a {metric if metric in ('latency', 'size') else 'number'} "
                         f"(e.g. {example})") from None


class Constraints:
    """All of several constraints, checked against a cost model."""

    def __init__(self, cost: CostModel, constraints: list[Constraint] | list[str] = ()):
        self.cost = cost
        self.items = [c if isinstance(c, Constraint) else Constraint.parse(c) for c in constraints]
        timed = [c for c in self.items if c.metric == "latency"]
        if timed and cost.latency_table is None:
            raise ValueError(f"the constraint {timed[0]} needs a latency table for this model: build one with "
                             f"'supernet latency SPACE [options] --out latency.json' (or --config CFG) and set "
                             f"latency.table=latency.json")
        self.latency = bool(timed)
        bits = [c for c in self.items if c.metric in ("bitops", "size")]
        if bits and not cost.quantized:
            raise ValueError(f"the constraint {bits[0]} needs quantized layers, and this model has none: make it a "
                             f"mixed-precision space (space.quant in a config, or supernet.quant.mixed_precision)")
        self.bits = sorted({c.metric for c in bits})  # computed only when constrained

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        return " and ".join(map(str, self.items)) or "none"

    def ok(self, arch: Arch) -> bool:
        if not self.items:
            return True
        flops, params = self.cost.cost(arch)
        values = {"flops": flops, "params": params}
        if self.latency:
            values["latency"] = self.cost.latency(arch)
        if self.bits:
            values.update((m, self.cost.value(m, arch)) for m in self.bits)
        return all(c.ok(values[c.metric]) for c in self.items)

    def check_feasible(self) -> None:
        """Raise at once if no architecture can meet a constraint, naming the feasible range."""
        r = self.cost.range()
        if self.latency and not r["latency_min"] > 0:
            table = self.cost.latency_table
            raise ValueError(f"{getattr(table, 'source', None) or 'the latency table'} predicts {fmt_ms(r['latency_min'])} for the "
                             f"fastest architecture (its overhead_ms {table.overhead_ms:g} outweighs the entries), but "
                             f"a latency is > 0: build the table again with 'supernet latency ... --check K'")
        for c in self.items:
            lo, hi = r[f"{c.metric}_min"], r[f"{c.metric}_max"]
            if (c.max is not None and c.max < lo) or (c.min is not None and c.min > hi):
                fmt = formatter(c.metric)
                exact = f"{fmt_ms(lo)} .. {fmt_ms(hi)} predicted" if c.metric == "latency" else \
                    f"{fmt(lo)} .. {fmt(hi)} ({lo:,} .. {hi:,}{' bytes' if c.metric == 'size' else ''})"
                raise ValueError(f"constraint {c} cannot be met: this space's {c.metric} range is {exact}")
