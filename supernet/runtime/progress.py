"""Progress bars for long loops (training, search, latency tables, data loading).

On a terminal this is tqdm. Into a log file or a pipe, a redrawn bar would leave carriage returns
and cursor-moving escape codes (nested bars use them to keep their rows), so there each bar writes
a plain line now and then instead, and nothing when its loop was short.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Optional, TextIO

from tqdm.auto import tqdm

# Seconds between two lines of a bar in a log: a 150k-step run gets a line per half minute, a
# test run none.
LOG_EVERY_S = 30.0
# tqdm.auto picked its notebook widget, which draws no escape codes, though a notebook's standard
# error is no terminal.
NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)


def progress_bar(*, file: Optional[TextIO] = None, **kwargs):
    """A progress bar that writes to ``file`` (standard error by default).

    Args:
        file: the stream; a terminal gets a tqdm bar, anything else (a log file, a pipe) plain lines.
        **kwargs: tqdm's (``total``, ``initial``, ``desc``, ``unit``, ``leave``, ``disable``,
            ``iterable``); both kinds take them and offer ``update``, ``set_postfix``, ``close``,
            ``n``, ``total``, iteration and ``with``.
    """
    stream = sys.stderr if file is None else file
    if kwargs.get("disable") or NOTEBOOK or _isatty(stream):
        return tqdm(file=stream, mininterval=0.2, dynamic_ncols=True, **kwargs)
    return LineProgress(file=stream, **kwargs)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


class LineProgress:
    """A progress bar for logs: a whole line such as ``supernet (spos): 300/1500 (20%), 12.3 it/s,
    0:25 elapsed, ~1:40 left, loss=1.234`` at most every ``every_s`` seconds, and a last one on
    ``close`` if it wrote any (``every_s``: ``LOG_EVERY_S`` by default). Each line goes out in
    one write, so nested bars never split a line."""

    def __init__(self, iterable: Optional[Iterable] = None, desc: str = "", total: Optional[float] = None,
                 initial: float = 0, unit: str = "it", leave: Optional[bool] = True, disable: bool = False,
                 file: Optional[TextIO] = None, every_s: Optional[float] = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.iterable, self.desc, self.total, self.n, self.unit = iterable, desc, total, initial, unit
        self.leave, self.disable = leave, disable
        self.file = sys.stderr if file is None else file
        self.every_s = LOG_EVERY_S if every_s is None else every_s
        self.postfix: dict = {}
        self.start_n, self.start_t = initial, time.monotonic()
        self.last_t, self.last_n, self.wrote = self.start_t, initial, False

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if now - self.last_t >= self.every_s:
            self._write(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if not self.disable and self.wrote and self.n != self.last_n:  # the end of a loop the log reported on
            self._write(time.monotonic())
        self.disable = True

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self, now: float) -> str:
        """The progress as one line, without its newline."""
        elapsed = now - self.start_t
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
        parts = [f"{self.n:g}/{self.total:g} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n:g}",
                 f"{speed} {self.unit}/s", f"{_clock(elapsed)} elapsed"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"~{_clock((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(" ".join(f"{k}={v}" for k, v in self.postfix.items()))
        return f"{self.desc}: " * bool(self.desc) + ", ".join(parts)

    def _write(self, now: float) -> None:
        self.file.write(self.line(now) + "\n")
        self.file.flush()
        self.last_t, self.last_n, self.wrote = now, self.n, True


def _clock(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
