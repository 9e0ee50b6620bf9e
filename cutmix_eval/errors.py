"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (missing dataset, wrong layout,
checkpoint that does not fit, unsafe pickle...). The CLI prints its message as one
line and exits with status 2, without a traceback unless ``--debug`` is given.
Library users catch it like any other exception.
"""


class UserError(Exception):
    """A mistake in the user's input; the message says what was expected and how to fix it."""

    exit_code = 2


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset is missing or its files are not in the expected layout."""


class CheckpointError(UserError):
    """A checkpoint cannot be read, is unsafe to read, or does not fit the architecture."""
