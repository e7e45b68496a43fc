"""Checkpoints: atomic, versioned, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain data only (the config as a dict, RNG states as
tensors), so it loads without unpickling code.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..io import atomic_write

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, named by path."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    state = {"format_version": FORMAT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(state, f), mode="wb")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt, or not ours
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format version {found!r}; this supernet reads {FORMAT_VERSION}")
    return state


def step_checkpoints(folder: Path) -> list[Path]:
    """``step-*.pt`` files in step order."""
    found = [(int(m[1]), p) for p in folder.glob("step-*.pt") if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: Path, keep: int) -> None:
    old = step_checkpoints(folder)
    for p in old[: max(0, len(old) - keep)]:
        p.unlink(missing_ok=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
