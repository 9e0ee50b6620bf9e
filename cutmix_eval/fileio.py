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
