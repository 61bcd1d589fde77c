"""The registry of known DLA weight files: one :class:`WeightEntry` per short name, its :class:`Source` list in
priority order, the layout family and the model it builds. The rows themselves are data, in :mod:`.table`."""
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

__all__ = ['Source', 'WeightEntry', 'SOURCE_KINDS', 'BUILDERS', 'register', 'unregister', 'registered', 'get',
           'names', 'entries', 'name_for', 'pretrained_path']

SOURCE_KINDS = ('url', 'hf', 'gdrive', 'manual')
"""``url``: plain HTTP(S); ``hf``: a Hugging Face hub repo + file; ``gdrive``: a Google Drive file id (needs the
``gdrive`` extra); ``manual``: a page a person downloads from (Baidu with a code, OneDrive), listed in errors only."""
BUILDERS = ('create_dla', 'DLASeg')
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*(/[A-Za-z0-9][A-Za-z0-9_.+-]*)*$')
_HEX = re.compile(r'^[0-9a-f]+$')


@dataclass(frozen=True)
class Source:
    """One place a file can be fetched from.

    Attributes:
        kind: one of :data:`SOURCE_KINDS`.
        where: the URL (``url``, ``manual``), ``owner/repo`` (``hf``) or the file id (``gdrive``).
        file: the file name it delivers (the name in the cache; for ``hf`` also the file in the repo).
        sha256: a published sha256, full or a prefix of at least 8 hex digits (file-name conventions), or None.
        sha384: a published sha384 (OpenVINO's ``model.yml``), or None.
        size: a published size in bytes, or None.
        family: the layout family of this file when it differs from the entry's (a re-saved copy).
        revision: the hub revision (``hf`` only).
        cite: where the location and hash were published.
        note: shown with the source (e.g. a Baidu access code).
    """

    kind: str
    where: str
    file: str
    sha256: Optional[str] = None
    sha384: Optional[str] = None
    size: Optional[int] = None
    family: Optional[str] = None
    revision: str = 'main'
    cite: str = ''
    note: str = ''

    @property
    def pinned(self) -> bool:
        """Whether a published hash or size verifies this source's bytes."""
        return bool(self.sha256 or self.sha384 or self.size)

    @property
    def hash_status(self) -> str:
        """What verifies a download from this source: the published hash, or the sha256 recorded at first download."""
        if self.sha384:
            return 'pinned sha384'
        if self.sha256:
            return 'pinned sha256' if len(self.sha256) == 64 else f'pinned sha256 prefix ({self.sha256})'
        return 'recorded at first download'

    def describe(self) -> str:
        """``kind location`` as errors and logs show it."""
        if self.kind == 'hf':
            rev = '' if self.revision == 'main' else f'@{self.revision}'
            return f'hf {self.where}{rev}/{self.file}'
        return f'{self.kind} {self.where}'


@dataclass(frozen=True)
class WeightEntry:
    """A known weight file: its sources (priority order), layout family and the model it builds.

    Attributes:
        name: the short name (``dla34.in1k``, ``centernet/ctdet_coco_dla_2x``).
        variant: the DLA variant (:func:`dla_plugins.list_variants`).
        family: the layout family (a key of :data:`dla_plugins.checkpoint.detect.FAMILIES`).
        sources: where to fetch it, in priority order (the mirror of ``DLA_PLUGINS_MIRROR`` goes first at fetch time).
        builds: ``'create_dla'`` (a DLA: classifier or backbone) or ``'DLASeg'`` (the checkpoint's whole network).
        model_kwargs: keyword arguments of ``builds`` besides the variant.
        description: what the file is.
        note: why it has fewer than two automatic sources, or other caveats.
    """

    name: str
    variant: str
    family: str
    sources: Tuple[Source, ...]
    builds: str = 'create_dla'
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ''
    note: str = ''

    @property
    def automatic_sources(self) -> Tuple[Source, ...]:
        """The sources fetched without a person (everything but ``manual``)."""
        return tuple(s for s in self.sources if s.kind != 'manual')

    @property
    def hash_status(self) -> str:
        """The first source's hash status (what ``dla-plugins weights list`` shows)."""
        return self.automatic_sources[0].hash_status if self.automatic_sources else 'recorded at first download'

    @property
    def size(self) -> Optional[int]:
        """The first published size among the sources, or None."""
        return next((s.size for s in self.sources if s.size), None)

    def create_model(self, **overrides: Any) -> Any:
        """Build the model this file loads into (``create_dla(variant, **model_kwargs)`` or ``DLASeg``)."""
        kwargs = {**dict(self.model_kwargs), **overrides}
        if self.builds == 'DLASeg':
            from ..seg import DLASeg

            return DLASeg(self.variant, **kwargs)
        from ..factory import create_dla

        return create_dla(self.variant, **kwargs)


_REGISTRY: Dict[str, WeightEntry] = {}


def _check_source(name: str, i: int, s: Source) -> None:
    from ..checkpoint.detect import FAMILIES

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
    from ..checkpoint.detect import FAMILIES
    from ..variants import VARIANTS

    if not _NAME.match(entry.name) or '..' in entry.name.split('/'):
        raise ValueError(f'entry.name: {entry.name!r} is not a name of /-separated parts made of letters, digits '
                         "and '_.+-'")
    if entry.variant not in VARIANTS:
        raise ValueError(f'entry {entry.name!r}: variant {entry.variant!r} unknown; allowed: {sorted(VARIANTS)}')
    if entry.family not in FAMILIES:
        raise ValueError(f'entry {entry.name!r}: family {entry.family!r} unknown; allowed: {sorted(FAMILIES)}')
    if entry.builds not in BUILDERS:
        raise ValueError(f'entry {entry.name!r}: builds {entry.builds!r} unknown; allowed: {list(BUILDERS)}')
    if not entry.automatic_sources:
        raise ValueError(f'entry {entry.name!r}: needs at least one source that is not manual')
    for i, s in enumerate(entry.sources, 1):
        _check_source(entry.name, i, s)


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
        from . import table  # noqa: F401  (registers the known files on first use)


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
    from ..files import WEIGHTS_SCHEME

    return WEIGHTS_SCHEME + name_for(variant, pretrained)
