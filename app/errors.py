"""Errors the CLI reports as one line (exit status 2)."""


class UsageError(ValueError):
    """A wrong option value the parser could not catch."""
