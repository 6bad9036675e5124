"""The one exception type a user ever sees: a single line with the problem and its fix."""


class SquallError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits non-zero."""
