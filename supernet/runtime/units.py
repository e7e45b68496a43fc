"""Numbers in words: counts, latencies and bytes, as messages and tables print them."""
from __future__ import annotations


def fmt_count(v: float) -> str:
    """A count with the unit constraints accept: 1.0112M, 330M, 4.2G (6 significant digits)."""
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if abs(v) >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def fmt_bytes(v: float) -> str:
    """A size in bytes as constraints accept it: 1.5MB, 640KB, 12B (6 significant digits)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}B"


def fmt_ms(v: float) -> str:
    """A latency in ms as constraints accept it: 12.5ms, 0.0421ms."""
    return f"{v:.4g}ms"


def human_count(n: float) -> str:
    """A count for people: 322.92M, 3.56K, 12."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def human_bytes(n: float) -> str:
    """A size for people: 11.4 GB, 640.0 KB, 12 B."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
