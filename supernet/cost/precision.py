"""Int8 against float in a latency table: the layers whose precision an architecture switches.

In ONNX Runtime every bit width from 2 to 8 runs on the same 8-bit types, so a table entry timed
at one of them holds for all. A layer at 32 bits (its weight, its input, or both) runs float
instead: where a space has 32 among its candidates, each table entry carries a term for every
quantized layer of it whose precision the architecture decides. A term holds the layer timed
alone, at its input shape, in each of its four states

    state = 2 * (weight in float) + (input in float)     (0: both quantized, 3: both float)

and the state the entry itself was timed in (``base``: every bit decision at its first option).
A prediction adds, for each term, ``ms[state] - ms[base]``: the same additivity the table assumes
between blocks, which ``supernet latency --check`` measures on random subnets end to end.

``float_options`` says, per bit label with 32 among its candidates, which options are 32.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

from ..nn.choices import FULL_PRECISION, BitChoice

Bits = Union[str, int]  # a bit label, or the fixed width of a layer without a decision
STATES = 4
MAX_LOCAL = 12  # bit labels enumerated together for one entry's range (2^12 class assignments)
MAX_COUPLED = 16  # bit labels shared between blocks, enumerated together for the range


@dataclass(frozen=True)
class PrecisionTerm:
    """One quantized layer of a table entry whose precision the architecture switches."""

    weight: Bits
    act: Bits
    base: int                                # the state the entry was timed in
    ms: tuple[Optional[float], ...]          # the layer alone in each state (None: not reachable)

    def change(self, state: int) -> float:
        """The entry's latency in ``state`` minus its latency as timed."""
        ms = self.ms[state]
        if ms is None:
            raise KeyError(f"state {state}")  # an architecture this table was not measured for
        return ms - self.ms[self.base]

    def labels(self) -> list[str]:
        return [x for x in (self.weight, self.act) if isinstance(x, str)]


def float_options(space) -> dict[str, list[bool]]:
    """Per bit label with 32 among its candidates, which of its options are 32 (full precision)."""
    return {label: [v == FULL_PRECISION for v in space.choice(label).values] for label in space.labels
            if isinstance(space.choice(label), BitChoice) and FULL_PRECISION in space.choice(label).values}


def is_float(x: Bits, arch: dict, floats: dict[str, list[bool]]) -> bool:
    """Whether bits ``x`` (a label, or a fixed width) are 32 under ``arch``."""
    if isinstance(x, int):
        return x == FULL_PRECISION
    options = floats.get(x)
    if options is None:
        return False  # a decision without 32 among its candidates
    i = arch[x]
    if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(options)):
        raise KeyError(x)
    return options[i]


def state_of(term: PrecisionTerm, arch: dict, floats: dict[str, list[bool]]) -> int:
    return 2 * is_float(term.weight, arch, floats) + is_float(term.act, arch, floats)


def reachable(x: Bits, floats: dict[str, list[bool]]) -> list[bool]:
    """The precisions (float or not) bits ``x`` can take."""
    if isinstance(x, int):
        return [x == FULL_PRECISION]
    return sorted(set(floats.get(x, [False])))


def states(term_w: Bits, term_a: Bits, floats: dict[str, list[bool]]) -> list[int]:
    """The states a layer with these bits can reach."""
    return [2 * w + a for w in reachable(term_w, floats) for a in reachable(term_a, floats)]


def option_of(label: str, precision: bool, floats: dict[str, list[bool]]) -> int:
    """The first option of ``label`` at that precision (what a range's architecture takes)."""
    return floats[label].index(precision)


# --- ranges ---------------------------------------------------------------------------------------
def coupled(precision: list[dict]) -> list[str]:
    """The bit labels that terms of more than one group decide (a decision shared between blocks)."""
    seen: dict[str, int] = {}
    out = []
    for i, table in enumerate(precision):
        for terms in table.values():
            for label in (l for t in terms for l in t.labels()):
                if seen.setdefault(label, i) != i and label not in out:
                    out.append(label)
    return out


def assignments(labels: list[str], floats: dict[str, list[bool]], limit: int, what: str):
    """Every choice of precision for ``labels``, as ``{label: option}`` (a label that is always
    float, or never, keeps its one precision)."""
    both = [l for l in labels if len(reachable(l, floats)) > 1]
    if len(both) > limit:
        raise NotImplementedError(f"the latency range needs every int8/float assignment of {len(both)} bit "
                                  f"decisions {what} (more than {limit}); the latency of one architecture is "
                                  f"still exact")
    one = {l: option_of(l, reachable(l, floats)[0], floats) for l in labels if l not in both}
    for combo in itertools.product((False, True), repeat=len(both)):
        yield {**one, **{l: option_of(l, p, floats) for l, p in zip(both, combo)}}


def resolved(groups: list, precision: list[dict], floats: dict[str, list[bool]], fixed: dict[str, int],
             pick: Callable) -> list:
    """The table's groups with each entry at its extreme over the precisions of its own layers
    (``fixed``: the options of the coupled labels), as ``(labels, {key: ms}, gate, {key: choices})``."""
    out = []
    for (labels, table, gate), terms_of in zip(groups, precision):
        values, choices = {}, {}
        for key, ms in table.items():
            terms = terms_of.get(key, ())
            own = sorted({l for t in terms for l in t.labels() if l in floats and l not in fixed})
            best = None
            for local in assignments(own, floats, MAX_LOCAL, "of one block"):
                arch = {**fixed, **local}
                v = ms + sum(t.change(state_of(t, arch, floats)) for t in terms)
                if best is None or pick(v, best[0]) != best[0]:
                    best = (v, local)
            values[key], choices[key] = best
        out.append((labels, values, gate, choices))
    return out


def check_terms(terms: list, floats: dict[str, list[bool]], where: str) -> Optional[str]:
    """What is wrong with one entry's terms as read from a file, or None."""
    for j, t in enumerate(terms):
        needed = states(t.weight, t.act, floats)
        if t.base not in needed:
            return f"{where} term {j} has base state {t.base}, which its bits cannot take (states {needed})"
        for s in range(STATES):
            ms = t.ms[s]
            if (s in needed or ms is not None) and not (isinstance(ms, float) and 0 < ms < math.inf):
                return (f"{where} term {j} state {s} is {ms!r} ms; a latency must be a finite number > 0 (null only "
                        f"for a state its bits cannot take)")
    return None
