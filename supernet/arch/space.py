"""The ``SearchSpace`` view of any model that contains choices: labels, sizes, sampling, validation.

An architecture is a plain dict from label to an option index (``LayerChoice``, ``ChannelChoice``)
or to a sorted list of indices (``InputChoice``; any length, ``[]`` included, when its ``n_chosen``
is None). It round-trips through JSON unchanged. One validator checks it, and its errors name the
bad label and list what is valid.
"""
from __future__ import annotations

import itertools
import math
import random
import re
from collections import OrderedDict
from typing import Any, Union

import torch
from torch import nn

from ..nn.choices import ChannelChoice, Choice, InputChoice

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
        self._by_label: dict[str, list[Choice]] = OrderedDict()
        for name, m in model.named_modules():
            if isinstance(m, Choice):
                self._by_label.setdefault(m.label, []).append(m)
        for label, ms in self._by_label.items():
            first = ms[0]
            for m in ms[1:]:
                same = type(m) is type(first) and m.n_options == first.n_options and (
                    not isinstance(m, InputChoice) or m.n_chosen == first.n_chosen)
                if not same:
                    raise ValueError(f"label '{label}' is used by choices of different kinds or sizes "
                                     f"({first!r} vs {m!r}); a shared label must mean one decision")
        self.labels: list[str] = list(self._by_label)
        self._choices = [ms[0] for ms in self._by_label.values()]  # one representative per label
        self._all = [m for ms in self._by_label.values() for m in ms]

    # --- what the space is ----------------------------------------------------------------------
    def choice(self, label: str) -> Choice:
        """The (first) choice module of ``label``."""
        return self._by_label[label][0]

    def choices(self, label: str) -> list[Choice]:
        """Every choice module of ``label`` (choices sharing a label are one decision)."""
        return list(self._by_label[label])

    def n_options(self, label: str) -> int:
        """Options per gene: candidates of a LayerChoice / widths of a ChannelChoice / inputs."""
        return self.choice(label).n_options

    def count(self, label: str) -> int:
        """Number of distinct values the label can take."""
        c = self.choice(label)
        if isinstance(c, InputChoice):
            return 2 ** c.n_options if c.n_chosen is None else math.comb(c.n_options, c.n_chosen)
        return c.n_options

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
            valid = f"0..{c.n_options - 1}"
            if isinstance(c, InputChoice):
                valid = f"any subset of {valid}" if c.n_chosen is None else f"{c.n_chosen} distinct of {valid}"
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
        if isinstance(c, InputChoice) and c.n_chosen is None:  # each input kept with p=1/2: uniform over subsets
            if isinstance(rng, random.Random):
                return [i for i in range(c.n_options) if rng.random() < 0.5]
            return torch.randint(2, (c.n_options,), generator=rng).nonzero().flatten().tolist()
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
                sizes = range(c.n_options + 1) if c.n_chosen is None else [c.n_chosen]
                values.append([list(t) for k in sizes for t in itertools.combinations(range(c.n_options), k)])
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
        unknown = [k for k in arch if k not in self._by_label]
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
            how_many = "any number of" if c.n_chosen is None else c.n_chosen
            if not (isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
                raise ArchError(f"label '{label}' takes a list of {how_many} input indices, got {value!r} "
                                f"({type(value).__name__})")
            wrong_size = c.n_chosen is not None and len(value) != c.n_chosen
            if wrong_size or len(set(value)) != len(value) or not all(0 <= v < n for v in value):
                raise ArchError(f"label '{label}' takes {how_many} distinct indices in 0..{n - 1}, got {list(value)}")
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
        for label, ms in self._by_label.items():
            value = arch[label]
            for m in ms:
                m.active = value
                m.weights = None

    def set_weights(self, weights: dict[str, torch.Tensor], active: dict[str, Any] | None = None) -> None:
        """Make the choices of each label in ``weights`` mix their options (DARTS, FBNet, Proxyless).

        Every module of a label gets the same tensor object, so the parameter it was computed from
        (``alpha.softmax(-1)``) gets the gradient from all of them. Labels not named keep their
        decisions, so ``activate`` some labels first and weight the others. ``deactivate`` clears both.

        Args:
            weights: label -> 1-D tensor with one weight per option (``n_options(label)``).
            active: label -> an index or a list of indices restricting that label's weighted sum to
                those options (Proxyless runs only the sampled ones); other labels run all options.

        Raises:
            ArchError: an unknown label, a tensor of the wrong shape or a bad ``active`` value.
        """
        active = active or {}
        unknown = [k for k in [*weights, *active] if k not in self._by_label]
        if unknown:
            raise ArchError(f"unknown label(s) {', '.join(map(repr, unknown[:5]))}; valid labels: {self.describe()}")
        for label in active:
            if label not in weights:
                raise ArchError(f"label '{label}' has an active restriction but no weights; use activate() to "
                                f"choose without weights")
        checked = []  # all labels are checked before any module changes
        for label, w in weights.items():
            n = self.n_options(label)
            if not isinstance(w, torch.Tensor) or w.shape != (n,):
                shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
                raise ArchError(f"label '{label}' takes a 1-D weight tensor of length {n} (one per option), got {shape}")
            checked.append((label, w, self._check_restriction(label, active[label]) if label in active else None))
        for label, w, restrict in checked:
            for m in self._by_label[label]:
                m.weights, m.active = w, restrict

    def _check_restriction(self, label: str, value: Any) -> list[int]:
        n = self.n_options(label)
        if isinstance(self.choice(label), ChannelChoice):
            raise ArchError(f"label '{label}' is a ChannelChoice, whose weights always mix every width; "
                            f"give it no active restriction")
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        ok = (isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
              and len(set(value)) == len(value) and all(0 <= v < n for v in value))
        if not ok or (not value and not isinstance(self.choice(label), InputChoice)):
            raise ArchError(f"label '{label}' restricts its weights to an index or a list of distinct indices "
                            f"in 0..{n - 1}, got {value!r}")
        return sorted(value)

    def sum_inputs(self, labels: list[str]) -> None:
        """Make each ``InputChoice`` of ``labels`` reduce all its inputs, unweighted (DARTS' node:
        the plain sum of its mixed edges, with no multiplication by a weight of 1)."""
        for label in labels:
            if not isinstance(self.choice(label), InputChoice):
                raise ArchError(f"label '{label}' is not an InputChoice")
            for m in self._by_label[label]:
                m.active, m.weights = list(range(m.n_options)), None

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
                raise c.no_decision()
            arch[label] = c.active
        return arch

    # --- encodings ------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> tuple:
        """A hashable key in label order (for visited caches)."""
        return tuple(tuple(arch[k]) if isinstance(arch[k], list) else arch[k] for k in self.labels)

    def decode(self, key) -> Arch:
        return self.validate({k: list(v) if isinstance(v, tuple) else v for k, v in zip(self.labels, key)})
