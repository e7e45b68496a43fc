"""The run directory: one process at a time, a forced restart that cannot lose the old run, and
the config record.

Every stage runs inside ``owning(run_dir, stage)``: the directory is created and proven writable,
then locked (finishing any forced restart a killed process left), before anything is read from it.
A training stage passes what ``fitting(...)`` yields to ``supernet.train.fit``.

**The lock.** Every stage holds ``RUN/.lock`` with ``fcntl.flock`` for its whole life. The kernel
drops a flock when its process dies, however it dies (SIGKILL included), so a lock left behind by
a crash never blocks the next start or a ``--resume``; the file itself only says who holds it
(pid, host, stage) for the message a second process prints. Under torchrun rank 0 takes the lock
and every rank learns the outcome, so all of them stop together when the directory is taken.

**A forced restart** (``--force`` over a stage that already has results) moves the old stage
folder aside to ``RUN/.replaced/STAGE/old`` and leaves ``config.yaml`` alone; the new config waits
in ``RUN/.replaced/STAGE/config.yaml``. The new run is committed once its folder holds a
checkpoint (or a search state with a scored candidate): then the new ``config.yaml`` is written
and the old folder deleted. A failure before that puts the old folder back, so the run directory
is as it was. A process killed in between is finished by the next one that takes the lock: it
commits if the new folder holds a checkpoint and rolls back otherwise. Every step is a rename or
an atomic write, so a kill at any moment leaves a state that the next start can finish.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from ..runtime import dist
from ..runtime.io import read_json_file, write_text
from ..runtime.typed import ConfigError, to_dict
from ..train.checkpoint import CheckpointError
from ..train.loop import TrainingError
from .config import RunConfig, dump_config, no_run, resumable_keys

LOCK_NAME = ".lock"
REPLACED = ".replaced"  # RUN/.replaced/STAGE/{old/, config.yaml}: forced restarts not yet committed

_held: dict[Path, int] = {}  # run dirs this process holds -> nesting depth (a demo holding its stages)


class RunDirInUse(ValueError):
    """Another process holds the run directory."""


def writable_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it is writable, before any work is done."""
    if run_dir.is_symlink() and not run_dir.exists():  # mkdir would only say "File exists"
        raise ConfigError(f"the run directory {run_dir} is a symbolic link to nowhere (its target "
                          f"{os.readlink(run_dir)!r} is missing, or the links loop); fix the link or choose another "
                          f"--run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {run_dir}: {e.strerror}; choose another --run-dir") from None


@contextlib.contextmanager
def owning(run_dir: Path, stage: str, every_rank: bool = True) -> Iterator[None]:
    """Hold ``run_dir`` for ``stage`` (``run_lock``), once it is known to be writable.

    Taken before the stage reads anything from the run directory: a forced restart that a killed
    process left half done is finished on entry and may change what is there.
    """
    if dist.is_main():
        writable_run_dir(run_dir)
    with run_lock(run_dir, stage, every_rank=every_rank):
        yield


def require_run(run_dir: Path) -> None:
    """A later stage needs a run directory that train-supernet made (checked before it is locked)."""
    if not (run_dir / "config.yaml").is_file() and not (run_dir / REPLACED).is_dir():
        raise no_run(run_dir)


def refuse_overwrite(paths: list[Path], force: bool) -> None:
    """A stage that would replace files it wrote before needs ``--force``."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise CheckpointError(f"{existing[0]} already exists; pass --force to replace it (or use a new --run-dir)")


def record_config(run_dir: Path, cfg: RunConfig) -> None:
    """Save the resolved config once a stage's checks have passed (a refused stage changes nothing)."""
    text = dump_config(cfg)
    path = run_dir / "config.yaml"
    if not path.is_file() or path.read_text() != text:
        writable_run_dir(run_dir)
        write_text(path, text)


