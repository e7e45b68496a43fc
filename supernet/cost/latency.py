"""Latency lookup tables: what a table holds, the target it was measured for, and its file.

A table has the FLOPs tables' units (``supernet.cost.flops.tabulate``): each top-level
``LayerChoice`` at its real input shape, every option of it (times the width choices inside it),
plus one entry for the rest of the network. A prediction is

    latency(arch) = overhead + rest + sum over units of table[unit][arch's options]

where ``overhead`` is the constant that additivity misses (per-call costs, caches), fitted by
``supernet.cost.timing.check_table``. Building and checking a table (the timing itself) is in
``supernet.cost.timing``.

A table is JSON (``FORMAT``, ``VERSION``) with its target: the space, its options and a
fingerprint of the model, the backend, device and device model, threads, batch and the versions
of what ran it. ``LatencyTable.require`` refuses a table measured for another target, naming what
differs. Every number a table file holds is checked when it is read: a latency entry must be a
finite number > 0 and the overhead a finite number, each refusal naming the file and the entry.

A mixed-precision space with 32 among its bit candidates adds, to each entry, a term per layer
whose precision (int8 or float) the architecture switches (``supernet.cost.precision``).
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from ..arch import Arch
from ..nn.choices import gate_open
from ..runtime.io import MB, read_json_file, write_json
from . import precision as prec
from .flops import fingerprint

FORMAT = "supernet-latency-table"
VERSION = 1
BACKENDS = ("torch", "onnxruntime")
# A table has one entry per option and unit (hundreds, a few KB of JSON); a file of 256 MB is no table.
TABLE_MAX_BYTES = 256 * MB
REBUILD = "build it again with 'supernet latency'"
# How entries are timed when a table does not say (``supernet latency``'s defaults).
TIMING_DEFAULTS = {"runs": 50, "warmup": 5, "max_spread": 0.2, "retries": 1}


@dataclass
class LatencyConfig:
    """The latency target: how a table was (or is to be) measured, and the table itself."""

    table: Optional[str] = None      # a table from 'supernet latency' (latency constraints and losses need one)
    backend: Literal["torch", "onnxruntime"] = "torch"  # what the table times, and how export measures (ORT)
    device: str = "cpu"              # cpu or cuda (torch backend)
    threads: int = 1                 # intra-op threads while timing (1: steadiest on a shared machine)
    batch: int = 1                   # the batch that is timed (1: a single-image latency)
    device_name: str = "auto"        # auto: this machine, with its torch/ORT versions; a CPU/GPU name: a table
                                     # measured on that device is trusted without comparing versions

    def __post_init__(self):
        if self.threads < 1 or self.batch < 1:
            raise ValueError(f"latency.threads and latency.batch must be >= 1, got {self.threads} and {self.batch}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"latency.device {self.device!r}: use cpu or cuda (cuda:N)")
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise ValueError("latency.backend=onnxruntime times on the CPU; set latency.device=cpu")


class LatencyTableError(ValueError):
    """A table that cannot be read, or that was measured for another target."""


# --- the target ---------------------------------------------------------------------------------------
def device_name(device: str) -> str:
    """The model of the device that runs the timings: the CPU's (``/proc/cpuinfo``) or the GPU's."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def versions(backend: str) -> dict:
    if backend == "onnxruntime":
        import onnxruntime
        return {"onnxruntime": onnxruntime.__version__}
    return {"torch": torch.__version__}


def target_of(model: nn.Module, input_shape, backend: str = "torch", device: str = "cpu", threads: int = 1,
              batch: int = 1, space: Optional[str] = None, options: Optional[dict] = None,
              name: str = "auto") -> dict:
    """The target key a table for ``model`` measured this way (on this machine) has.

    ``name``: the device model; ``auto`` is this machine's, and then the versions must match too.
    """
    check_settings(backend, device, threads, batch)
    return {"space": space, "options": options, "input_shape": list(input_shape),
            "fingerprint": fingerprint(model, input_shape), "backend": backend, "device": device,
            "device_name": device_name(device) if name == "auto" else name, "threads": threads, "batch": batch,
            "versions": versions(backend) if name == "auto" else None}


