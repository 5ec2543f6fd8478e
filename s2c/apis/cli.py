"""Command-line entry points: user errors as one line on stderr (exit 2), bugs as tracebacks."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

from s2c.utils.fileio import InsufficientDiskSpaceError
from s2c.utils.locks import FolderBusyError
from s2c.utils.manifest import ManifestMismatchError, ManifestUnreadableError
from s2c.utils.threads import set_num_threads

#: Exceptions that mean "the input or the environment is wrong": a missing or bad file, a
#: bad config value, a cache of other settings, a busy folder, a full disk.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError,
    KeyError, ManifestMismatchError, ManifestUnreadableError, FolderBusyError,
    InsufficientDiskSpaceError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a ``KeyError``'s text without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return ' '.join(part.strip() for part in str(text).splitlines() if part.strip())


def cli_entry(main: Callable[[Sequence[str] | None], int | None]
              ) -> Callable[[Sequence[str] | None], int]:
    """Wrap a tool's ``main(argv)``: a user error (:data:`USER_ERRORS`) prints
    ``error: <message>`` on one line of stderr and returns 2; ``--debug`` anywhere in the
    arguments shows the traceback instead. Other exceptions (bugs) propagate. Torch's
    intra-op thread count is set first (:func:`s2c.utils.threads.set_num_threads`:
    ``S2C_NUM_THREADS`` or the cores available to the process)."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = '--debug' in args
        args = [a for a in args if a != '--debug']
        try:
            set_num_threads()
            code = main(args)
        except USER_ERRORS as e:
            if debug:
                raise
            print(f'error: {one_line(e)} (--debug shows the traceback)', file=sys.stderr)
            return 2
        return int(code or 0)

    return wrapper
