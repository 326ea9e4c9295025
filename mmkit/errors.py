"""User-facing errors.

A `UserError` is a mistake the user can fix (a missing file, a bad row, an unknown config key). The CLI and
the recipes print its one-line message and exit with code 2, without a traceback. Anything else is a bug in
mmkit or a library and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error caused by the user's input; `str(err)` is the whole message."""


def exit_on_user_error(main):
    """Decorator for entry points: turn a `UserError` into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
