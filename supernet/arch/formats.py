"""Reading architectures: our JSON, a list in label order, both NNI formats, and NAS-Bench-201's
architecture string (``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``), which is also
written (``to_nas_bench_201``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..nn.choices import ChannelChoice, InputChoice, LayerChoice
from ..runtime.io import MB, parse_json, read_json_file
from .space import Arch, ArchError, SearchSpace

_LEGACY_KEY = re.compile(r"^(LayerChoice|InputChoice)(\d+)$")
_FIX = "an architecture is a flat label -> index object"
ARCH_MAX_BYTES = 64 * MB  # a label -> index object; even 100,000 labels take a few MB


def parse_arch(obj: Any, space: SearchSpace, fmt: str = "auto") -> Arch:
    """Turn a JSON object into a validated architecture of ``space``.

    Args:
        obj: a dict; or a JSON string; or a path to a JSON file.
        fmt: ``"native"`` (label -> index), ``"nni"`` (NNI 1.x/2.x ``{"LayerChoice1": [false, true, ...]}``,
            1-based keys in module order, one-hot lists), ``"nni3"`` (NNI 3 label -> value),
            ``"nas-bench-201"`` (the benchmark's string, ``|op~0|+|op~0|op~1|+|...|``) or ``"auto"``:
            a NAS-Bench-201 string if it is one, NNI 1.x if the keys look like it, else native, else NNI 3.
    """
    obj = _load_obj(obj)
    if isinstance(obj, str) or fmt == "nas-bench-201":
        if not isinstance(obj, str):
            raise ArchError(f"a NAS-Bench-201 architecture is a string such as {NB201_EXAMPLE!r}, got "
                            f"{type(obj).__name__}")
        return from_nas_bench_201(obj, space)
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
    raise ValueError(f"unknown architecture format {fmt!r}; use auto, native, nni, nni3 or nas-bench-201")


def _load_obj(obj: Any) -> Any:
    if isinstance(obj, (str, os.PathLike)):
        text = str(obj).strip()
        if text[:1] == "|":  # a NAS-Bench-201 string
            return text
        if text[:1] in "{[":
            return parse_json(text, "architecture string", ArchError, _FIX)
        path = Path(obj)
        if not path.exists():
            raise ArchError(f"architecture {str(obj)!r} is neither a JSON string nor an existing file")
        if path.is_dir():
            found = next((p for p in (path / "best_arch.json", path / "search" / "best_arch.json") if p.is_file()), None)
            hint = f"such as {found}" if found else "(a search writes RUN_DIR/search/best_arch.json)"
            raise ArchError(f"architecture {path} is a directory; give a JSON file {hint}")
        # A device or a FIFO would be read forever, or block: the reader refuses it by its stat, unopened.
        obj = read_json_file(path, f"architecture file {path}", ArchError, ARCH_MAX_BYTES, _FIX)
        # Our own result files wrap the architecture with metadata.
        if isinstance(obj, dict) and "arch" in obj and isinstance(obj["arch"], (dict, list, str)):
            obj = obj["arch"]
    return obj


def from_nni_legacy(obj: dict, space: SearchSpace) -> Arch:
    """NNI 1.x/2.x: ``LayerChoiceK`` / ``InputChoiceK`` keys with one-hot bool lists.

    NNI numbers the keys with one counter shared by both kinds, in creation (module) order, so the
    keys sorted by number map onto this space's LayerChoice/InputChoice labels in module order.
    An InputChoice's list marks its chosen inputs: several, or none at all (``[]``) for an
    ``n_chosen=None`` choice.
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


# --- NAS-Bench-201's architecture string -----------------------------------------------------------
# Node j (1, 2, 3, ...) is written as its incoming edges "|op~i|op~i'|...|"; nodes are joined by "+".
# Edge i -> j is the space's label "{i}_{j}" (the nas-bench-201 space, NNI's query keys); the op
# is the name of one of that LayerChoice's candidates.
NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def parse_nas_bench_201(text: str) -> dict[str, str]:
    """A NAS-Bench-201 string as ``{"{i}_{j}": op name}``, checked for its form only (every node
    lists each earlier node once). Raises ``ArchError`` naming the bad part."""
    def bad(what: str) -> ArchError:
        return ArchError(f"NAS-Bench-201 string {text!r}: {what} (the form is {NB201_EXAMPLE!r})")

    if not isinstance(text, str):
        raise ArchError(f"a NAS-Bench-201 architecture is a string such as {NB201_EXAMPLE!r}, got {type(text).__name__}")
    edges: dict[str, str] = {}
    for j, node in enumerate(text.strip().split("+"), 1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise bad(f"node {j} {node!r} must start and end with '|'")
        inputs = []
        for part in node[1:-1].split("|"):
            op, tilde, i = part.partition("~")
            if not tilde or not op or not i.isdigit():
                raise bad(f"node {j} has {part!r}, which is not op~input (e.g. nor_conv_3x3~0)")
            inputs.append(int(i))
            edges[f"{int(i)}_{j}"] = op
        if sorted(inputs) != list(range(j)):
            raise bad(f"node {j} {node!r} takes inputs {inputs}; node {j} takes each of nodes 0..{j - 1} once")
    return edges


def from_nas_bench_201(text: str, space: SearchSpace) -> Arch:
    """A NAS-Bench-201 string as an architecture of ``space`` (the nas-bench-201 space, or any space
    whose LayerChoices are labelled ``"{i}_{j}"`` and whose candidates carry the benchmark's op names)."""
    edges = parse_nas_bench_201(text)
    if set(edges) != set(space.labels):
        nodes = max(int(label.split("_")[1]) for label in edges)
        raise ArchError(f"NAS-Bench-201 string {text!r} has {nodes} node(s) ({len(edges)} edges), which do not fit "
                        f"this space's labels ({space.describe()}); the string is for the nas-bench-201 space")
    arch = {}
    for label in space.labels:
        c, op = space.choice(label), edges[label]
        if not isinstance(c, LayerChoice) or op not in c.values:
            valid = ", ".join(map(str, c.values))
            raise ArchError(f"NAS-Bench-201 string {text!r}: edge {label.replace('_', '->')} has op {op!r}, which is "
                            f"not one of {valid}")
        arch[label] = c.values.index(op)
    return space.validate(arch)


def to_nas_bench_201(arch: Arch, space: SearchSpace) -> str:
    """The NAS-Bench-201 string of ``arch`` (a valid architecture of a space ``from_nas_bench_201`` reads)."""
    arch = space.validate(arch)
    if not space.labels or not all(re.fullmatch(r"\d+_\d+", label) for label in space.labels):
        raise ArchError(f"only a space whose labels are edges i_j (nas-bench-201) has NAS-Bench-201 strings; this "
                        f"one has {space.describe()}")
    edges = {tuple(map(int, label.split("_"))): space.choice(label).values[arch[label]] for label in space.labels}
    nodes = range(1, max(j for _, j in edges) + 1)
    return "+".join("|" + "".join(f"{edges[(i, j)]}~{i}|" for i in range(j)) for j in nodes)
