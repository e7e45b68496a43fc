"""Checkpoints: atomic, versioned, checksummed, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain data only (the config as a dict, RNG states as
tensors), so it loads without unpickling code. On disk it is a one-line header with the SHA-256
of the payload, then ``torch.save``'s bytes: a truncated or damaged file is detected before
torch reads it, and the previous good checkpoint is used instead (``load_latest``).
"""
from __future__ import annotations

import hashlib
import io
import pickle
import re
import sys
from pathlib import Path

import torch

from ..runtime.io import atomic_write

FORMAT_VERSION = 1
MAGIC = b"supernet-checkpoint sha256="


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, named by path."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    payload = buf.getvalue()
    header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    return atomic_write(path, lambda f: (f.write(header), f.write(payload)), mode="wb")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    header, _, payload = data.partition(b"\n")
    if not header.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path} is not a supernet checkpoint (no header); it may be truncated to nothing")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC):]:
        raise CheckpointError(f"checkpoint {path} is damaged or truncated (checksum mismatch, {len(data):,} bytes)")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # torch explains weights_only in 16 lines; one of them says what
        raise CheckpointError(f"checkpoint {path} holds {_refused_object(e)}, which safe loading (weights_only=True) "
                              f"refuses; it was not written by supernet, so it is not loaded") from None
    except Exception as e:  # not ours, or written by an incompatible torch
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format version {found!r}; this supernet reads {FORMAT_VERSION}")
    check_contents(state, path)
    return state


# What every checkpoint holds (see train.loop.fit), with the type each must have.
REQUIRED = {"model": dict, "optimizer": dict, "step": int, "rng": dict, "meta": dict}


def check_contents(state: dict, path: Path) -> None:
    """Refuse a checkpoint without the entries a stage reads, naming the file and the entry."""
    for key, kind in REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no '{key}' entry (incomplete, or not written by supernet)")
        if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            raise CheckpointError(f"checkpoint {path}: '{key}' must be a {kind.__name__}, "
                                  f"got {type(state[key]).__name__}")
    meta = state["meta"]  # what it holds is the writer's (fit takes any dict); a retrained subnet names its arch
    missing = [k for k in ("arch",) if meta.get("kind") == "subnet" and k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} has no meta['{missing[0]}'] entry (incomplete, or not written "
                              f"by supernet)")


def load_weights(model: torch.nn.Module, weights: dict, path: Path, optimizer=None, optimizer_state=None) -> None:
    """``model.load_state_dict(weights)`` (and the optimizer's), a mismatch named in one line
    instead of torch's list of every differing tensor."""
    _load_into(model, weights, path, "weights")
    if optimizer is not None:
        _load_into(optimizer, optimizer_state, path, "optimizer state")


_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError)


def _load_into(target, state, path: Path, what: str) -> None:
    try:
        target.load_state_dict(state)
    except _LOAD_ERRORS as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if len(lines) > 1 and "state_dict for" in lines[0]:  # torch's header, then one line per tensor
            lines = lines[1:]
        first = lines[0] if lines else type(e).__name__
        raise CheckpointError(f"checkpoint {path}: its {what} do not fit this model ({_shorten(first)}); it was "
                              f"written for another model, or edited") from None


def _shorten(text: str, limit: int = 200) -> str:
    text = text.rstrip(".")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _refused_object(e: BaseException) -> str:
    """``the Python object argparse.Namespace`` from torch's refusal ("Unsupported global: GLOBAL x.y ...")."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"the Python object {m[1]}" if m else "Python objects"


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch bolds parts of some messages for terminals
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(e).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def load_latest(folder: str | Path, map_location="cpu") -> tuple[dict, Path]:
    """The newest readable checkpoint in ``folder``: ``last.pt``, else ``step-*.pt`` newest first.

    When some had to be skipped, one warning line on stderr names each with its problem; when
    none can be used, the error alone says the same (no warnings before it).
    """
    folder = Path(folder)
    candidates = [folder / "last.pt"] + step_checkpoints(folder)[::-1]
    problems = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as e:
            problems.append(_short(e, path))
            continue
        if problems:
            print(f"warning: {folder}: {'; '.join(problems)}; using {path.name} (step {state['step']}) instead",
                  file=sys.stderr)
        return state, path
    if not problems:
        raise CheckpointError(f"no checkpoint in {folder} (last.pt or step-N.pt): run the stage that writes it first "
                              f"(train-supernet for supernet/, retrain for retrain/)")
    raise CheckpointError(f"no usable checkpoint in {folder}: {'; '.join(problems)}")


def _short(e: CheckpointError, path: Path) -> str:
    """``NAME: problem``: the folder is said once, so a fallback stays one readable line."""
    text = str(e)
    for prefix, sep in ((f"checkpoint {path}: ", ": "), (f"checkpoint {path} ", " ")):
        if text.startswith(prefix):
            return f"{path.name}{sep}{text[len(prefix):]}"
    return f"{path.name}: {text}"


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files left by a write that was killed before its rename."""
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)


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
