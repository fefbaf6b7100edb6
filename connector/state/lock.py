"""One run of a pipeline at a time: an flock'ed file beside the state.

The kernel drops an flock when its process dies (even by kill -9), so a lock left by a dead
process is simply taken over by the next run; the pid written inside only serves the message.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


class LockHeld(Exception):
    """Another live process runs this pipeline."""


def lock_name(pipeline: str) -> str:
    """A file-name-safe key for a pipeline name; names that differ never share one: a hash of
    the exact name follows the readable part (`team/a` and `team_a` differ by it)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pipeline)
    return f"{safe}-{hashlib.blake2b(pipeline.encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()}"


@contextmanager
def state_file_lock(state_path: str | Path) -> Iterator[None]:
    """Serialise read-modify-write of a state file several pipelines share."""
    path = Path(f"{state_path}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class PipelineLock:
    def __init__(self, state_path: str | Path, pipeline: str):
        self.path = Path(f"{state_path}.{lock_name(pipeline)}.lock")
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            from connector.state.store import StateError

            raise StateError(f"lock file {self.path} cannot be created: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise LockHeld(f"another run holds {self.path} ({holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "PipelineLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
