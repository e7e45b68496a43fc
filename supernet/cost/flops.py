"""Exact FLOPs and parameter counts from per-choice lookup tables.

FLOPs follow the SPOS convention (the FLOPs of the paper and of the official README):
multiply-accumulates of convolutions (1-3d, transposed) and Linear at batch 1, stem and head
included; BN, ReLU, pooling and shuffles are not counted, and a layer with parameters of another
kind is refused rather than counted as zero. Parameters are those of the fixed subnet (affine BN
included), so ``params(arch) == sum(p.numel() for p in fix(model, arch).parameters())``, less the
step sizes of quantized layers, which ``size`` counts. BitOps and size of mixed-precision spaces
come from the same tables (``supernet.cost.bits``).

The table is built by measuring: each top-level ``LayerChoice`` (and each module that declares a
width choice outside one, a ResNet block) is recorded at its real input shape during one forward, and every option of it (times every option of the width choices inside
it) is fixed and run once at that shape. The rest of the network (stem, head, anything outside a
choice) is measured the same way. A query is then one table lookup per choice: microseconds.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..arch import Arch, SearchSpace, fix_module, fix
from ..arch.few_shot import one_shot
from ..nn.quantized import Quantized
from . import bits
from ..nn.choices import BitChoice, ChannelChoice, Choice, InputChoice, LayerChoice, NoneChosen, gate_of, gate_open, gate_pairs


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# Layers with parameters whose work is not a multiply-accumulate by the SPOS convention (BN, like ReLU
# and pooling, is not counted) or is a lookup.
_NO_MACS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU, nn.Embedding)


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of ``module`` (inputs at batch 1): every conv (1-3d,
    transposed, grouped) and ``Linear``.

    A layer with parameters of any other kind (an RNN, a bilinear layer, your own module with a
    weight) is refused, naming it: its MACs cannot be known here, and counting it as zero would
    make every FLOPs figure and constraint silently wrong.
    """
    return sum(macs_by_layer(module, *inputs).values())


def macs_by_layer(module: nn.Module, *inputs: torch.Tensor) -> dict[nn.Module, int]:
    """``count_macs`` per conv/linear layer (a layer run twice counts twice)."""
    check_countable(module)
    macs: dict[nn.Module, int] = {}

    def hook(m, args, out):
        if isinstance(m, _CONV):  # each output element: (C_in / groups) * prod(kernel) MACs
            n = out.numel() * math.prod(m.weight.shape[1:])
        elif isinstance(m, _TRANSPOSED):  # each input element scatters to (C_out / groups) * prod(kernel)
            n = args[0].numel() * math.prod(m.weight.shape[1:])
        else:
            n = out.numel() * m.in_features
        macs[m] = macs.get(m, 0) + n

    forward_with_hooks(module, [m for m in module.modules() if isinstance(m, _CONV + _TRANSPOSED + (nn.Linear,))],
                       hook, *inputs)
    return macs


def forward_with_hooks(module: nn.Module, hooked: list[nn.Module], hook: Callable, *inputs: torch.Tensor) -> None:
    """One forward of ``module`` without autograd, ``hook(m, args, out)`` called after each of
    ``hooked`` runs; the hooks are removed afterwards, whatever happens."""
    handles = [m.register_forward_hook(hook) for m in hooked]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()


def check_countable(model: nn.Module) -> None:
    """Refuse, naming it, a layer with parameters whose multiply-accumulates ``count_macs`` cannot know."""
    steps = {id(d) for m in model.modules() if isinstance(m, Quantized) for d in (m.weight_steps, m.act_steps)}
    for name, m in model.named_modules():
        if list(m.children()) or not any(True for _ in m.parameters(recurse=False)) or id(m) in steps:
            continue
        if not isinstance(m, _CONV + _TRANSPOSED + (nn.Linear,) + _NO_MACS):
            raise NotImplementedError(f"cannot count the multiply-accumulates of {name or 'the model'} "
                                      f"({type(m).__name__}): the cost model counts convolutions (1-3d, transposed) "
                                      f"and Linear layers; build the op from those, or leave the cost model out "
                                      f"(no FLOPs constraints)")