def check_settings(backend: str, device: str, threads: int, batch: int) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"latency backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"latency device {device!r}: use cpu or cuda (cuda:N)")
    if backend == "onnxruntime" and device != "cpu":
        raise ValueError("the onnxruntime backend times on the CPU (CPUExecutionProvider); set device=cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"latency device {device!r}: no CUDA device is available here; use device=cpu")
    if threads < 1 or batch < 1:
        raise ValueError(f"latency threads and batch must be >= 1, got threads={threads}, batch={batch}")


def timing_problem(runs, warmup, max_spread, retries) -> Optional[str]:
    """What is wrong with these timing settings (each named with its ``supernet latency`` option),
    or None."""
    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not integer(runs) or runs < 2:
        return f"runs (--runs) must be an integer >= 2 (a median and its spread), got {runs!r}"
    if not integer(warmup) or warmup < 0:
        return f"warmup (--warmup) must be an integer >= 0, got {warmup!r}"
    if not integer(retries) or retries < 0:
        return f"retries (--retries) must be an integer >= 0, got {retries!r}"
    if not _number(max_spread) or not 0 < max_spread < math.inf:
        return (f"max_spread (--max-spread) must be a finite number > 0 (the interquartile range / median above "
                f"which an entry is timed again, e.g. 0.2), got {max_spread!r}")
    return None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- the table ----------------------------------------------------------------------------------------
@dataclass
class LatencyTable:
    """Per-option latencies in milliseconds, in the cost model's groups.

    Attributes:
        target: what was measured, how and where (``target_of``).
        groups: ``[(labels, {key: ms}, gate)]``, the same labels, keys and gates as
            ``CostModel(model).groups``; the last is the rest of the network.
        spread: per group, ``{key: interquartile range / median}`` of the entry's runs.
        overhead_ms: the constant added to every prediction (fitted by ``check_table``; 0 before).
        check: the last ``check_table`` result, or None.
    """

    target: dict
    groups: list
    spread: list
    overhead_ms: float = 0.0
    check: Optional[dict] = None
    settings: dict = field(default_factory=dict)  # runs, warmup, max_spread, retries
    # per group, {key: (PrecisionTerm, ...)}: [] unless some bit decision has 32 among its options
    precision: list = field(default_factory=list)
    float_options: dict = field(default_factory=dict)  # bit label -> which options are 32
    source: Optional[str] = field(default=None, compare=False, repr=False)  # "latency table FILE", for messages

    def predict(self, arch: Arch, overhead: bool = True) -> float:
        """Predicted latency (ms) of a valid architecture: a handful of dict lookups."""
        total = self.overhead_ms if overhead else 0.0
        for i, (labels, table, gate) in enumerate(self.groups):
            if gate is not None and not gate_open(gate, arch):
                continue  # an edge whose input is not chosen is not built
            key = tuple(arch[l] for l in labels)
            total += table[key]
            if self.precision:
                for term in self.precision[i].get(key, ()):
                    total += term.change(prec.state_of(term, arch, self.float_options))
        return total

    def extremes(self, pick) -> list[tuple[list[str], dict, object, dict]]:
        """Candidate tables for a range: ``[(groups with each entry at its extreme precision, the
        options of the bit labels shared between groups)]``, one per assignment of those labels;
        each group is ``(labels, {key: ms}, gate, {key: bit choices})``."""
        if not self.precision:
            return [([(labels, table, gate, {}) for labels, table, gate in self.groups], {})]
        shared = prec.coupled(self.precision)
        return [(prec.resolved(self.groups, self.precision, self.float_options, fixed, pick), fixed)
                for fixed in prec.assignments(shared, self.float_options, prec.MAX_COUPLED, "shared between blocks")]

    def digest(self) -> str:
        """A short checksum of the numbers (entries and overhead), e.g. for a resumed search to compare."""
        data = {"groups": self.to_json()["groups"], "overhead_ms": self.overhead_ms}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def require_model(self, expected: dict, where: str = "the latency table") -> None:
        """Refuse the table unless it was measured for this model (``expected``: a ``target_of`` or
        a dict with its fingerprint, space, options and input shape), wherever it was measured."""
        t = self.target
        if t.get("fingerprint") != expected["fingerprint"]:
            for key in ("space", "options", "input_shape"):
                if t.get(key) != expected.get(key) and expected.get(key) is not None:
                    raise LatencyTableError(f"{where} was measured for {key} {t.get(key)!r}, this model has "
                                            f"{expected[key]!r}; build one for it with 'supernet latency'")
            raise LatencyTableError(f"{where} was measured for another model (fingerprint {t.get('fingerprint')}, "
                                    f"this one is {expected['fingerprint']}); build one for it with 'supernet latency'")

    # --- the file -----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = {"format": FORMAT, "version": VERSION, "target": self.target, "settings": self.settings,
               "overhead_ms": self.overhead_ms, "check": self.check,
               "groups": [{"labels": list(labels), "gate": None if gate is None else list(gate),
                           "entries": [[list(k), ms, self.spread[i][k], *self._terms_json(i, k)]
                                       for k, ms in table.items()]}
                          for i, (labels, table, gate) in enumerate(self.groups)]}
        if self.float_options:
            out["float_options"] = self.float_options
        return out

    def _terms_json(self, group: int, key: tuple) -> list:
        terms = self.precision[group].get(key) if self.precision else None
        return [[[t.weight, t.act, t.base, list(t.ms)] for t in terms]] if terms else []

    @classmethod
    def from_json(cls, data, where: str = "the latency table") -> "LatencyTable":
        """A table from its JSON data; anything missing, of the wrong type, or a number that is not a
        latency (NaN, infinite, <= 0) is a ``LatencyTableError`` naming ``where`` and the entry."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyTableError(f"{where} is not a latency table (no \"format\": \"{FORMAT}\"); build one with "
                                    f"'supernet latency'")
        if data.get("version") != VERSION:
            raise LatencyTableError(f"{where} has table version {data.get('version')!r}; this supernet reads version "
                                    f"{VERSION}: build it again with 'supernet latency'")
        read = _Reader(where)
        target = _read_target(read, read.entry(data, "target", dict))
        settings = read.entry(data, "settings", dict, optional=True) or {}
        problem = timing_problem(**{k: settings.get(k, default) for k, default in TIMING_DEFAULTS.items()})
        if problem:
            raise read.error(f"settings: {problem}")
        overhead = read.entry(data, "overhead_ms", float)
        if not math.isfinite(overhead):
            raise read.error(f"overhead_ms is {overhead!r}; it must be a finite number (the constant a check fits, "
                             f"0 before one)")
        check = read.entry(data, "check", dict, optional=True)
        floats = _read_float_options(read, read.entry(data, "float_options", dict, optional=True) or {})
        groups, spread, precision = [], [], []
        for i, g in enumerate(read.entry(data, "groups", list)):
            group, spreads, terms = _read_group(read, g, f"groups[{i}]", floats)
            groups.append(group)
            spread.append(spreads)
            precision.append(terms)
        if not any(precision):
            precision = []
        return cls(target, groups, spread, overhead, check, settings, precision, floats)

    def save(self, path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "LatencyTable":
        """Read a table file: its size, encoding, JSON and every entry are checked (``from_json``)."""
        path = Path(path)
        if not path.exists():
            raise LatencyTableError(f"latency table {path} does not exist; build it with 'supernet latency ... --out {path}'")
        where = f"latency table {path}"
        table = cls.from_json(read_json_file(path, where, LatencyTableError, TABLE_MAX_BYTES, REBUILD), where=where)
        table.source = where
        return table

    def require(self, expected: dict, where: str = "the latency table") -> None:
        """Refuse the table unless it was measured for ``expected`` (``target_of``), naming the first
        difference. A target whose device name was given (not ``auto``) skips the versions: a table
        measured elsewhere is trusted by name."""
        t = self.target
        self.require_model(expected, where)
        keys = ["backend", "device", "threads", "batch", "device_name"] + (["versions"] if expected["versions"] else [])
        for key in keys:
            if t.get(key) != expected[key]:
                raise LatencyTableError(f"{where} was measured with {key} {t.get(key)!r}, this run needs {expected[key]!r} "
                                        f"(latency.{key if key != 'versions' else 'device_name'}); build one for this "
                                        f"target with 'supernet latency'")


# --- reading a table file ---------------------------------------------------------------------------------
class _Reader:
    """Reads entries of a table's JSON, each refusal one line naming the file and the entry."""

    def __init__(self, where: str):
        self.where = where

    def error(self, what: str) -> LatencyTableError:
        return LatencyTableError(f"{self.where} is damaged: {what}; {REBUILD}")

    def value(self, v, name: str, kind: type, optional: bool = False):
        if v is None and optional:
            return None
        if kind is float:
            if not _number(v):
                raise self.error(f"{name} must be a number, got {v!r}")
            return float(v)
        if kind is int:
            if not (isinstance(v, int) and not isinstance(v, bool)):
                raise self.error(f"{name} must be an integer, got {v!r}")
            return v
        if not isinstance(v, kind):
            names = {dict: "an object", list: "a list", str: "a string"}
            raise self.error(f"{name} must be {names[kind]}{' or null' if optional else ''}, got {v!r}")
        return v

    def entry(self, obj: dict, key: str, kind: type, parent: str = "", optional: bool = False):
        name = f"{parent}.{key}" if parent else key
        if key not in obj and not optional:
            raise self.error(f"the entry '{name}' is missing")
        return self.value(obj.get(key), name, kind, optional)


