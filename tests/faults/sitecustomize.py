"""Test hooks for the CLI processes the crash and distributed tests start (this folder is put on
their PYTHONPATH, so Python imports this module at start-up). The library itself has none.

SUPERNET_TEST_KILL_AT_WRITE=N   SIGKILL the process in its N-th atomic write: the temp file is
                                written and fsynced, the rename into place has not happened (the
                                worst moment for a checkpoint).
SUPERNET_TEST_COUNT_WRITES=1    at exit, print "rank R wrote N files" on stderr, N counting every
                                file opened for writing (atomic writes and appends alike).
"""
import atexit
import builtins
import io
import os
import re
import signal
import sys

_TEMP = re.compile(r"\..+\.tmp")  # supernet.runtime.io.atomic_write's temp file: .NAME.XXXX.tmp
_kill_at = int(os.environ.get("SUPERNET_TEST_KILL_AT_WRITE", "0"))
_atomic = 0
_opened = 0

if _kill_at:
    _replace = os.replace

    def _replace_or_die(src, dst, *args, **kwargs):
        global _atomic
        if _TEMP.fullmatch(os.path.basename(os.fsdecode(src))):
            _atomic += 1
            if _atomic == _kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die

if os.environ.get("SUPERNET_TEST_COUNT_WRITES"):
    _open = io.open

    def _counting_open(file, mode="r", *args, **kwargs):
        global _opened
        if any(c in mode for c in "wax+") and file != os.devnull:
            _opened += 1
        return _open(file, mode, *args, **kwargs)

    io.open = builtins.open = _counting_open  # pathlib and os.fdopen call io.open, the rest open()

    @atexit.register
    def _report() -> None:
        if "supernet" in sys.modules:  # not torchrun's launcher
            print(f"rank {os.environ.get('RANK', '0')} wrote {_opened} files", file=sys.stderr)
