"""Reading architectures: our JSON, a list in label order, and both NNI formats."""
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
        if isinstance(obj, dict) and "arch" in obj and isinstance(obj["arch"], (dict, list)):
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