def _read_target(read: _Reader, t: dict) -> dict:
    """The target's entries that the code computes with, checked (the others are compared only)."""
    for key in ("backend", "device", "device_name", "fingerprint"):
        read.entry(t, key, str, "target")
    read.entry(t, "space", str, "target", optional=True)
    read.entry(t, "options", dict, "target", optional=True)
    read.entry(t, "versions", dict, "target", optional=True)
    for key in ("threads", "batch"):
        if read.entry(t, key, int, "target") < 1:
            raise read.error(f"target.{key} is {t[key]}; it must be >= 1")
    shape = read.entry(t, "input_shape", list, "target")
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise read.error(f"target.input_shape must be a list of sizes > 0, got {shape!r}")
    return dict(t)


def _read_group(read: _Reader, g, name: str, floats: dict) -> tuple[tuple, dict, dict]:
    """``((labels, {key: ms}, gate), {key: spread}, {key: terms})`` of one group; every entry is checked."""
    g = read.value(g, name, dict)
    labels = read.entry(g, "labels", list, name)
    if not all(isinstance(label, str) for label in labels):
        raise read.error(f"{name}.labels must be a list of label names, got {labels!r}")
    name = f"{name} (labels {labels})"
    gate = read.entry(g, "gate", list, name, optional=True)
    if gate is not None and not (len(gate) == 2 and isinstance(gate[0], str) and _index(gate[1])):
        raise read.error(f"{name}.gate must be null or [label, index], got {gate!r}")
    table, spreads, precision = {}, {}, {}
    for j, e in enumerate(read.entry(g, "entries", list, name)):
        if not (isinstance(e, list) and len(e) in (3, 4)):
            raise read.error(f"{name}.entries[{j}] must be [key, ms, spread] or [key, ms, spread, terms], got {e!r}")
        k, ms, sp = e[:3]
        if not (isinstance(k, list) and len(k) == len(labels) and all(_index(x) for x in k)):
            raise read.error(f"{name}.entries[{j}] has key {k!r}; a key is a list of {len(labels)} option "
                             f"indices, one per label")
        key = tuple(k)
        if key in table:
            raise read.error(f"{name} has the entry {list(key)} twice")
        if not (_number(ms) and 0 < ms < math.inf):  # a zero or negative entry would steer toward it
            raise read.error(f"{name} entry {list(key)} is {ms!r} ms; a latency must be a finite number > 0")
        if not (_number(sp) and 0 <= sp < math.inf):
            raise read.error(f"{name} entry {list(key)} has spread {sp!r}; a spread (interquartile range / "
                             f"median) must be a finite number >= 0")
        table[key], spreads[key] = float(ms), float(sp)
        if len(e) == 4:
            precision[key] = _read_terms(read, e[3], f"{name} entry {list(key)}", floats)
    return (labels, table, None if gate is None else (gate[0], gate[1])), spreads, precision


