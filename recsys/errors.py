"""Errors meant for people: the CLI prints the message as one line and exits non-zero."""


class RecsysError(Exception):
    """Base class: the message says what was wrong, where, and how to fix it."""


class UsageError(RecsysError):
    """A flag or argument has a bad value."""


class RepoError(RecsysError):
    """The feature repo is missing, foreign, or not yet applied."""


class DataError(RecsysError):
    """A data file does not match the schema."""


class OutputExistsError(RecsysError):
    """The output already exists and --force was not given."""
