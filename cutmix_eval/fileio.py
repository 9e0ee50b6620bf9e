"""Atomic file writes: a reader never sees a half-written file under the final name.

A folder that cannot be created or written (no permission, a file in the way, a full
disk) is a :class:`~cutmix_eval.errors.UserError` naming the path: the user fixes it
by freeing space, changing permissions or choosing another folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cutmix_eval.errors import UserError


def writable_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` (and its parents) if needed and check a file can be created in it,
    before any work whose outcome goes there; ``what`` names it in the error (e.g.
    ``"--results folder"``). Returns the folder as a :class:`Path`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _unwritable(folder, err, what) from err
    return folder


def _unwritable(path: Path, err: OSError, what: str) -> UserError:
    return UserError(f"cannot write {path} ({err.strerror or err}); make the folder writable, free disk space or "
                     f"choose another {what}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary file in the target folder, fsync, then
    ``os.replace`` it onto ``path``. On any error the temporary file is removed and
    ``path`` is left as it was; an ``OSError`` (folder not writable, disk full) becomes
    a :class:`~cutmix_eval.errors.UserError` naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _unwritable(path.parent, err, "output folder") from err
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _unwritable(path, err, "output folder") from err
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_save_figure(path: str | os.PathLike, figure, dpi: int = 150) -> Path:
    """Save a matplotlib figure as PNG (tight bounding box) with :func:`atomic_write`."""
    return atomic_write(path, lambda fh: figure.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))


class PartFolder:
    """The finished parts of long computations, one file per key in ``folder`` (the object
    behind ``RunSettings.parts``): a computation that is interrupted finds them when it is run
    again. Keys are file names the computation derives from everything its outcome depends on
    (a digest), so a part is only ever read by the run that wrote it. Each part is written
    atomically; evaluators hand over bytes and never touch the files themselves."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def read(self, key: str) -> bytes | None:
        """The part's bytes, or None when there is none (or it cannot be read: computed again)."""
        try:
            return (self.folder / key).read_bytes()
        except OSError:
            return None

    def write(self, key: str, data: bytes) -> None:
        atomic_write(writable_folder(self.folder, "work folder") / key, lambda fh: fh.write(data))

    def remove(self, key: str) -> None:
        (self.folder / key).unlink(missing_ok=True)
