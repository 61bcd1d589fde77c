"""The registry of known DLA weight files: one :class:`WeightEntry` per short name, its :class:`Source` list in
priority order, the layout family and the model it builds. The rows themselves are data, in :mod:`.table`."""
import re
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple, Union

from ..checkpoint.detect import FAMILIES
from ..files import WEIGHTS_SCHEME
from ..variants import VARIANTS
from .entry import BUILDERS, SOURCE_KINDS, Source, WeightEntry
from .table import TABLE

__all__ = ['Source', 'WeightEntry', 'SOURCE_KINDS', 'BUILDERS', 'register', 'unregister', 'registered', 'get',
           'names', 'entries', 'name_for', 'pretrained_path']

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*(/[A-Za-z0-9][A-Za-z0-9_.+-]*)*$')
_HEX = re.compile(r'^[0-9a-f]+$')
_REGISTRY: Dict[str, WeightEntry] = {}


def _check_source(name: str, i: Union[int, str], s: Source) -> None:
    where = f'entry {name!r} source {i}'
    if s.kind not in SOURCE_KINDS:
        raise ValueError(f'{where}: kind {s.kind!r} unknown; allowed: {list(SOURCE_KINDS)}')
    if not s.where or not s.file or '/' in s.file or s.file in ('.', '..'):
        raise ValueError(f'{where}: where and file must be non-empty and file a plain file name, got '
                         f'where={s.where!r}, file={s.file!r}')
    if s.sha256 is not None and not (8 <= len(s.sha256) <= 64 and _HEX.match(s.sha256)):
        raise ValueError(f'{where}: sha256 must be 8 to 64 lowercase hex digits, got {s.sha256!r}')
    if s.sha384 is not None and not (len(s.sha384) == 96 and _HEX.match(s.sha384)):
        raise ValueError(f'{where}: sha384 must be 96 lowercase hex digits, got {s.sha384!r}')
    if s.family is not None and s.family not in FAMILIES:
        raise ValueError(f'{where}: family {s.family!r} unknown; allowed: {sorted(FAMILIES)}')


def _check(entry: WeightEntry) -> None:
    if not _NAME.match(entry.name) or '..' in entry.name.split('/'):
        raise ValueError(f'entry.name: {entry.name!r} is not a name of /-separated parts made of letters, digits '
                         "and '_.+-'")
    if entry.variant not in VARIANTS:
        raise ValueError(f'entry {entry.name!r}: variant {entry.variant!r} unknown; allowed: {sorted(VARIANTS)}')
    if entry.family not in FAMILIES:
        raise ValueError(f'entry {entry.name!r}: family {entry.family!r} unknown; allowed: {sorted(FAMILIES)}')
    if entry.builds not in BUILDERS:
        raise ValueError(f'entry {entry.name!r}: builds {entry.builds!r} unknown; allowed: {list(BUILDERS)}')
    if not entry.automatic_sources and not entry.note:
        raise ValueError(f'entry {entry.name!r}: no automatic source and no note; allowed: at least one source of '
                         f"kind {[k for k in SOURCE_KINDS if k != 'manual']}, or a note saying how to get the file")
    for i, s in enumerate(entry.sources, 1):
        _check_source(entry.name, i, s)
    for i, s in enumerate(entry.retired, 1):
        _check_source(entry.name, f'{i} (retired)', s)


def register(entry: WeightEntry, replace: bool = False) -> WeightEntry:
    """Add ``entry`` to the registry (``replace=True`` to overwrite a name). Returns it.

    Raises:
        ValueError: a malformed entry, or the name exists and ``replace`` is False.
    """
    _check(entry)
    _ensure_table()
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f'entry.name: {entry.name!r} is already registered; pass replace=True to overwrite it')
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (no error if absent)."""
    _REGISTRY.pop(name, None)


@contextmanager
def registered(*new: WeightEntry) -> Iterator[Tuple[WeightEntry, ...]]:
    """Register entries for the duration of a ``with`` block (tests, one-off mirrors); restores what was there."""
    before = {e.name: _REGISTRY.get(e.name) for e in new}
    try:
        for e in new:
            register(e, replace=True)
        yield new
    finally:
        for name, old in before.items():
            if old is None:
                _REGISTRY.pop(name, None)
            else:
                _REGISTRY[name] = old


_TABLE_LOADED = False


def _ensure_table() -> None:
    global _TABLE_LOADED
    if not _TABLE_LOADED:
        _TABLE_LOADED = True
        for entry in TABLE:  # the known files, registered on first use
            register(entry, replace=True)


def get(name: str) -> WeightEntry:
    """The entry called ``name``.

    Raises:
        ValueError: unknown name (the message lists every known name).
    """
    _ensure_table()
    if name not in _REGISTRY:
        raise ValueError(f'weights: unknown name {name!r}; allowed: {names()}')
    return _REGISTRY[name]


def names() -> List[str]:
    """Every registered name, sorted."""
    _ensure_table()
    return sorted(_REGISTRY)


def entries() -> List[WeightEntry]:
    """Every registered entry, sorted by name."""
    return [_REGISTRY[n] for n in names()]


def name_for(variant: str, pretrained: Union[bool, str]) -> str:
    """The registry name that ``create_dla(variant, pretrained=...)`` means: ``True`` -> ``'<variant>.in1k'``, a tag
    (``'in1k'``, ``'ucbdrive'``, ``'tricks'``) -> ``'<variant>.<tag>'`` (``'<variant>+tricks'``), a full name -> itself.

    Raises:
        ValueError: no such file for this variant (the message lists the ones there are).
    """
    if isinstance(pretrained, str) and pretrained in names():
        return pretrained
    tag = 'in1k' if pretrained is True else pretrained
    name = f'{variant}+tricks' if tag == 'tricks' else f'{variant}.{tag}'
    if isinstance(tag, str) and name in names():
        return name
    mine = [n for n in names() if n.startswith((f'{variant}.', f'{variant}+'))]
    raise ValueError(f'pretrained: no {variant} weights called {pretrained!r}; allowed: '
                     f"{[True] + [n[len(variant) + 1:] for n in mine] + mine}")


def pretrained_path(variant: str, pretrained: Union[bool, str, None], checkpoint_path: Any = None) -> Any:
    """What ``create_dla``/``DLASeg`` load: ``checkpoint_path``, or ``'dlap://<name_for(variant, pretrained)>'`` when
    ``pretrained`` is set (not False/None).

    Raises:
        ValueError: both are given, or no such file for ``variant``.
    """
    if pretrained is False or pretrained is None:
        return checkpoint_path
    if checkpoint_path is not None:
        raise ValueError(f'pretrained: give pretrained or checkpoint_path, not both (got {pretrained!r} and '
                         f'{checkpoint_path!r})')
    return WEIGHTS_SCHEME + name_for(variant, pretrained)
