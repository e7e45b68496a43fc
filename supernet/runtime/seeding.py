"""Seeds: every random decision is a function of a few ints (seed, step, rank, ...)."""
from __future__ import annotations

SEED_LIMIT = 2**63  # torch.manual_seed and the loaders' seed arithmetic take a signed 64-bit seed


def mix_seed(*parts: int) -> int:
    """A deterministic, hash-free non-negative int64 seed from a few ints (same on every run)."""
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p)) % 2**63
    return s


def check_seed(key: str, seed: int) -> None:
    """Refuse a seed outside ``0 .. 2**63 - 1``, naming its key (torch would say only "overflow")."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{key}={seed!r} is invalid: a seed must be an integer in 0..2**63-1")
