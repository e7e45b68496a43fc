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
differs.
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from ..arch import Arch
from ..nn.choices import gate_open
from ..runtime.io import read_json, write_json
from .flops import fingerprint

FORMAT = "supernet-latency-table"
VERSION = 1
BACKENDS = ("torch", "onnxruntime")


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

    def predict(self, arch: Arch, overhead: bool = True) -> float:
        """Predicted latency (ms) of a valid architecture: a handful of dict lookups."""
        total = self.overhead_ms if overhead else 0.0
        for labels, table, gate in self.groups:
            if gate is not None and not gate_open(gate, arch):
                continue  # an edge whose input is not chosen is not built
            total += table[tuple(arch[l] for l in labels)]
        return total

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
        return {"format": FORMAT, "version": VERSION, "target": self.target, "settings": self.settings,
                "overhead_ms": self.overhead_ms, "check": self.check,
                "groups": [{"labels": list(labels), "gate": None if gate is None else list(gate),
                            "entries": [[list(k), ms, self.spread[i][k]] for k, ms in table.items()]}
                           for i, (labels, table, gate) in enumerate(self.groups)]}

    @classmethod
    def from_json(cls, data, where: str = "the latency table") -> "LatencyTable":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyTableError(f"{where} is not a latency table (no \"format\": \"{FORMAT}\"); build one with "
                                    f"'supernet latency'")
        if data.get("version") != VERSION:
            raise LatencyTableError(f"{where} has table version {data.get('version')!r}; this supernet reads version "
                                    f"{VERSION}: build it again with 'supernet latency'")
        try:
            groups, spread = [], []
            for g in data["groups"]:
                table = {tuple(int(i) for i in k): float(ms) for k, ms, _ in g["entries"]}
                groups.append((list(g["labels"]), table, None if g["gate"] is None else (g["gate"][0], int(g["gate"][1]))))
                spread.append({tuple(int(i) for i in k): float(s) for k, _, s in g["entries"]})
            return cls(dict(data["target"]), groups, spread, float(data["overhead_ms"]), data.get("check"),
                       dict(data.get("settings") or {}))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise LatencyTableError(f"{where} is damaged ({type(e).__name__}: {e}); build it again with "
                                    f"'supernet latency'") from None

    def save(self, path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise LatencyTableError(f"latency table {path} does not exist; build it with 'supernet latency ... --out {path}'")
        try:
            data = read_json(path)
        except ValueError as e:
            raise LatencyTableError(f"latency table {path} is not valid JSON ({e})") from None
        return cls.from_json(data, where=f"latency table {path}")

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
