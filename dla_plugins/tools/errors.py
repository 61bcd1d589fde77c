"""How every command-line entry ends (``dla-plugins``, ``python -m timm_ext.train``, ``d2_ext.train_net``/``run``,
``mmseg_ext.train``/``test``/``eval_boundary``): bad input is one line ``PROG: error: MESSAGE`` on stderr and exit
code 2; anything else is unexpected, so its traceback is shown, then ``PROG: unexpected TYPE (traceback above)``, and
exit code 1. Adapters add what counts as bad input in their host (``bad_input``)."""
import argparse
import sys
import traceback
from typing import Callable, NoReturn, Optional, Tuple

from .._extras import MissingExtraError
from ..deploy.export import ExportError
from ..files import CheckpointError
from ..weights import WeightsError

__all__ = ['USER_ERRORS', 'fail', 'one_line_errors', 'run_cli', 'run_entry']

USER_ERRORS: Tuple[type, ...] = (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError, ExportError,
                                 MissingExtraError, WeightsError)
"""What counts as bad input: a wrong argument or config value, a missing or unreadable file, a mismatched checkpoint,
a missing extra, weights that cannot be fetched."""


def fail(prog: str, message: str) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` on stderr and exit with code 2."""
    print(f'{prog}: error: {message}', file=sys.stderr)
    raise SystemExit(2)


def one_line_errors(parser: argparse.ArgumentParser, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad command line as one line ``PROG: error: ...`` (code 2) instead of argparse's usage
    and error lines (``prog``: the parser's own by default); returns it."""
    parser.error = lambda message: fail(prog or parser.prog, message)  # argparse calls error() for every parse error
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1:  # str(KeyError('x')) is "'x'"
        return str(error.args[0])
    return str(error)


def run_cli(prog: str, body: Callable[[], Optional[int]], bad_input: Callable[[BaseException], bool] = lambda e: False,
            reraise: bool = False) -> int:
    """Run ``body`` and return its exit code (None: 0). An exception of :data:`USER_ERRORS`, or one ``bad_input``
    accepts, prints ``PROG: error: MESSAGE`` and gives 2; any other is re-raised (``reraise``: Python prints its
    traceback, exit code 1) or printed as its traceback and ``PROG: unexpected TYPE (traceback above)``, giving 1."""
    try:
        return body() or 0
    except Exception as e:  # noqa: BLE001 - sorted into bad input and the unexpected below
        if isinstance(e, USER_ERRORS) or bad_input(e):
            print(f'{prog}: error: {_message(e)}', file=sys.stderr)
            return 2
        if reraise:
            raise
        traceback.print_exc()
        print(f'{prog}: unexpected {type(e).__name__} (traceback above)', file=sys.stderr)
        return 1


def run_entry(prog: str, body: Callable[[], object], bad_input: Callable[[BaseException], bool] = lambda e: False
              ) -> None:
    """:func:`run_cli` for an entry that ends the process: exit with its code unless ``body`` succeeded."""
    code = run_cli(prog, lambda: (body(), 0)[1], bad_input)
    if code:
        raise SystemExit(code)
