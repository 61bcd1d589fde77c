"""How a command-line entry of this adapter ends (``python -m d2_ext.train_net``, ``python -m d2_ext.run``), as the
``dla-plugins`` command does: bad input is one line ``PROG: error: MESSAGE`` on stderr and exit status 2; anything
unexpected keeps its traceback, then one line ``PROG: unexpected TYPE (traceback above)``, and exit status 1.

This module needs only the standard library and ``dla_plugins`` (what is bad input in detectron2 is passed in as
``bad_input``), so the other adapters' entries can share it.
"""
import argparse
import sys
import traceback
from typing import Callable, NoReturn, Tuple, TypeVar

from dla_plugins._extras import MissingExtraError
from dla_plugins.checkpoint.io import CheckpointError
from dla_plugins.weights import WeightsError

__all__ = ['USER_ERRORS', 'fail', 'one_line_errors', 'run_entry']

T = TypeVar('T')

# Bad input wherever it is raised (the dla-plugins command's list, less its export-only ExportError).
USER_ERRORS: Tuple[type, ...] = (ValueError, FileNotFoundError, CheckpointError, MissingExtraError, WeightsError)


def fail(prog: str, message: str) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` on stderr and exit with status 2."""
    print(f'{prog}: error: {message}', file=sys.stderr)
    raise SystemExit(2)


def one_line_errors(parser: argparse.ArgumentParser, prog: str) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad command line as one line ``PROG: error: ...`` (status 2) instead of argparse's
    usage and error lines; returns it."""
    parser.error = lambda message: fail(prog, message)  # argparse calls self.error for every parsing error
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1:  # str(KeyError('x')) is "'x'"
        return str(error.args[0])
    return str(error)


def run_entry(prog: str, func: Callable[[], T], bad_input: Callable[[BaseException], bool] = lambda e: False) -> T:
    """Return ``func()``; an exception of :data:`USER_ERRORS`, or one ``bad_input`` accepts, exits with status 2 after
    one line naming ``prog``; any other prints its traceback and exits with status 1. ``SystemExit`` passes."""
    try:
        return func()
    except Exception as e:  # noqa: BLE001 - sorted into bad input and the unexpected below
        if isinstance(e, USER_ERRORS) or bad_input(e):
            fail(prog, _message(e))
        traceback.print_exc()
        print(f'{prog}: unexpected {type(e).__name__} (traceback above)', file=sys.stderr)
        raise SystemExit(1) from None
