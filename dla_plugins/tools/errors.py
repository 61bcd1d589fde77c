"""How every command-line entry ends (``dla-plugins``, ``python -m timm_ext.train``, ``d2_ext.train_net``/``run``,
``mmseg_ext.train``/``test``/``eval_boundary``): bad input is one line on stderr and exit code 2; anything else is
unexpected, so its traceback is shown, then one line naming the command, and exit code 1."""
import sys
import traceback
from typing import Callable, Optional, Tuple

from .._extras import MissingExtraError
from ..deploy.export import ExportError
from ..files import CheckpointError
from ..weights import WeightsError

__all__ = ['BadInput', 'USER_ERRORS', 'run_cli']


class BadInput(ValueError):
    """Bad input found by an entry point itself (an argument, a file or a folder); the message names it."""


USER_ERRORS: Tuple[type, ...] = (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError, ExportError,
                                 MissingExtraError, WeightsError)
"""What counts as bad input: a wrong argument or config value, a missing or unreadable file, a mismatched checkpoint,
a missing extra, weights that cannot be fetched."""


def run_cli(prog: str, body: Callable[[], Optional[int]], user_errors: Tuple[type, ...] = USER_ERRORS,
            reraise: bool = False) -> int:
    """Run ``body`` and return its exit code (None: 0): ``user_errors`` print ``PROG: error: MESSAGE`` (``error:
    MESSAGE`` for an empty ``prog``) and give 2; anything else is re-raised (``reraise``: Python then prints its
    traceback and exits 1) or shown as its traceback, ``PROG: unexpected TYPE (traceback above)``, and 1."""
    try:
        return body() or 0
    except user_errors as e:
        print(f'{prog}: error: {e}' if prog else f'error: {e}', file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug or a resource failure (out of memory): show where it happened
        if reraise:
            raise
        traceback.print_exc()
        print(f'{prog}: unexpected {type(e).__name__} (traceback above)', file=sys.stderr)
        return 1