def _read_float_options(read: _Reader, floats: dict) -> dict:
    for label, options in floats.items():
        if not (isinstance(options, list) and options and all(isinstance(x, bool) for x in options) and any(options)):
            raise read.error(f"float_options[{label!r}] must be a list of true/false per option, one true at least "
                             f"(which options are 32 bits), got {options!r}")
    return floats


def _read_terms(read: _Reader, terms, where: str, floats: dict) -> tuple:
    """One entry's precision terms: ``[[weight bits, act bits, base state, [ms per state]], ...]``."""
    def bits(x) -> bool:
        return isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool))

    if not isinstance(terms, list) or not terms:
        raise read.error(f"{where} has terms {terms!r}; terms are a non-empty list")
    out = []
    for j, t in enumerate(terms):
        if not (isinstance(t, list) and len(t) == 4 and bits(t[0]) and bits(t[1]) and _index(t[2])
                and isinstance(t[3], list) and len(t[3]) == prec.STATES):
            raise read.error(f"{where} term {j} must be [weight bits, act bits, base state, [4 latencies or "
                             f"null]], got {t!r}")
        ms = tuple(float(x) if _number(x) else x for x in t[3])
        out.append(prec.PrecisionTerm(t[0], t[1], t[2], ms))
    problem = prec.check_terms(out, floats, where)
    if problem:
        raise read.error(problem)
    return tuple(out)


def _index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
