"""Optional dependencies: one clear line naming the ``pip install 'dla-plugins[extra]'`` that provides them."""
import importlib
import sys
from types import ModuleType
from typing import Any, Callable, Collection, NoReturn

__all__ = ['MissingExtraError', 'require', 'adapter_import_failed', 'missing_host_getattr']


class MissingExtraError(ImportError):
    """An optional package is missing; the message names the extra that installs it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` saying that ``what`` needs ``pip install ...[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{what} needs {module.split('.')[0]}, which is not installed: "
                                f"pip install 'dla-plugins[{extra}]'") from e


def adapter_import_failed(adapter: str, extra: str, err: ImportError, note: str = '') -> NoReturn:
    """Fail the import of ``adapter`` because its host is missing: a one-line error naming the extra.

    Imported by ``python -m <adapter>.<entry>`` (Python sets ``sys.argv[0]`` to '-m' while it locates the module),
    the process exits with that line and no traceback; imported from code, a :class:`MissingExtraError` is raised.
    """
    msg = f"{adapter} needs {err.name or 'its host framework'}, which is not installed: " \
          f"pip install 'dla-plugins[{extra}]'{note}"
    if sys.argv[:1] == ['-m']:
        raise SystemExit(f'error: {msg}')
    raise MissingExtraError(msg) from err


def missing_host_getattr(adapter: str, extra: str, err: ImportError, names: Collection[str],
                         note: str = '') -> Callable[[str], Any]:
    """For an adapter whose host framework failed to import: under ``python -m`` exit at once (one line); otherwise
    return a module ``__getattr__`` that raises :class:`MissingExtraError` for the adapter's host-dependent ``names``
    (so its pure-Python helpers, e.g. ``get_config_file``, still work)."""
    if sys.argv[:1] == ['-m']:
        adapter_import_failed(adapter, extra, err, note)

    def __getattr__(name: str) -> Any:
        if name in names:
            adapter_import_failed(adapter, extra, err, note)
        raise AttributeError(f'module {adapter!r} has no attribute {name!r}')

    return __getattr__
