"""Errors the CLI turns into one clear line and exit code 2 (never a traceback)."""


class UserError(Exception):
    """A problem with what the user asked for: bad task, cell, algorithm, option or path."""
