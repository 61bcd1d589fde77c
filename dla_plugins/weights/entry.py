"""What the registry holds: a :class:`WeightEntry` per known file and its :class:`Source` list (data only)."""
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

__all__ = ['Source', 'WeightEntry', 'SOURCE_KINDS', 'BUILDERS']

SOURCE_KINDS = ('url', 'hf', 'gdrive', 'manual')
"""``url``: plain HTTP(S); ``hf``: a Hugging Face hub repo + file; ``gdrive``: a Google Drive file id (needs the
``gdrive`` extra); ``manual``: a page a person downloads from (Baidu with a code, OneDrive), listed in errors only."""
BUILDERS = ('create_dla', 'DLASeg', 'CenterNet')


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
        builds: ``'create_dla'`` (a DLA: classifier or backbone), ``'DLASeg'`` (the checkpoint's whole network) or
            ``'CenterNet'`` (a ctdet detector: the whole network and its heads).
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
