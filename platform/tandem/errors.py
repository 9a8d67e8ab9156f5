"""The one exception type that means "the user got something wrong".

Entrypoints (CLI, jobs) catch `UserError`, print its message and exit 2, so a
bad config, data file or argument never shows a traceback. Anything else is an
internal failure and exits 1.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from a user: a config key, a data row, a CLI argument, a port."""
