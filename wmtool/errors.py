"""User-facing failures: one line that names the problem and the fix."""
from __future__ import annotations

STOPPED_BY_CTRL_C, STOPPED_BY_SIGTERM = 130, 143  # exit codes, as shells report them


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: what is finished is saved, then the command stops."""


class WmtoolError(Exception):
    """An error the CLI prints as one line (plus a hint) and exits 1 on.

    Raise it for anything the user can fix: bad input, missing backends, foreign files.
    Bugs stay ordinary exceptions so they keep their tracebacks.
    """

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def disk_error(file, exc: OSError) -> WmtoolError:
    """OSError from a write as one line; a full disk names the fix."""
    if exc.errno == 28:  # ENOSPC
        return WmtoolError(f"disk full while writing {file}",
                           "free some space (what was written before is intact) and resume")
    return WmtoolError(f"cannot write {file}: {exc.strerror or exc}", "check the path and space")


def unfilled(contract: str, what: str) -> NotImplementedError:
    """What a subclass must define, said where the contract leaves it open."""
    return NotImplementedError(f"{what} (part of the contract in {contract}; a subclass must "
                               "define it)")


class UsageError(WmtoolError):
    """A mistake in the command line (an unknown name, a missing file): exit 2, as for the
    usage errors the option parser reports itself."""

