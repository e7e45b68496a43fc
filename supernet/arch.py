"""Architectures as data, and the ``SearchSpace`` view of any model that contains choices.

An architecture is a plain dict from label to an option index (``LayerChoice``, ``ChannelChoice``)
or to a sorted list of indices (``InputChoice``). It round-trips through JSON unchanged. One
validator checks it, and its errors name the bad label and list what is valid.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from .nn.choices import ChannelChoice, Choice, InputChoice, LayerChoice, reduce_inputs
from .nn.sliced import SlicedBatchNorm2d, SlicedConv2d, fixed_batchnorm

Arch = dict  # label -> int | list[int]
Rng = Union[random.Random, torch.Generator]


class ArchError(ValueError):
    """An architecture that does not fit a search space."""


def _randbelow(rng: Rng, n: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return int(torch.randint(n, (1,), generator=rng))


class SearchSpace:
    """The decisions of a model: labels, option counts, sampling, validation and activation.

    Choices that share a label are one decision. Building the view walks the model once;
    ``activate`` is then O(number of choice modules), with no module rebuilding.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._modules: dict[str, list[Choice]] = OrderedDict()
        for name, m in model.named_modules():
            if isinstance(m, Choice):
                self._modules.setdefault(m.label, []).append(m)
        for label, ms in self._modules.items():
            first = ms[0]
            for m in ms[1:]:
                same = type(m) is type(first) and m.n_options == first.n_options and (
                    not isinstance(m, InputChoice) or m.n_chosen == first.n_chosen)
                if not same:
                    raise ValueError(f"label '{label}' is used by choices of different kinds or sizes "
                                     f"({first!r} vs {m!r}); a shared label must mean one decision")
        self.labels: list[str] = list(self._modules)
        self._choices = [ms[0] for ms in self._modules.values()]  # one representative per label
        self._all = [m for ms in self._modules.values() for m in ms]

    # --- what the space is ----------------------------------------------------------------------
    def choice(self, label: str) -> Choice:
        return self._modules[label][0]

    def n_options(self, label: str) -> int:
        """Options per gene: candidates of a LayerChoice / widths of a ChannelChoice / inputs."""
        return self.choice(label).n_options

    def count(self, label: str) -> int:
        """Number of distinct values the label can take."""
        c = self.choice(label)
        return math.comb(c.n_options, c.n_chosen) if isinstance(c, InputChoice) else c.n_options

    @property
    def size(self) -> int:
        """Number of architectures (an exact integer; 4^20 for the SPOS block space)."""
        return math.prod(self.count(label) for label in self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"SearchSpace({len(self.labels)} labels, size={self.size:.3e})"

    def describe(self) -> str:
        """Labels and their valid values, with numbered runs folded: ``layer_0..layer_19: 0..3``."""
        groups: dict[tuple, list] = OrderedDict()
        for label in self.labels:
            c = self.choice(label)
            valid = (f"{c.n_chosen} distinct of 0..{c.n_options - 1}" if isinstance(c, InputChoice)
                     else f"0..{c.n_options - 1}")
            m = re.fullmatch(r"(.*?)(\d+)", label)
            groups.setdefault((m[1] if m else label, valid, m is None), []).append(label)
        parts = []
        for (prefix, valid, plain), labels in groups.items():
            nums = None if plain else [int(re.fullmatch(r".*?(\d+)", l)[1]) for l in labels]
            if nums and len(labels) > 2 and nums == list(range(nums[0], nums[0] + len(nums))):
                parts.append(f"{labels[0]}..{labels[-1]}: {valid}")
            else:
                parts.extend(f"{l}: {valid}" for l in labels)
        return "; ".join(parts) if parts else "(no choices)"

    # --- sampling -------------------------------------------------------------------------------
    def sample_label(self, label: str, rng: Rng):
        c = self.choice(label)
        if isinstance(c, InputChoice):
            if isinstance(rng, random.Random):
                return sorted(rng.sample(range(c.n_options), c.n_chosen))
            return sorted(torch.randperm(c.n_options, generator=rng)[: c.n_chosen].tolist())
        return _randbelow(rng, c.n_options)

    def sample(self, rng: Rng) -> Arch:
        """A uniformly random architecture, drawn from ``rng`` only."""
        return {label: self.sample_label(label, rng) for label in self.labels}

    def __iter__(self):
        """Every architecture, in lexicographic order (for small spaces and tests)."""
        values = []
        for label in self.labels:
            c = self.choice(label)
            if isinstance(c, InputChoice):
                values.append([list(t) for t in itertools.combinations(range(c.n_options), c.n_chosen)])
            else:
                values.append(list(range(c.n_options)))
        for combo in itertools.product(*values):
            yield dict(zip(self.labels, combo))

    # --- validation -----------------------------------------------------------------------------
    def validate(self, arch: Any) -> Arch:
        """Check ``arch`` against the space and return a normalised copy; raise ``ArchError``."""
        if not isinstance(arch, dict):
            raise ArchError(f"an architecture must be a dict from label to index, got {type(arch).__name__}; "
                            f"valid labels: {self.describe()}")
        unknown = [k for k in arch if k not in self._modules]
        if unknown:
            raise ArchError(f"unknown label(s) {', '.join(map(repr, unknown[:5]))}"
                            f"{' ...' if len(unknown) > 5 else ''}; valid labels: {self.describe()}")
        missing = [k for k in self.labels if k not in arch]
        if missing:
            raise ArchError(f"missing label(s) {', '.join(map(repr, missing[:5]))}"
                            f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''}; "
                            f"valid labels: {self.describe()}")
        return {label: self._check_value(label, arch[label]) for label in self.labels}

    def _check_value(self, label: str, value: Any):
        c = self.choice(label)
        n = c.n_options
        if isinstance(c, InputChoice):
            if isinstance(value, int) and not isinstance(value, bool) and c.n_chosen == 1:
                value = [value]
            if not (isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                raise ArchError(f"label '{label}' takes a list of {c.n_chosen} input indices, got {value!r} "
                                f"({type(value).__name__})")
            if len(value) != c.n_chosen or len(set(value)) != len(value) or not all(0 <= v < n for v in value):
                raise ArchError(f"label '{label}' takes {c.n_chosen} distinct indices in 0..{n - 1}, got {list(value)}")
            return sorted(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArchError(f"label '{label}' takes an integer index in 0..{n - 1}, got {value!r} "
                            f"({type(value).__name__})")
        if not 0 <= value < n:
            raise ArchError(f"label '{label}' index {value} is out of range; valid: 0..{n - 1} ({c.values})")
        return value

    # --- activation -----------------------------------------------------------------------------
    def activate(self, arch: Arch, check: bool = True) -> None:
        """Make the model compute ``arch``. ``check=False`` skips validation (hot loops)."""
        if check:
            arch = self.validate(arch)
        for label, ms in self._modules.items():
            value = arch[label]
            for m in ms:
                m.active = value
                m.weights = None

    def deactivate(self) -> None:
        for m in self._all:
            m.active = None
            m.weights = None

    def state(self) -> list:
        return [(m.active, m.weights) for m in self._all]

    def restore(self, state: list) -> None:
        for m, (active, weights) in zip(self._all, state):
            m.active, m.weights = active, weights

    def current(self) -> Arch:
        """The active architecture (raises if some choice has none)."""
        arch = {}
        for label, c in zip(self.labels, self._choices):
            if c.active is None:
                raise c._no_decision()
            arch[label] = c.active
        return arch

    # --- encodings ------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> tuple:
        """A hashable key in label order (for visited caches)."""
        return tuple(tuple(arch[k]) if isinstance(arch[k], list) else arch[k] for k in self.labels)

    def decode(self, key) -> Arch:
        return self.validate({k: list(v) if isinstance(v, tuple) else v for k, v in zip(self.labels, key)})


# --- import: our JSON, and both NNI formats --------------------------------------------------------
_LEGACY_KEY = re.compile(r"^(LayerChoice|InputChoice)(\d+)$")


def parse_arch(obj: Any, space: SearchSpace, fmt: str = "auto") -> Arch:
    """Turn a JSON object into a validated architecture of ``space``.

    Args:
        obj: a dict; or a JSON string; or a path to a JSON file.
        fmt: ``"native"`` (label -> index), ``"nni"`` (NNI 1.x/2.x ``{"LayerChoice1": [false, true, ...]}``,
            1-based keys in module order, one-hot lists), ``"nni3"`` (NNI 3 label -> value) or
            ``"auto"``: NNI 1.x if the keys look like it, else native, else NNI 3.
    """
    obj = _load_obj(obj)
    if isinstance(obj, list):  # a bare list of indices, in label order
        if len(obj) != len(space.labels):
            raise ArchError(f"a list architecture needs {len(space.labels)} values (one per label), got {len(obj)}; "
                            f"labels: {space.describe()}")
        obj = dict(zip(space.labels, obj))
    if not isinstance(obj, dict):
        raise ArchError(f"an architecture must be a JSON object, got {type(obj).__name__}")
    if fmt == "auto":
        if obj and all(_LEGACY_KEY.match(k) for k in obj):
            fmt = "nni"
        else:
            try:
                return space.validate(obj)
            except ArchError as native_error:
                try:
                    return from_nni3(obj, space)
                except ArchError:
                    raise native_error from None
    if fmt == "native":
        return space.validate(obj)
    if fmt == "nni":
        return from_nni_legacy(obj, space)
    if fmt == "nni3":
        return from_nni3(obj, space)
    raise ValueError(f"unknown architecture format {fmt!r}; use auto, native, nni or nni3")


def _load_obj(obj: Any) -> Any:
    if isinstance(obj, (str, os.PathLike)):
        text = str(obj).strip()
        if text[:1] in "{[":
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ArchError(f"architecture string is not valid JSON: {e}") from None
        path = Path(obj)
        if not path.exists():
            raise ArchError(f"architecture {str(obj)!r} is neither a JSON string nor an existing file")
        try:
            obj = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ArchError(f"{path} is not valid JSON: {e}") from None
        # Our own result files wrap the architecture with metadata.
        if isinstance(obj, dict) and "arch" in obj and isinstance(obj["arch"], (dict, list)):
            obj = obj["arch"]
    return obj


def from_nni_legacy(obj: dict, space: SearchSpace) -> Arch:
    """NNI 1.x/2.x: ``LayerChoiceK`` / ``InputChoiceK`` keys with one-hot bool lists.

    NNI numbers the keys with one counter shared by both kinds, in creation (module) order, so the
    keys sorted by number map onto this space's LayerChoice/InputChoice labels in module order.
    """
    labels = [l for l in space.labels if isinstance(space.choice(l), (LayerChoice, InputChoice))]
    keys = sorted(obj, key=lambda k: int(_LEGACY_KEY.match(k)[2]))
    if len(keys) != len(labels):
        raise ArchError(f"this NNI architecture has {len(keys)} choices ({_span(keys)}) but the space has "
                        f"{len(labels)} ({space.describe()}): it was made for a different space")
    arch = {}
    for key, label in zip(keys, labels):
        value, c = obj[key], space.choice(label)
        kind = type(c).__name__
        if not key.startswith(kind):
            raise ArchError(f"NNI key {key!r} is not a {kind}, but the space's choice #{keys.index(key) + 1} "
                            f"('{label}') is: the file was made for a different space")
        if isinstance(value, list):
            if len(value) != c.n_options or not all(isinstance(v, bool) for v in value):
                raise ArchError(f"NNI key {key!r} (label '{label}') must be a list of {c.n_options} booleans, "
                                f"got {value!r}: the file was made for a different space")
            idx = [i for i, v in enumerate(value) if v]
            value = idx[0] if kind == "LayerChoice" and len(idx) == 1 else idx
        arch[label] = value
    other = [l for l in space.labels if l not in arch]
    if other:
        raise ArchError(f"NNI 1.x files describe only LayerChoice/InputChoice decisions; the space also has "
                        f"{_span(other)}. Give the full architecture as label -> index JSON instead")
    return space.validate(arch)


def from_nni3(obj: dict, space: SearchSpace) -> Arch:
    """NNI 3: label -> value, where a value is a candidate index or name, or a channel count."""
    unknown = [k for k in obj if k not in space.labels]
    if unknown:
        raise ArchError(f"unknown label(s) {unknown[:5]} for this space; valid labels: {space.describe()}")
    arch = {}
    for label, value in obj.items():
        c = space.choice(label)
        if isinstance(c, ChannelChoice) and value in c.values and not isinstance(value, bool):
            arch[label] = c.values.index(value)
        elif isinstance(c, LayerChoice) and isinstance(value, str) and value in c.values:
            arch[label] = c.values.index(value)
        elif isinstance(c, ChannelChoice):
            raise ArchError(f"label '{label}' takes a channel count in {c.values}, got {value!r}")
        else:
            arch[label] = value
    return space.validate(arch)


def _span(keys: list) -> str:
    return "none" if not keys else (keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}")


# --- fix: the searched result as a plain module ---------------------------------------------------
class FixedInput(nn.Module):
    """What an ``InputChoice`` becomes in a fixed subnet: a constant selection."""

    def __init__(self, indices: list[int], reduction: str):
        super().__init__()
        self.indices = list(indices)
        self.reduction = reduction

    def forward(self, inputs):
        return reduce_inputs([inputs[i] for i in self.indices], self.reduction)


def fix(model: nn.Module, arch: Arch, weights: str = "copy") -> nn.Module:
    """A plain ``nn.Module`` holding only the ops ``arch`` selects; no choice modules remain.

    Args:
        weights: ``"copy"`` keeps the supernet's weights (equivalent output in eval mode);
            ``"init"`` re-initialises everything for retraining from scratch (the model's own
            ``init_weights()`` if it has one, else each layer's ``reset_parameters()``).

    BatchNorm in the result is always affine (identity-initialised where the supernet had none).
    The supernet's own decisions are left as they were.
    """
    if weights not in ("copy", "init"):
        raise ValueError(f"weights must be 'copy' or 'init', got {weights!r}")
    space = SearchSpace(model)
    saved = space.state()
    space.activate(arch)
    try:
        fixed = fix_module(model)
    finally:
        space.restore(saved)
    if weights == "init":
        if hasattr(fixed, "init_weights"):
            fixed.init_weights()
        else:
            for m in fixed.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
    return fixed


def fix_module(m: nn.Module) -> nn.Module | None:
    """``m`` as plain modules under the choices' current decisions (None for a ChannelChoice)."""
    if isinstance(m, LayerChoice):
        return fix_module(m[m.active])
    if isinstance(m, InputChoice):
        return FixedInput(m.active, m.reduction)
    if isinstance(m, ChannelChoice):
        return None  # decided; the sliced layers below become plain layers of that width
    if isinstance(m, (SlicedConv2d, SlicedBatchNorm2d)):
        return m.fixed()
    if isinstance(m, nn.BatchNorm2d) and not m.affine:
        return fixed_batchnorm(m, m.num_features)
    new = copy.copy(m)  # same class and attributes; fresh containers below, nothing shared
    new._parameters = OrderedDict(
        (k, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for k, p in m._parameters.items())
    new._buffers = OrderedDict((k, None if b is None else b.clone()) for k, b in m._buffers.items())
    children = ((k, fix_module(c) if c is not None else None) for k, c in m._modules.items())
    new._modules = OrderedDict((k, c) for k, c in children if c is not None)
    for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks"):
        if hasattr(new, hooks):
            setattr(new, hooks, OrderedDict())
    return new
