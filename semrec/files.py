"""Crash-safe file writes and folder locks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreLockedError


def store_folder(path: str | Path) -> Path:
    """The folder of an embedded store, created if absent (a file there is refused)."""
    root = Path(path).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"Store path {str(root)!r} is a file; expected a folder.")
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` so readers see the old or the new file, never half of one (write, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


class FolderLock:
    """An exclusive, process-wide lock on a folder (released on close or process exit)."""

    def __init__(self, folder: str | Path) -> None:
        import fcntl

        self.path = Path(folder) / ".lock"
        self._handle = open(self.path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise StoreLockedError(
                f"Store folder {str(folder)!r} is already open (held by pid {holder}). The "
                "embedded store allows one process at a time: close the other Recommender, or "
                "serve the store from a Qdrant server (Recommender.open(url=...)) to share it."
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        import fcntl

        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
