"""Files that appear whole or not at all: written to a temporary file beside the target, synced,
then renamed over it. A crash, a full disk or a stop leaves the previous file as it was and no
temporary file behind. The file gets the permissions the umask gives (not mkstemp's 0600): a
catalog tool running as another user must be able to read what we write."""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, TextIO


DISCARD_WAIT_SEC = 2.0  # at most, for a background sync to end when the file is thrown away


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        self.temp = Path(name)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            self.file: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            self.temp.unlink(missing_ok=True)
            raise
        self._syncing: Optional[threading.Thread] = None
        self._sync_error: Optional[OSError] = None

    def sync_in_background(self) -> None:
        """Start putting what is written so far on disk while writing goes on, so that the sync
        before the rename has only the rest to write (one sync at a time; errors show at commit)."""
        if self._syncing is not None and self._syncing.is_alive():
            return
        self.file.flush()
        self._syncing = threading.Thread(target=self._sync, args=(self.file.fileno(),), daemon=True,
                                         name="atomic-file-sync")
        try:
            self._syncing.start()
        except RuntimeError:  # no thread to be had (a process limit): the sync at commit does it all
            self._syncing = None

    def _sync(self, fd: int) -> None:
        try:
            _datasync(fd)
        except OSError as exc:
            # Kept for commit: Linux reports a write-back error to one sync of a descriptor only,
            # so the sync at commit would succeed on a file whose data did not reach the disk.
            self._sync_error = exc

    def _sync_finished(self, wait: Optional[float] = None) -> None:
        if self._syncing is not None:
            try:
                self._syncing.join(wait)  # one fdatasync of what was written before it started
            except RuntimeError:  # never started: a stop (SIGTERM's Stopped) came as it was being started
                pass
            self._syncing = None

    def commit(self) -> None:
        try:
            self._sync_finished()
            if self._sync_error is not None:
                raise self._sync_error
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        # A file thrown away need not reach the disk: a stop does not wait out a slow one (the
        # sync still under way ends on its own; closing the file does not disturb it).
        self._sync_finished(DISCARD_WAIT_SEC)
        try:
            self.file.close()
        except OSError:
            pass
        self.temp.unlink(missing_ok=True)


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)  # macOS has no fdatasync


def write_atomically(target: str | Path, text: str) -> None:
    atomic = AtomicFile(target)
    try:
        atomic.file.write(text)
    except BaseException:
        atomic.discard()
        raise
    atomic.commit()


def remove_stale_temp_files(target: str | Path, older_than_sec: float = 3600) -> None:
    """Temp files of runs killed before their rename (kill -9 leaves them); an hour old at least,
    so a concurrent run's file is left alone."""
    target = Path(target)
    cutoff = time.time() - older_than_sec
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass
