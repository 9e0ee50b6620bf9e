"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (missing dataset, wrong layout,
checkpoint that does not fit, unsafe pickle...). The CLI prints its message as one
line and exits with status 2, without a traceback unless ``--debug`` is given.
Library users catch it like any other exception.

A long run interrupted by Ctrl-C re-raises the ``KeyboardInterrupt`` with one line
saying where things stand (:func:`where_things_stand`); the CLI prints it and exits
with status 130.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in the user's input; the message says what was expected and how to fix it.

    Raised in a DataLoader worker process, it comes back re-created by torch with the
    worker's traceback as its message (``Caught UserError in DataLoader worker process 0.
    Original Traceback ...``); the message is then cut back to the original one line."""

    exit_code = 2

    def __init__(self, *args: object):
        super().__init__(*(_original_message(type(self), args[0]), *args[1:]) if args else ())


def _original_message(cls: type, message: object) -> object:
    """``message``, or the original one-line message inside torch's re-raise of a worker's
    exception: the traceback's last line, less its ``module.Class: `` prefix."""
    if not (isinstance(message, str) and message.startswith(f"Caught {cls.__name__} ")
            and "\nOriginal Traceback" in message):
        return message
    return message.rstrip().rsplit("\n", 1)[-1].removeprefix(f"{cls.__module__}.{cls.__qualname__}: ")


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset is missing or its files are not in the expected layout."""


class CheckpointError(UserError):
    """A checkpoint cannot be read, is unsafe to read, or does not fit the architecture."""


@contextmanager
def where_things_stand(status: Callable[[], str]) -> Iterator[None]:
    """Re-raise a ``KeyboardInterrupt`` (Ctrl-C) inside the block with the message ``status()``:
    one line saying what is kept and how to go on. An outer block replaces an inner one's
    message (it knows more: a study outranks the job it was running)."""
    try:
        yield
    except KeyboardInterrupt as stop:
        raise KeyboardInterrupt(status()) from stop
