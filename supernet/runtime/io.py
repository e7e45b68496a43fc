"""Atomic file writes: a reader sees the old file or the new one, never half of one; and reading
the JSON files a user hands in, with every problem said in one line."""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .units import human_bytes


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path`` (``.NAME.XXXX.tmp``), fsync it, then
    rename it over ``path``.

    The file gets the mode a plain ``open()`` would give it (the umask's), or keeps the mode of the
    file it replaces; ``mkstemp`` alone would make every artifact private (0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write() names no file: say which
            e.filename = str(path)
        raise
    return path


def _file_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


MB = 10 ** 6


def parse_json(text: str, what: str, error: type[Exception] = ValueError, fix: str = "") -> Any:
    """``json.loads`` with every failure said in one line as ``error``, naming ``what``.

    Args:
        text: the JSON text.
        what: what it is, for the message (``"latency table lat.json"``).
        error: the exception class raised (a ``ValueError`` subclass, so the CLI prints one line).
        fix: what to do about a bad file, added to the message (``"build it again with ..."``).
    """
    tail = f"; {fix}" if fix else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON ({e}){tail}") from None
    except RecursionError:  # the parser recurses once per '[' or '{'
        raise error(f"{what} is nested too deeply to parse{tail}") from None


def read_json_file(path: str | os.PathLike, what: str, error: type[Exception] = ValueError,
                   max_bytes: int = 256 * MB, fix: str = "") -> Any:
    """A JSON file a user hands in, with every problem said in one line naming ``what``.

    The file's kind and size are checked on disk before it is opened (``check_regular_file``), so
    a file far larger than its kind can be (a log, a dataset given by mistake) is refused at once
    instead of filling the memory, and a FIFO or a device is refused instead of blocking.

    Args:
        path: the file.
        what: what it is, with its path (``"latency table runs/lat.json"``).
        error: the exception class raised (a ``ValueError`` subclass, so the CLI prints one line).
        max_bytes: the largest file accepted.
        fix: what to do about a bad file, added to the message (``"build it again with ..."``).
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} is a directory; give a JSON file")
    check_regular_file(path, max_bytes, what, error)  # a FIFO or a device is never opened
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON") from None
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}") from None
    return parse_json(text, what, error, fix)


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def check_regular_file(path: str | os.PathLike, limit: int, what: str, error: type[Exception] = ValueError) -> int:
    """Refuse, before it is opened, a path that is not a regular file or is larger than ``limit`` bytes.

    Reading a device such as /dev/zero never ends and opening a FIFO blocks until a writer comes,
    so only the file's ``stat`` is looked at here.

    Args:
        path: the file.
        limit: the largest size accepted, in bytes.
        what: what it is, with its path (``"architecture file arch.json"``).
        error: the exception class raised (a ``ValueError`` subclass, so the CLI prints one line).

    Returns:
        The file's size in bytes.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} does not exist") from None
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise error(f"{what} is {kind}, not a regular file; give a file")
    if st.st_size > limit:
        raise error(f"{what} is {human_bytes(st.st_size)}, more than the {human_bytes(limit)} such a file may be; "
                    f"check that it is the right file")
    return st.st_size
