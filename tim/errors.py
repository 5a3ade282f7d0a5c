"""User errors: what every Tim command reports as one line, `error: <message>`, exit status 1.

A user error is something the person running the command can fix: a wrong path or option, data
that cannot make a training set, a checkpoint Tim cannot use, a run folder that already holds a
run, a full disk or a folder they cannot write. Each is raised with a message that names the file
or value and says what to do; `run_command` prints it without a traceback. Anything else is a bug
and keeps its traceback.

Exit statuses of every command (`tim ...`, train.py, app.py, space/deploy.py):
0 it did what was asked; 1 a user error, explained on stderr; 2 the command line itself is wrong
(argparse's usage message).
"""
from __future__ import annotations

import errno
import sys
from typing import Callable

# OSErrors a user fixes (free space, permissions, a read-only disk), reported with the path they name
USER_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class UserError(ValueError):
    """A problem the user can fix; the message says which file or value and what to do."""


class ConfigError(UserError):
    """A training option with a value Tim does not accept; the message lists the accepted ones."""


class RunFolderError(UserError):
    """An --output-dir that holds a run Tim would overwrite, or has no run to resume."""


def user_message(error: BaseException) -> str | None:
    """The one-line message for a user error, or None when `error` is a bug (which keeps its traceback)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, FileNotFoundError):  # tim.data names missing sources this way
        return str(error) if error.filename is None else f"{error.filename}: no such file or folder"
    if isinstance(error, OSError) and error.errno in USER_ERRNOS:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{USER_ERRNOS[error.errno]}; free space or pick a folder you can write, then run it again."
    return None


def run_command(func: Callable[..., int | None], *args, **kwargs) -> int:
    """Call a command's function; print a user error as `error: ...` on stderr and return 1."""
    try:
        return int(func(*args, **kwargs) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = user_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
