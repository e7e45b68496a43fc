"""Checks a search makes before any work: the saved state it resumes, and the size of its population.

``search/state.json`` is plain JSON that a user can edit; any entry missing or of the wrong type
is one line naming the file and the entry, instead of a ``KeyError`` deep in the search. A
population too large for memory is refused with the estimate, instead of being built until the
machine gives out.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..arch import ArchError, SearchSpace
from ..data.memory import check_fits
from ..runtime.io import MB, read_json_file

# Bytes per candidate held by the search: the arch dict, its key in the visited set and its result
# record (measured with tracemalloc: ~770 B at 8 labels, ~1.6 KB at 40), as a base plus a part per label.
CANDIDATE_BYTES, LABEL_BYTES = 500, 30
# A state holds one record per scored candidate (~200 B of JSON): 1 GB is millions of candidates.
STATE_MAX_BYTES = 1000 * MB


class SearchStateFileError(ValueError):
    """A ``state.json`` that is not a search state this supernet wrote."""


_NUMBER = (int, float)
# Top-level entries and their types; "settings" is checked only where the version records it.
_ENTRIES = {"version": int, "algorithm": str, "generation": int, "rng": list, "results": list, "topk": list}
_RESULT = {"generation": int, "arch": (dict, list), "top1_err": _NUMBER, "top5_err": _NUMBER}


def load_state(path: str | Path) -> dict:
    """Read and check ``search/state.json``: a file that is too large, not UTF-8, not JSON, nested
    too deeply or missing an entry is one line naming it."""
    obj = read_json_file(path, f"search state {path}", SearchStateFileError, STATE_MAX_BYTES,
                         "restore it or start the search over with --force")
    return validate_state(obj, path)


def validate_state(obj: Any, path: str | Path, space: Optional[SearchSpace] = None) -> dict:
    """Return ``obj`` if it has every entry a resume reads, else raise naming ``path`` and the entry.

    With ``space``, each result's architecture is validated too, and every top-k key must name
    one of the results.
    """
    def bad(what: str) -> SearchStateFileError:
        return SearchStateFileError(f"{path} is not a usable search state: {what}; restore it or start the search "
                                    f"over with --force")

    if not isinstance(obj, dict):
        raise bad(f"it holds a {type(obj).__name__}, not an object")
    for key, kind in _ENTRIES.items():
        if key not in obj:
            raise bad(f"the key '{key}' is missing")
        if not _is(obj[key], kind):
            raise bad(f"'{key}' must be {_name(kind)}, got {type(obj[key]).__name__}")
    for key in ("settings", "supernet"):  # recorded by newer versions: the settings, the supernet scored
        if key in obj and not isinstance(obj[key], dict):
            raise bad(f"'{key}' must be an object, got {type(obj[key]).__name__}")
    if obj["generation"] < 0:
        raise bad(f"'generation' must be >= 0, got {obj['generation']}")
    rng = obj["rng"]
    if len(rng) != 3 or not isinstance(rng[0], int) or not isinstance(rng[1], list) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng[1]) \
            or not (rng[2] is None or isinstance(rng[2], _NUMBER)):
        raise bad("'rng' must be [version, [integers], gauss] as Python's random.getstate() gives")
    for i, r in enumerate(obj["results"]):
        if not isinstance(r, dict):
            raise bad(f"results[{i}] must be an object, got {type(r).__name__}")
        for key, kind in _RESULT.items():
            if key not in r:
                raise bad(f"results[{i}] has no '{key}'")
            if not _is(r[key], kind):
                raise bad(f"results[{i}]['{key}'] must be {_name(kind)}, got {type(r[key]).__name__}")
    if not all(isinstance(k, str) for k in obj["topk"]):
        raise bad("'topk' must be a list of architecture keys (strings)")
    if space is not None:
        keys = set()
        for i, r in enumerate(obj["results"]):
            try:
                keys.add(json.dumps(space.encode(space.validate(r["arch"]))))
            except ArchError as e:
                raise bad(f"results[{i}]['arch'] does not fit this space ({e})") from None
        unknown = [k for k in obj["topk"] if k not in keys]
        if unknown:
            raise bad(f"topk entry {unknown[0]} is not among the results")
    return obj


def _is(value: Any, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _name(kind) -> str:
    if kind == _NUMBER:
        return "a number"
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def check_population(cfg, space: SearchSpace) -> None:
    """Refuse a ``search.population`` whose generation would not fit in memory, with the estimate
    and what is available.

    Raises:
        DataError: one line naming the setting.
    """
    per = CANDIDATE_BYTES + LABEL_BYTES * len(space.labels)
    # One generation is built at once: the population (a random refill), its mutations and crossovers.
    n = cfg.population + (cfg.mutations + cfg.crossovers if cfg.algorithm != "random" else 0)
    check_fits(n * per, f"search.population={cfg.population:,}: {n:,} candidates of {len(space.labels)} labels "
               f"per generation", "lower search.population (the official SPOS search uses 50)")