@contextlib.contextmanager
def fitting(run_dir: Path, folder: str, cfg: RunConfig, resume: bool, force: bool,
            inputs: Optional[dict] = None) -> Iterator[dict]:
    """What ``supernet.train.fit`` takes from the run to train into ``RUN/folder`` (the config
    section of the same name): the resolved config saved in each checkpoint with the keys a resume
    may change, ``resume``/``force``, the loader workers, and the hooks ``on_start`` and ``on_log``.
    ``inputs`` are facts about the files the run reads (a latency table's checksum), saved and
    compared with the settings.

    A first start records ``config.yaml`` once every check has passed. A forced restart
    (``Replacement``) keeps the old folder and ``config.yaml`` until the new run's first checkpoint,
    and puts them back if it fails before; its ``TrainingError`` then says so.
    """
    with replacing(run_dir, folder, dump_config(cfg), force and not resume) as rep:
        try:
            yield {"run_config": {**to_dict(cfg), **({"inputs": inputs} if inputs else {})},
                   "may_change": resumable_keys(cfg, folder), "resume": resume, "force": force,
                   "num_workers": cfg.data.num_workers,
                   "on_start": (lambda: record_config(run_dir, cfg)) if rep is None else None,
                   "on_log": None if rep is None else lambda record: rep.commit_if_ready()}
        except TrainingError as e:
            if rep is not None and not rep.commit_if_ready():
                raise TrainingError(f"{e}; --force changed nothing: the earlier {folder} is still in "
                                    f"{run_dir / folder}") from None
            raise


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, stage: str, every_rank: bool = True) -> Iterator[None]:
    """Hold ``run_dir`` exclusively for ``stage``; raise ``RunDirInUse`` naming the holder if taken.

    Re-entrant within a process. Call it once the run directory exists and is writable, before
    anything is read or written; on entry it finishes any forced restart a killed process left.

    Args:
        every_rank: under torchrun, whether every rank enters (they then share rank 0's outcome);
            False for stages that only rank 0 runs.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd, refusal = None, None
    if dist.is_main():
        try:
            fd = _acquire(run_dir, stage)
        except RunDirInUse as e:
            refusal = str(e)
        else:
            try:  # before the other ranks go on: they read what a roll-back puts back
                recover(run_dir)
            except BaseException:
                _release(run_dir, fd)
                raise
    if every_rank and dist.world() > 1:  # rank 0's outcome is every rank's
        refusal = dist.all_gather_objects(refusal)[0]
    if refusal is not None:
        raise RunDirInUse(refusal)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        if fd is not None:
            _release(run_dir, fd)


def _acquire(run_dir: Path, stage: str) -> int:
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # e.g. ENOLCK on some NFS mounts
                raise ValueError(f"cannot lock the run directory {run_dir}: {e.strerror}; its file system does "
                                 f"not support flock, so use a --run-dir on one that does") from None
            raise RunDirInUse(_in_use_message(run_dir)) from None
        # A holder that was releasing may have unlinked the file we opened: lock the one the path names.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd


def _release(run_dir: Path, fd: int) -> None:
    # Unlink while still holding it, so the next process never finds a file that looks held.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(run_dir / LOCK_NAME)
    os.close(fd)


def holder(run_dir: str | os.PathLike) -> Optional[dict]:
    """What ``RUN/.lock`` says about its holder (pid, host, stage), or None if it says nothing yet."""
    for _ in range(20):  # the holder writes its pid just after it takes the lock
        try:
            info = json.loads(Path(run_dir, LOCK_NAME).read_text())
            if isinstance(info, dict) and "pid" in info:
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    return None


def _in_use_message(run_dir: Path) -> str:
    info = holder(run_dir)
    if info is None:
        who = "another supernet process"
    else:
        host = f" on {info['host']}" if info.get("host") not in (None, socket.gethostname()) else ""
        who = f"supernet pid {info['pid']}{host} ({info.get('stage', 'a stage')})"
    return f"{run_dir} is in use by {who}; wait for it or use another --run-dir"


# --- forced restarts ---------------------------------------------------------------------------------
def has_results(stage_dir: Path) -> bool:
    """Whether a stage folder holds something worth keeping: a checkpoint, a ranking's row, or a search
    state with at least one scored candidate (a forced search that found nothing legal replaces nothing)."""
    if (stage_dir / "last.pt").exists() or any(stage_dir.glob("step-*.pt")):
        return True
    rows = stage_dir / "results.jsonl"  # a ranking with at least one stand-alone training done
    if rows.is_file() and rows.stat().st_size > 0:
        return True
    try:  # the one reader: a FIFO there must not block the lock's holder
        return bool(read_json_file(stage_dir / "state.json", "search state").get("results"))
    except (ValueError, AttributeError):
        return False


class Replacement:
    """A forced restart of one stage folder (see the module docstring); only rank 0 makes one."""

    def __init__(self, run_dir: Path, stage: str, config_text: str):
        self.run_dir, self.stage = Path(run_dir), stage
        self.stage_dir = self.run_dir / stage
        self.txn = self.run_dir / REPLACED / stage
        self.done = False
        if self.txn.exists():  # recover() ran under this lock, so this is an unfinished start: drop it
            _discard(self.txn)
        self.txn.mkdir(parents=True)
        write_text(self.txn / "config.yaml", config_text)
        # The last step, so a kill before it leaves a restart that never began (recover() drops it).
        if self.stage_dir.exists():
            os.rename(self.stage_dir, self.txn / "old")
        else:
            (self.txn / "absent").touch()

    def commit_if_ready(self) -> bool:
        """Commit once the new stage folder holds results; True when committed."""
        if not self.done and has_results(self.stage_dir):
            _commit(self.run_dir, self.txn)
            self.done = True
        return self.done

    def finish(self) -> None:
        """At the end of the stage, successful or not: commit if the new run got that far, else roll back."""
        if not self.commit_if_ready():
            _roll_back(self.run_dir, self.txn)
            self.done = True


@contextlib.contextmanager
def replacing(run_dir: Path, stage: str, config_text: str, force: bool) -> Iterator[Optional[Replacement]]:
    """A ``Replacement`` for a forced restart on rank 0, else None (nothing to protect)."""
    run_dir = Path(run_dir)
    if not (force and dist.is_main() and ((run_dir / stage).exists() or (run_dir / "config.yaml").exists())):
        yield None
        return
    rep = Replacement(run_dir, stage, config_text)
    try:
        yield rep
    finally:
        rep.finish()


def _commit(run_dir: Path, txn: Path) -> None:
    pending = txn / "config.yaml"
    if pending.exists():
        text = pending.read_text()
        config = run_dir / "config.yaml"
        if not config.is_file() or config.read_text() != text:
            write_text(config, text)
    _discard(txn)


def _roll_back(run_dir: Path, txn: Path) -> None:
    stage_dir = run_dir / txn.name
    if stage_dir.exists():
        os.rename(stage_dir, txn / "new")  # atomic: a half-deleted new folder is never mistaken for the old
    if (txn / "old").exists():
        os.rename(txn / "old", stage_dir)
    _discard(txn)


def _discard(txn: Path) -> None:
    trash = txn.with_name(f"{txn.name}.discarded")  # atomic, so a kill mid-delete leaves nothing ambiguous
    if trash.exists():
        shutil.rmtree(trash)
    os.rename(txn, trash)
    shutil.rmtree(trash)
    with contextlib.suppress(OSError):
        txn.parent.rmdir()  # RUN/.replaced when empty


def recover(run_dir: Path) -> None:
    """Finish the forced restarts a killed process left in ``run_dir`` (the lock must be held)."""
    root = Path(run_dir) / REPLACED
    if not root.is_dir():
        return
    for txn in sorted(root.iterdir()):
        stage_dir = Path(run_dir) / txn.name
        if txn.name.endswith(".discarded"):
            shutil.rmtree(txn)
        elif not ((txn / "old").exists() or (txn / "absent").exists() or (txn / "new").exists()):
            _discard(txn)  # killed before the old folder was moved aside: nothing had changed
        elif (txn / "new").exists() or not has_results(stage_dir):
            _roll_back(Path(run_dir), txn)
            print(f"note: an interrupted --force of {stage_dir} had written no checkpoint; "
                  f"the earlier results are back in place", file=sys.stderr)
        else:
            _commit(Path(run_dir), txn)
            print(f"note: an interrupted --force of {stage_dir} had written a checkpoint; "
                  f"it replaces the earlier results", file=sys.stderr)
    with contextlib.suppress(OSError):
        root.rmdir()