def fingerprint(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """What a table's numbers are numbers of: the supernet's modules (labels, options, widths) and input."""
    return hashlib.sha256(f"{tuple(input_shape)}\n{model!r}".encode()).hexdigest()[:16]


def count_params(module: nn.Module) -> int:
    """The module's parameters, less quantizers' step sizes (a quantized model's ``size`` counts those)."""
    steps = {id(p) for m in module.modules() if isinstance(m, Quantized) for p in m.step_parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in steps)


@dataclass(eq=False)
class Unit:
    """One top-level ``LayerChoice`` (or a gated module: an ENAS cell's per-state output conv; or a
    module that declares a width choice, a ResNet block) as
    the tables see it: the labels inside it (its own and the width choices it holds), its input
    shapes and output shape at batch 1, and its gate (``(label, i)`` or a ``NoneChosen``)."""

    module: nn.Module
    labels: list[str]
    shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    gate: "tuple[str, int] | NoneChosen | None"


def tabulate(units: list[Unit], measure: Callable[[Unit], dict], add: Callable) -> list[tuple[list[str], dict, tuple | None]]:
    """One table per (labels, gate): ``measure(unit) -> {key: value}`` for each unit, identical units
    at identical shapes measured once, and units that share labels and gate added up (DARTS cells).
    The FLOPs and latency tables come from this one function, so their groups line up."""
    merged: dict = {}
    measured: dict = {}
    for unit in units:
        same = (tuple(unit.labels), tuple(map(tuple, unit.shapes)), repr(unit.module))
        if same not in measured:
            measured[same] = measure(unit)
        table = measured[same]
        group = (tuple(unit.labels), unit.gate)
        if group in merged:
            old = merged[group]
            table = {k: add(old[k], v) for k, v in table.items()}
        merged[group] = table
    return [(list(labels), table, gate) for (labels, gate), table in merged.items()]


class CostModel:
    """FLOPs / params of any architecture of ``model``'s space (and latency, given a measured table).

    Args:
        model: a supernet (any module with choices whose input shapes do not depend on other choices);
            a few-shot supernet's costs are those of its one-shot supernet, which every part copies.
        input_shape: one sample's shape, e.g. ``(3, 224, 224)``; for a registered space, the
            model's ``options`` give it when omitted.
        latency: a ``supernet.cost.LatencyTable`` measured for this model (``latency(arch)``
            and latency constraints need one); its groups must be this model's.
    """

    MAX_TABLE = 4096  # options per choice group; a bound so a huge nested space fails loudly

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None = None, latency=None):
        model = one_shot(model)
        if input_shape is None:
            o = getattr(model, "options", None)
            if o is None:
                raise ValueError("input_shape is needed for a model without .options, e.g. (3, 32, 32)")
            input_shape = (o.in_channels, o.input_size, o.input_size)
        self.input_shape = tuple(input_shape)
        check_countable(model)  # first, so that the message names the layer by its path in the model
        self.space = space = SearchSpace(model)
        device = next(model.parameters()).device
        x = torch.zeros(1, *self.input_shape, device=device)
        # Units: the top-level choices, and the other modules computed only under a gate (an ENAS
        # cell's per-state output conv), each tabulated at its real input shape.
        units = [m for m in model.modules() if isinstance(m, LayerChoice) or gate_of(m) is not None
                 or any(isinstance(c, ChannelChoice) for c in m.children())]
        nested = {id(c) for u in units for c in u.modules() if c is not u}
        units = [u for u in units if id(u) not in nested]  # top-level choices only
        gates = [self._gate(u) for u in units]

        # Record each unit's input shape under two different architectures (and, when some unit is
        # gated, with every edge computed): the table is exact only if a choice's input never
        # depends on another choice.
        probes = [self._input_shapes(model, units, arch, x) for arch in self.probe_archs()]
        if any(g is not None for g in gates):
            probes.append(self._input_shapes(model, units, None, x))
        self.units: list[Unit] = []
        for i, (unit, gate) in enumerate(zip(units, gates)):
            seen = [p[i] for p in probes if p[i] is not None]
            if not seen:
                raise NotImplementedError(f"{_name(unit)} is not reached by the forward pass; cannot cost it")
            if any(s[0] != seen[0][0] for s in seen[1:]):
                raise NotImplementedError(f"the input shape of {_name(unit)} depends on other choices "
                                          f"({' vs '.join(str(s[0]) for s in seen)}); the lookup-table cost model "
                                          f"needs fixed input shapes per choice")
            labels = [l for l in _labels_in(unit) if not isinstance(space.choice(l), (InputChoice, BitChoice))]
            self.units.append(Unit(unit, labels, seen[0][0], seen[0][1], gate))
        self.latency_table = None
        with self.measuring(model):
            self.groups = tabulate(self.units, lambda u: self._measure(u), lambda a, b: (a[0] + b[0], a[1] + b[1], a[2] + b[2]))
            self._check_disjoint()
            inner = {l for labels, _, _ in self.groups for l in labels}
            rest = [l for l in space.labels if l not in inner and not isinstance(space.choice(l), (InputChoice, BitChoice))]
            self.groups.append((rest, self._measure_rest(model, rest, x), None))
        self._lookup = [(tuple(labels), table, gate) for labels, table, gate in self.groups]
        self.quantized = any(t[2] for _, table, _ in self.groups for t in table.values())  # has bitops and size
        if latency is not None:
            self.attach_latency(latency)

    def attach_latency(self, table) -> None:
        """Use ``table`` (a ``LatencyTable``) for ``latency(arch)``, ranges and constraints; refused
        when its groups are not this model's (a table of another space or size)."""
        mine = [(list(labels), sorted(t), gate) for labels, t, gate in self.groups]
        theirs = [(list(labels), sorted(t), None if gate is None else tuple(gate)) for labels, t, gate in table.groups]
        measured_for = (table.target or {}).get("fingerprint")
        if mine != theirs or measured_for not in (None, fingerprint(self.space.model, self.input_shape)):
            raise ValueError("the latency table does not fit this model: its choices or options differ (a table "
                             "of another space or space options); build one for this model with 'supernet latency'")
        self.latency_table = table

    def _gate(self, unit: nn.Module):
        """``(input_label, index)`` when the unit is computed only if that input is chosen (DARTS
        edges), a ``NoneChosen`` when only while none of its pairs is (ENAS cells' output convs)."""
        gate = gate_of(unit)
        if gate is None:
            return None
        name = _name(unit)
        ok = isinstance(gate, NoneChosen) or (isinstance(gate, tuple) and len(gate) == 2)
        for pair in gate_pairs(gate) if ok else []:
            label, index = pair if len(pair) == 2 else (None, None)
            ok = ok and label in self.space.labels and isinstance(self.space.choice(label), InputChoice) and \
                isinstance(index, int) and 0 <= index < self.space.n_options(label)
        if not ok:
            raise ValueError(f"{name} has gate {gate!r}, which is neither an (InputChoice label, input index) of "
                             f"this model nor a NoneChosen of such pairs")
        return gate if isinstance(gate, NoneChosen) else tuple(gate)

    # --- building -------------------------------------------------------------------------------
    def probe_archs(self) -> list[Arch]:
        """Two architectures that differ in every choice: every first option, every last one."""
        def pick(label, last):
            c = self.space.choice(label)
            if isinstance(c, InputChoice):
                k = c.n_chosen if c.n_chosen is not None else (c.n_options if last else 0)  # None: any subset
                return list(range(c.n_options - k, c.n_options)) if last else list(range(k))
            return c.n_options - 1 if last else 0
        return [{l: pick(l, last) for l in self.space.labels} for last in (False, True)]

    def _input_shapes(self, model, units, arch, x):
        """Each unit's ``(input shapes, output shape)`` in one forward under ``arch`` (None: with every
        option mixed and every input summed, so that gated units all run); None for a unit that did
        not run."""
        shapes = [None] * len(units)

        def make_hook(i):
            def hook(m, args, out):
                shapes[i] = ([tuple(a.shape) for a in args], tuple(out.shape))
            return hook

        handles = [u.register_forward_hook(make_hook(i)) for i, u in enumerate(units)]
        saved = self.space.state()
        was_training = model.training
        try:
            if arch is None:
                self.space.set_weights({l: torch.ones(self.space.n_options(l), device=x.device) / (
                    1 if isinstance(self.space.choice(l), InputChoice) else self.space.n_options(l))
                    for l in self.space.labels})
            else:
                self.space.activate(arch)
            model.eval()
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
            self.space.restore(saved)
            model.train(was_training)
        return shapes

    @contextlib.contextmanager
    def measuring(self, model: nn.Module):
        """Eval mode, and the model's decisions put back afterwards (while tables are measured).
        Bit widths do not change MACs or parameters: each is held at its first option meanwhile."""
        saved = self.space.state()
        was_training = model.training
        model.eval()
        for label in self.space.labels:
            if isinstance(self.space.choice(label), BitChoice):
                for m in self.space.choices(label):
                    m.active, m.weights = 0, None
        try:
            yield
        finally:
            self.space.restore(saved)
            model.train(was_training)

    def combos(self, labels) -> Iterator[tuple[int, ...]]:
        """Every key of a group's table: one option index per label, in table order."""
        counts = [self.space.n_options(l) for l in labels]
        if math.prod(counts) > self.MAX_TABLE:
            raise NotImplementedError(f"choice group {labels} has {math.prod(counts)} combinations "
                                      f"(> {self.MAX_TABLE}); too many to tabulate")
        return itertools.product(*(range(n) for n in counts))

    def fixed_unit(self, unit: "Unit", key: tuple[int, ...]) -> nn.Module:
        """The plain module of one table entry: ``unit`` with its labels set to ``key`` (inside ``measuring``)."""
        for label, v in zip(unit.labels, key):
            for m in self.space.choices(label):
                m.active, m.weights = v, None
        return fix_module(unit.module).eval()

    def _measure(self, unit: "Unit"):
        device = next(self.space.model.parameters()).device
        inputs = [torch.zeros(s, device=device) for s in unit.shapes]
        table = {}
        for key in self.combos(unit.labels):
            sub = self.fixed_unit(unit, key)
            macs = macs_by_layer(sub, *inputs)
            table[key] = (sum(macs.values()), count_params(sub), bits.quant_layers(sub, macs))
        return table

    def _measure_rest(self, model, labels, x):
        """Cost outside the top-level choices: whole fixed model minus the tabulated units."""
        table = {}
        base = self.probe_archs()[0]
        for key in self.combos(labels):
            arch = {**base, **dict(zip(labels, key))}
            sub = fix(model, arch).eval()
            macs = macs_by_layer(sub, x)
            flops, params, quant = sum(macs.values()), count_params(sub), bits.quant_layers(sub, macs)
            for unit_labels, unit_table, gate in self.groups:
                if gate is None or gate_open(gate, arch):  # a closed gate's unit is not in the fixed model
                    f, p, q = unit_table[tuple(arch[l] for l in unit_labels)]
                    flops, params, quant = flops - f, params - p, bits.without(quant, q)
            table[key] = (flops, params, quant)
        return table

    def _check_disjoint(self):
        seen = set()
        for labels, _, _ in self.groups:
            if seen & set(labels):
                raise NotImplementedError(f"labels {sorted(seen & set(labels))} are shared between choices; "
                                          "the min/max range is not separable")
            seen |= set(labels)

    # --- queries --------------------------------------------------------------------------------
    def cost(self, arch: Arch) -> tuple[int, int]:
        """(flops, params) of a valid architecture; a handful of dict lookups."""
        flops = params = 0
        try:
            for labels, table, gate in self._lookup:
                if gate is not None and not gate_open(gate, arch):
                    continue  # an edge whose input is not chosen (an ENAS output conv of a used state) is not built
                f, p, _ = table[tuple(arch[l] for l in labels)]
                flops += f
                params += p
        except (KeyError, TypeError):
            self.space.validate(arch)  # raises a clear ArchError
            raise
        return flops, params

    def flops(self, arch: Arch) -> int:
        return self.cost(arch)[0]

    def latency(self, arch: Arch) -> float:
        """Predicted latency in ms from the attached table: its overhead plus one entry per group."""
        if self.latency_table is None:
            raise ValueError("no latency table: build one with 'supernet latency' and pass it as "
                             "CostModel(model, latency=LatencyTable.load(path)) (latency.table=FILE in a config)")
        try:
            return self.latency_table.predict(arch)
        except (KeyError, TypeError):
            self.space.validate(arch)
            raise

    def bitops(self, arch: Arch) -> int:
        """MACs x weight bits x activation bits, summed over the conv/linear layers (32 x 32 for a
        layer in float); see ``supernet.cost.bits``."""
        return self._bit_cost(arch, bits.bitops, 0)

    def size(self, arch: Arch) -> float:
        """Bytes of the weights at their bit widths, other parameters and the step sizes at 32 bits."""
        return self._bit_cost(arch, bits.size_bits, 1) / 8

    def _bit_cost(self, arch: Arch, part, i: int) -> int:
        width = bits.resolver(self.space, arch)
        total = 0
        try:
            for labels, table, gate in self._lookup:
                if gate is None or gate_open(gate, arch):
                    entry = table[tuple(arch[l] for l in labels)]
                    total += part(entry[i], entry[2], width)
        except (KeyError, TypeError, IndexError):
            self.space.validate(arch)  # raises a clear ArchError, as cost() does
            raise
        return total

    def costs(self, arch: Arch) -> dict:
        """Every cost this model knows of ``arch``: flops and params, bitops and size when it has
        quantized layers, latency with a table."""
        return {metric: self.value(metric, arch) for metric in self.metrics()}

    def metrics(self) -> tuple[str, ...]:
        """What this model can report: flops and params, bitops and size with quantized layers, and
        latency with a table."""
        return ("flops", "params") + (("bitops", "size") if self.quantized else ()) + \
            (("latency",) if self.latency_table is not None else ())

    def value(self, metric: str, arch: Arch) -> float:
        if metric == "latency":
            return self.latency(arch)
        if metric in ("bitops", "size"):
            if not self.quantized:
                raise ValueError(f"{metric} needs quantized layers: this model has none (make it a mixed-precision "
                                 f"space with supernet.quant.mixed_precision, or space.quant in a config)")
            return self.bitops(arch) if metric == "bitops" else self.size(arch)
        return self.cost(arch)[("flops", "params").index(metric)]

    def params(self, arch: Arch) -> int:
        return self.cost(arch)[1]

    def range(self) -> dict:
        """Exact min/max FLOPs and params (and predicted latency, with a table) over the whole space."""
        out = {}
        for name in self.metrics():
            for pick, end in ((min, "min"), (max, "max")):
                out[f"{name}_{end}"] = sum(v for v, _ in self._extremes(name, pick)) + self._offset(name)
        return out

    def extreme_arch(self, metric: str = "flops", largest: bool = False) -> Arch:
        """The architecture with the smallest (or largest) FLOPs, params, BitOps, size or latency."""
        pick = max if largest else min
        arch = dict(self.probe_archs()[0])
        for _, choices in self._extremes(metric, pick):
            arch.update(choices)
        if metric in ("bitops", "size"):  # every bit label at its extreme width
            for label, b in self._extreme_bits(metric, pick).items():
                arch[label] = self.space.choice(label).values.index(b)
        return arch

    def _extreme_bits(self, metric: str, pick) -> dict[str, int]:
        layers = [q for _, table, _ in self.groups for v in table.values() for q in v[2]]
        return bits.extreme_bits(self.space, metric, pick, layers)

    def _tables(self, metric: str, pick=min) -> list:
        """Per group, ``(labels, {key: value of metric}, gate)``."""
        if metric in ("bitops", "size"):  # fewer bits never cost more, so each part's extreme has every
            if not self.quantized:                                   # layer at its extreme width
                self.value(metric, None)  # raises: no quantized layers
            chosen = self._extreme_bits(metric, pick)

            def width(x):
                return x if isinstance(x, int) else chosen[x]
            part, i = (bits.bitops, 0) if metric == "bitops" else (lambda p, q, w: bits.size_bits(p, q, w) / 8, 1)
            return [(labels, {k: part(v[i], v[2], width) for k, v in table.items()}, gate)
                    for labels, table, gate in self.groups]
        i = ("flops", "params").index(metric)
        return [(labels, {k: v[i] for k, v in table.items()}, gate) for labels, table, gate in self.groups]

    def _extremes(self, metric: str, pick) -> list[tuple[float, dict]]:
        """Per independent part of the cost, its extreme value of ``metric`` and the choices that
        reach it. A latency table whose entries switch layers between int8 and float gives one
        candidate per assignment of the bit decisions shared between groups; the extreme one wins."""
        if metric != "latency":
            return self._part_extremes([(*g, {}) for g in self._tables(metric, pick)], pick)
        if self.latency_table is None:
            self.latency(None)  # raises: no table
        candidates = [self._part_extremes(groups, pick) + [(0.0, shared)]
                      for groups, shared in self.latency_table.extremes(pick)]
        return pick(candidates, key=lambda parts: sum(v for v, _ in parts))

    def _offset(self, metric: str) -> float:
        return self.latency_table.overhead_ms if metric == "latency" else 0

    def _part_extremes(self, tables: list, pick) -> list[tuple[float, dict]]:
        """The extremes of ``tables`` (``(labels, {key: value}, gate, {key: more choices})``).
        Ungated groups are independent; gated groups are coupled through their InputChoice, whose
        every valid selection is tried."""
        parts, gated, unused = [], {}, []
        for labels, table, gate, more in tables:
            key = pick(table, key=table.__getitem__)
            best = (table[key], {**dict(zip(labels, key)), **more.get(key, {})})
            if gate is None:
                parts.append(best)
            elif isinstance(gate, NoneChosen):
                unused.append((gate, best))
            else:
                gated.setdefault(gate[0], {}).setdefault(gate[1], []).append(best)
        both = {l for g, _ in unused for l in g.labels()} & set(gated)
        if both:
            raise NotImplementedError(f"InputChoice '{sorted(both)[0]}' both opens edges and closes NoneChosen gates; "
                                      f"the min/max range of such a space is not implemented")
        parts += self._unused_extremes(unused, pick)
        for label, by_input in gated.items():
            def value(selection):
                return sum(v for k in selection for v, _ in by_input.get(k, []))
            selection = pick(_selections(self.space.choice(label)), key=value)
            choices = {label: list(selection)}
            for k in selection:
                for _, c in by_input.get(k, []):
                    choices.update(c)
            parts.append((value(selection), choices))
        return parts

    MAX_STATES = 200_000  # states x selections of the NoneChosen enumeration; beyond it the range is refused

    def _unused_extremes(self, units: list, pick) -> list[tuple[float, dict]]:
        """The extreme total of the NoneChosen-gated units (an ENAS cell's output convs), and the
        selections that reach it: the InputChoices are visited one by one, keeping every distinct
        set of closed units (at most 2^units) with one selection that closes exactly that set."""
        if not units:
            return []
        labels = [l for l in self.space.labels if any(l in g.labels() for g, _ in units)]
        closes = {(l, k): frozenset(u for u, (g, _) in enumerate(units) if (l, k) in g.pairs)
                  for l in labels for k in range(self.space.n_options(l))}
        states: dict[frozenset, dict] = {frozenset(): {}}
        for label in labels:
            options = _selections(self.space.choice(label))
            if len(states) * len(options) > self.MAX_STATES:
                raise NotImplementedError(f"the cost range over the NoneChosen gates of {labels[0]} .. "
                                          f"{labels[-1]} needs more than {self.MAX_STATES:,} states; cost() of one "
                                          f"architecture is still exact")
            new: dict[frozenset, dict] = {}
            for closed, chosen in states.items():
                for sel in options:
                    c = closed.union(*(closes[(label, k)] for k in sel))
                    new.setdefault(c, {**chosen, label: list(sel)})
            states = new

        def value(closed):
            return sum(v for u, (_, (v, _)) in enumerate(units) if u not in closed)
        closed = pick(states, key=value)
        choices = dict(states[closed])
        for u, (_, (_, c)) in enumerate(units):
            if u not in closed:
                choices.update(c)
        return [(value(closed), choices)]


def _selections(c: InputChoice) -> list[tuple[int, ...]]:
    sizes = range(c.n_options + 1) if c.n_chosen is None else [c.n_chosen]
    return [t for k in sizes for t in itertools.combinations(range(c.n_options), k)]


def _name(unit: nn.Module) -> str:
    if isinstance(unit, LayerChoice):
        return f"LayerChoice '{unit.label}'"
    return f"gated {type(unit).__name__}" if gate_of(unit) is not None else f"{type(unit).__name__} with a width choice"


def _labels_in(module: nn.Module) -> list[str]:
    seen = []
    for m in module.modules():
        if isinstance(m, Choice) and m.label not in seen:
            seen.append(m.label)
    return seen
