"""Resuming a training run: the checkpoint must be for this model (its ``meta``) and this run (its
saved settings, except those a resume may change), and its strategy state must fit the strategy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ..strategies.base import Strategy, StrategyStateError
from .checkpoint import CheckpointError, load_latest, load_weights, set_rng_state, step_checkpoints


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


MISSING = _Missing()  # a key one side does not have (None is a value)


def differences(saved: dict, current: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """Each key whose value differs, as (dotted path, saved value, current value), ``MISSING``
    where a side lacks the key; nested dicts are walked."""
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k, MISSING), current.get(k, MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


def diff_meta(saved: dict, current: dict) -> list[str]:
    """Each differing key (nested dicts by dotted path): 'options.width_mult: checkpoint has 0.25, now 0.5'."""
    return [f"{k}: checkpoint has {a!r}, now {b!r}" for k, a, b in differences(saved, current)]


def changed_settings(saved: dict, current: dict, may_change=()) -> list[str]:
    """The settings a resume would change that it may not: 'supernet.seed: the run used 0, now 7'.

    ``may_change`` holds dotted keys, or prefixes ending in ``.`` for whole sections. A key the
    saved config lacks is a setting added since it was written: the run used its default then.
    """
    allowed = set(may_change)

    def free(key: str) -> bool:
        return key in allowed or any(key.startswith(p) for p in allowed if p.endswith("."))
    return [f"{k}: the run used {_word(a)}, now {_word(b)}" for k, a, b in differences(saved, current)
            if a is not MISSING and not free(k)]


def _word(value) -> str:
    return "nothing" if value is None else repr(value)


def said(problems: list[str], most: int = 8) -> str:
    """Problems joined on one line, at most ``most`` of them (switching a strategy changes dozens)."""
    more = f"; and {len(problems) - most} more" if len(problems) > most else ""
    return "; ".join(problems[:most]) + more


def restore(out_dir: Optional[Path], model, optimizer, strategy: Strategy, meta: dict, device, resume: bool,
            force: bool, seed: int, changed: Callable[[dict], list[str]]) -> int:
    """Load the checkpoint to resume (returning its step), or refuse to overwrite one; 0 = start.

    A resume continues the run its checkpoint records: the same model (``meta``), the same
    settings (``changed`` lists those that differ and may not) and the strategy's own state.
    """
    if out_dir is None:
        if resume:
            raise CheckpointError("nothing to resume: this run writes no checkpoints (no output directory)")
        torch.manual_seed(seed)  # dropout
        return 0
    last = out_dir / "last.pt"
    if resume:
        if not last.exists() and not step_checkpoints(out_dir):
            raise CheckpointError(f"nothing to resume: {last} does not exist (run without --resume to start)")
        state, path = load_latest(out_dir, map_location=device)
        problems = diff_meta(state["meta"], meta)
        if problems:
            raise CheckpointError(f"{path} was made for a different model: " + said(problems))
        problems = changed(state["config"]) if isinstance(state.get("config"), dict) else []
        if problems:
            raise CheckpointError(f"{path} was trained with other settings ({said(problems)}); resume with the "
                                  f"saved ones, or start over with --force")
        load_weights(model, state["model"], path, optimizer, state["optimizer"])
        _load_strategy_state(strategy, state, path)
        try:
            set_rng_state(state["rng"])
        except (RuntimeError, TypeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path}: its 'rng' entry is not this torch's random state "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); it was edited or "
                                  f"written by another torch") from None
        return state["step"]
    if (last.exists() or step_checkpoints(out_dir)) and not force:
        raise CheckpointError(f"{out_dir} already holds a checkpoint; pass --resume to continue it "
                              f"or --force to start over (or use a new --run-dir)")
    torch.manual_seed(seed)  # dropout
    return 0


def _load_strategy_state(strategy: Strategy, state: dict, path: Path) -> None:
    """The strategy's saved state, checked by the strategy; a strategy with state needs its entry
    (a controller or α started afresh would silently make another run)."""
    own = strategy.state_dict()
    if "strategy" not in state:
        if own:
            raise CheckpointError(f"checkpoint {path} has no 'strategy' entry, so the {strategy.name} state "
                                  f"({', '.join(sorted(own))}) cannot be restored; resume from a checkpoint "
                                  f"written by this strategy, or start over with --force")
        return
    if not isinstance(state["strategy"], dict):
        raise CheckpointError(f"checkpoint {path}: 'strategy' must be a dict, got {type(state['strategy']).__name__}")
    try:
        strategy.load_state_dict(state["strategy"])
    except StrategyStateError as e:  # it names the strategy and the entry
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} holds a {strategy.name} state that does not fit: "
                              f"{e.args[0] if e.args else type(e).__name__}") from None
