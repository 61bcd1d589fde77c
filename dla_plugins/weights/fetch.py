"""Fetching registry files: cache, mirror, failover, resume, lock and verification.

Cache layout (``$DLA_PLUGINS_HOME``, default ``~/.cache/dla-plugins/weights``)::

    <home>/<name>/<file>          the verified file (its source's file name, e.g. dla34.in1k/model.safetensors)
    <home>/<name>/record.json     where it came from, its sha256, size and stat stamp, and how it was verified
    <home>/<name>/.part-<id>-<file>  a partial download from one source (+ ``.validator``: its ETag/Last-Modified)
    <home>/<name>/.lock           the file lock held by every write: concurrent processes download once

A mirror (``$DLA_PLUGINS_MIRROR``: an http(s) base URL or a local folder) uses the same layout, so a cache folder
served by any web server, or copied to an air-gapped machine, is a mirror: ``<mirror>/<name>/<file>``, tried first for
each of the entry's file names. ``DLA_PLUGINS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) turns downloads off: only the
cache (and the Hugging Face cache, for hub files) is used.

A cached file is re-hashed when its (size, mtime_ns, inode) stamp differs from the one in its record; :func:`verify`
always re-hashes.
"""
import dataclasses
import errno
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..files import WEIGHTS_SCHEME as SCHEME
from .gdrive import gdrive_file
from .registry import Source, WeightEntry, get
from .transfer import CHUNK, Incomplete, SourceFailed, discard, http_get, hub_file, is_disk_error, place, reason

__all__ = ['WeightsError', 'CacheRecord', 'cache_dir', 'offline_reason', 'cache_record', 'cached_path', 'fetch',
           'resolve', 'verify', 'describe_load', 'load_line', 'mirror_sources', 'SCHEME',
           'ENV_HOME', 'ENV_MIRROR', 'ENV_OFFLINE',
           'ENV_TIMEOUT']

ENV_HOME = 'DLA_PLUGINS_HOME'
ENV_MIRROR = 'DLA_PLUGINS_MIRROR'
ENV_OFFLINE = 'DLA_PLUGINS_OFFLINE'
ENV_TIMEOUT = 'DLA_PLUGINS_TIMEOUT'
RECORD = 'record.json'
_TRUE = ('1', 'true', 'yes', 'on')
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
log = logging.getLogger('dla_plugins.weights')


class WeightsError(RuntimeError):
    """A registry file could not be fetched or failed verification; the message lists every source and why."""


@dataclass(frozen=True)
class CacheRecord:
    """The sidecar of a cached file: what it is, where it came from, how it was verified, and the stat stamp
    ``(size, mtime_ns, inode)`` it had when last hashed (None in records of older versions: re-hashed once)."""

    name: str
    file: str
    sha256: str
    size: int
    source: str
    hash_status: str
    fetched_at: str
    stamp: Optional[Tuple[int, int, int]] = None

    @property
    def path(self) -> Path:
        return cache_dir() / self.name / self.file


def cache_dir() -> Path:
    """The cache root: ``$DLA_PLUGINS_HOME`` or ``~/.cache/dla-plugins/weights``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / '.cache' / 'dla-plugins' / 'weights').expanduser()


def offline_reason() -> Optional[str]:
    """``'DLA_PLUGINS_OFFLINE=1'`` / ``'HF_HUB_OFFLINE=1'`` when downloads are off, else None."""
    for var in (ENV_OFFLINE, 'HF_HUB_OFFLINE'):
        if os.environ.get(var, '').strip().lower() in _TRUE:
            return f'{var}={os.environ[var]}'
    return None


def _timeout(timeout: Optional[float]) -> float:
    return float(timeout if timeout is not None else os.environ.get(ENV_TIMEOUT) or 30)


def cache_record(name: str) -> Optional[CacheRecord]:
    """The sidecar record of ``name``'s cached file, or None when nothing is cached (no hashing)."""
    path = cache_dir() / name / RECORD
    try:
        data = json.loads(path.read_text())
        fields = {f.name: data[f.name] for f in dataclasses.fields(CacheRecord)
                  if f.name in data or f.default is dataclasses.MISSING}
        if fields.get('stamp') is not None:
            fields['stamp'] = tuple(int(x) for x in fields['stamp'])
        return CacheRecord(**fields)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_path(name: str) -> Optional[str]:
    """The cached file of ``name`` if it and its record exist (not re-hashed: :func:`verify` does that)."""
    rec = cache_record(name)
    return str(rec.path) if rec is not None and rec.path.is_file() else None


def _stamp(path: Path) -> Tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _hashes(path: Path, sha384: bool = False) -> Tuple[str, Optional[str]]:
    h256, h384 = hashlib.sha256(), hashlib.sha384() if sha384 else None
    with open(path, 'rb') as f:
        while chunk := f.read(CHUNK):
            h256.update(chunk)
            if h384 is not None:
                h384.update(chunk)
    return h256.hexdigest(), h384.hexdigest() if h384 is not None else None


def _check_pins(path: Path, src: Source) -> str:
    """Verify ``path`` against ``src``'s published size/hashes; returns its full sha256.

    Raises:
        SourceFailed: a size or hash differs from the published one.
    """
    size = path.stat().st_size
    if src.size is not None and size != src.size:
        raise SourceFailed(f'size mismatch: published {src.size} bytes, got {size}')
    sha256, sha384 = _hashes(path, sha384=src.sha384 is not None)
    if src.sha256 is not None and not sha256.startswith(src.sha256):
        raise SourceFailed(f'sha256 mismatch: published {src.sha256}, got {sha256[:len(src.sha256)]}')
    if src.sha384 is not None and sha384 != src.sha384:
        raise SourceFailed(f'sha384 mismatch: published {src.sha384[:16]}..., got {sha384[:16]}...')
    return sha256


def _check_readable(path: Path) -> None:
    """A file with no published hash must at least be a checkpoint (not an HTML page, not truncated)."""
    from ..files import CheckpointError, read_checkpoint

    try:
        read_checkpoint(path)
    except CheckpointError as e:
        raise SourceFailed(str(e).replace(f'{str(path)!r}', 'the download').replace('checkpoint: ', '', 1)) from None


def _check_file(path: Path, src: Source) -> str:
    """The pins of ``src``, or (none published) that ``path`` reads as a checkpoint; returns its sha256."""
    sha256 = _check_pins(path, src)
    if not src.pinned:
        _check_readable(path)
    return sha256


def mirror_sources(entry: WeightEntry, base: Optional[str] = None) -> Tuple[Source, ...]:
    """The mirror's candidates for ``entry``: ``<base>/<name>/<file>`` for each of its file names, in source order,
    each verified like the first source of that file name. ``base`` defaults to ``$DLA_PLUGINS_MIRROR``."""
    base = (os.environ.get(ENV_MIRROR, '') if base is None else base).strip()
    if not base:
        return ()
    out, seen = [], set()
    for src in entry.sources:  # manual sources too: a mirror can serve a file no one can download automatically
        if src.file in seen:
            continue
        seen.add(src.file)
        if re.match(r'^https?://', base):
            where = f"{base.rstrip('/')}/{urllib.parse.quote(entry.name)}/{urllib.parse.quote(src.file)}"
        else:
            folder = urllib.parse.urlparse(base).path if base.startswith('file://') else base
            where = str(Path(folder).expanduser() / entry.name / src.file)
        out.append(dataclasses.replace(src, kind='mirror', where=where, cite=f'{ENV_MIRROR}={base}', note=''))
    return tuple(out)


# ---- one source -----------------------------------------------------------------------------------------------------

def _part_path(folder: Path, src: Source) -> Path:
    sid = hashlib.sha256(src.describe().encode()).hexdigest()[:10]
    return folder / f'.part-{sid}-{src.file}'


def _transfer(src: Source, part: Path, timeout: float, progress: bool, desc: str, local_only: bool) -> None:
    """One attempt at ``src`` into ``part``."""
    if src.kind == 'hf':
        hub_file(src, part, timeout, progress, desc, local_only=local_only)
    elif src.kind == 'gdrive':
        gdrive_file(src, part, timeout, progress)
    elif src.kind == 'mirror' and not re.match(r'^https?://', src.where):
        if not os.path.isfile(src.where):
            raise SourceFailed('no such file')
        place(src.where, part, link=False)
    else:
        http_get(src.where, part, timeout, progress, desc, src.pinned)


def _download(entry: WeightEntry, src: Source, folder: Path, timeout: float, progress: bool, retries: int,
              local_only: bool = False) -> Tuple[Path, str]:
    """Fetch ``src`` into its .part file and verify it; returns (part path, sha256).

    A transfer that broke after some bytes arrived is tried again (resumed where the resume rule allows) up to
    ``retries`` times; one that brought nothing (refused, stalled, an error status) fails at once.

    Raises:
        SourceFailed: this source failed (the reason).
        OSError: a write found no room (:func:`transfer.is_disk_error`; the part is deleted).
    """
    part = _part_path(folder, src)
    desc = f'{entry.name} ({src.kind})'
    resumed = part.exists() and part.stat().st_size > 0
    attempt = 0
    while True:
        try:
            _transfer(src, part, timeout, progress, desc, local_only)
            break
        except Incomplete as e:
            if attempt < retries and e.received > 0:
                attempt += 1
                log.warning('%s: %s from %s; trying again (%d/%d)', entry.name, e, src.describe(), attempt, retries)
                resumed = True
                continue
            kept = '; the part is kept for a resume' if part.exists() else ''
            raise SourceFailed(f'{e}{kept}') from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            if is_disk_error(e):  # no other source can fix it: the fetch stops (the part is deleted)
                discard(part)
                raise
            raise SourceFailed(reason(e, timeout)) from None
    try:
        sha256 = _check_file(part, src)
    except SourceFailed:
        discard(part)  # never resume from bytes that failed verification
        if resumed and src.kind in ('url', 'mirror', 'hf'):  # the kept part may have been stale: one clean try
            return _download(entry, src, folder, timeout, progress, retries=0, local_only=local_only)
        raise
    return part, sha256


# ---- cache (every write under the lock) ------------------------------------------------------------------------------

@contextmanager
def _locked(folder: Path, read_only_ok: bool) -> Iterator[bool]:
    """Hold ``<folder>/.lock`` (waiting while another process holds it); yields whether the cache may be written:
    False when the folder is read-only and ``read_only_ok`` (offline: a read-only cache still serves verified files).

    Raises:
        OSError: the folder cannot be written and ``read_only_ok`` is False.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / '.lock'))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info('%s: another process is writing it; waiting for %s', folder.name, folder / '.lock')
            lock.acquire()
    except OSError as e:
        if e.errno not in _READ_ONLY or not read_only_ok:
            raise
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _write_record(rec: CacheRecord) -> None:
    from ..files import save_atomic

    data = dataclasses.asdict(rec)
    save_atomic(json.dumps(data, indent=1).encode(), cache_dir() / rec.name / RECORD)


def _trusted(entry: WeightEntry) -> Optional[CacheRecord]:
    """The record of ``entry``'s cached file if the file's stat stamp is the recorded one (no hashing, no lock)."""
    rec = cache_record(entry.name)
    try:
        return rec if rec is not None and rec.stamp is not None and _stamp(rec.path) == rec.stamp else None
    except OSError:
        return None


def _rehashed(entry: WeightEntry, writable: bool) -> Optional[CacheRecord]:
    """Re-hash ``entry``'s cached file against its record (a changed stamp is recorded when it still matches), or
    verify and record a file placed by hand; None if nothing is cached. Call under the lock.

    Raises:
        WeightsError: the cached file differs from its record or the placed file from the published one.
    """
    rec = cache_record(entry.name)
    if rec is None or not rec.path.is_file():
        return _placed_by_hand(entry, writable)
    stamp = _stamp(rec.path)
    sha256 = _hashes(rec.path)[0] if stamp[0] == rec.size else None
    if sha256 != rec.sha256:
        what = f'sha256 {sha256}' if sha256 else f'{stamp[0]} bytes'
        raise WeightsError(f'weights: cached file {str(rec.path)!r} of {entry.name!r} does not match its record '
                           f'(recorded sha256 {rec.sha256}, {rec.size} bytes; found {what})')
    if rec.stamp != stamp and writable:
        rec = dataclasses.replace(rec, stamp=stamp)
        _write_record(rec)
    return rec


def _placed_by_hand(entry: WeightEntry, writable: bool) -> Optional[CacheRecord]:
    """A file placed under ``<home>/<name>/<file>`` with no record: verified against the published hash of that file
    name (or it must read as a checkpoint), then recorded."""
    folder = cache_dir() / entry.name
    for src in entry.sources:
        path = folder / src.file
        if not path.is_file():
            continue
        try:
            sha256 = _check_file(path, src)
        except SourceFailed as e:
            raise WeightsError(f'weights: file {str(path)!r} placed in the cache for {entry.name!r} is not '
                               f'the published file: {e}') from None
        stamp = _stamp(path)
        rec = CacheRecord(entry.name, src.file, sha256, stamp[0], 'placed in the cache by hand',
                          src.hash_status if src.pinned else 'recorded at first use', _now(), stamp)
        if writable:
            _write_record(rec)
        return rec
    return None


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


def _install(entry: WeightEntry, src: Source, part: Path, sha256: str) -> CacheRecord:
    """Move a verified download into place (atomic rename), write its record and remove every other part."""
    folder = cache_dir() / entry.name
    old = cache_record(entry.name)
    final = folder / src.file
    with open(part, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    discard(part)  # its validator
    if old is not None and old.file != src.file:
        (folder / old.file).unlink(missing_ok=True)
    status = src.hash_status if src.pinned else 'recorded at first download'
    stamp = _stamp(final)
    rec = CacheRecord(entry.name, src.file, sha256, stamp[0], src.describe(), status, _now(), stamp)
    _write_record(rec)
    for leftover in folder.glob('.part-*'):  # parts of sources that failed: a success leaves none
        leftover.unlink(missing_ok=True)
    for tmp in folder.glob('.gdrive-*'):
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


def _manual_lines(entry: WeightEntry, folder: Path) -> List[str]:
    return [f'  download by hand: {s.where} ({s.note}) and save it as {folder / s.file}'
            for s in entry.sources if s.kind == 'manual']


def _offline_fetch(entry: WeightEntry, off: str, timeout: float, writable: bool) -> str:
    """Install a hub file from the Hugging Face cache (it counts as a cache). Call under the lock."""
    folder = cache_dir() / entry.name
    tried = []
    for src in (s for s in entry.sources if s.kind == 'hf' and writable):
        try:
            part, sha256 = _download(entry, src, folder, timeout, False, 0, local_only=True)
            return str(_install(entry, src, part, sha256).path)
        except (SourceFailed, OSError) as e:
            tried.append(f'{src.describe()}: {e}')
    lines = [f'weights: {entry.name!r} is not in the cache ({folder}) and downloads are off ({off}); run '
             f'`dla-plugins weights fetch {entry.name}` where there is a network and copy {cache_dir()}, or unset '
             f"{off.split('=')[0]}"]
    lines += [f'  {t}' for t in tried]
    raise WeightsError('\n'.join(lines))


def _from_sources(entry: WeightEntry, timeout: float, progress: bool, retries: int) -> str:
    """The mirror, then every source in order, failing over on any error. Call under the lock."""
    folder = cache_dir() / entry.name
    failures = []
    for src in mirror_sources(entry) + entry.automatic_sources:
        try:
            log.info('%s: fetching from %s', entry.name, src.describe())
            part, sha256 = _download(entry, src, folder, timeout, progress, retries)
            rec = _install(entry, src, part, sha256)
        except SourceFailed as e:
            log.warning('%s: %s failed: %s', entry.name, src.describe(), e)
            failures.append(f'{src.describe()}: {e}')
            continue
        except OSError as e:
            if not is_disk_error(e):
                raise
            raise WeightsError(f'weights: could not write {entry.name!r} to {folder}: {e.strerror} '
                               f'({errno.errorcode.get(e.errno, e.errno)}); free space there or set {ENV_HOME} to a '
                               'folder on a disk with room (not retried)') from None
        log.info('%s: %s (%s) -> %s', entry.name, src.describe(), rec.hash_status, rec.path)
        return str(rec.path)
    lines = [f'weights: could not fetch {entry.name!r}; tried {len(failures)} source(s):' if entry.automatic_sources
             else f'weights: {entry.name!r} has no automatic source ({entry.note}):']
    lines += [f'  {i}. {f}' for i, f in enumerate(failures, 1)]
    lines += _manual_lines(entry, folder)
    if not mirror_sources(entry):
        lines.append(f'  (a mirror holding {entry.name}/<file> can be named with {ENV_MIRROR})')
    raise WeightsError('\n'.join(lines))


def fetch(name: str, progress: bool = True, timeout: Optional[float] = None, retries: int = 2) -> str:
    """The local path of registry file ``name``, downloaded and verified on first use.

    Order: the cache (trusted while the file's stat stamp is the recorded one; re-hashed when it changed); else, under
    a file lock (concurrent processes download once; every cache write holds it), the mirror of
    ``$DLA_PLUGINS_MIRROR`` and then every source of the entry in priority order, failing over on any error (refused,
    HTTP error, timeout, size/hash mismatch, not a checkpoint). A transfer that broke after some bytes is tried again
    up to ``retries`` times, resumed only while the server's validator still matches (``If-Range``); a later call
    resumes a kept ``.part`` the same way. Files with no published hash get their sha256 recorded at the first
    download. A full disk stops the fetch at once.

    Args:
        name: a registry name (:func:`dla_plugins.weights.names`).
        progress: show a tqdm bar per download.
        timeout: seconds per connection/read, for every source (default ``$DLA_PLUGINS_TIMEOUT`` or 30).
        retries: further attempts of one source after a transfer broke mid-file, before moving to the next.

    Raises:
        ValueError: unknown name.
        WeightsError: offline and not cached; every source failed (the message lists each and why); no room on the
            cache's disk; or the cached file differs from its record (offline only; online it is fetched again).
    """
    entry = get(name)
    timeout = _timeout(timeout)
    rec = _trusted(entry)
    if rec is not None:
        return str(rec.path)
    off = offline_reason()
    with _locked(cache_dir() / entry.name, read_only_ok=bool(off)) as writable:
        try:
            rec = _trusted(entry) or _rehashed(entry, writable)
        except WeightsError as e:
            if off:
                raise
            log.warning('%s; fetching it again', e)
            bad = cache_record(entry.name)
            for path in [cache_dir() / entry.name / RECORD] + ([bad.path] if bad else []):
                path.unlink(missing_ok=True)
            rec = None
        if rec is not None:
            return str(rec.path)
        if off:
            return _offline_fetch(entry, off, timeout, writable)
        return _from_sources(entry, timeout, progress, retries)


def resolve(uri: str, progress: bool = True) -> str:
    """``'dlap://NAME'`` -> the local path of registry file NAME (fetched if needed).

    Raises:
        ValueError: not a ``dlap://`` URI, or an unknown name.
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME) or len(uri) == len(SCHEME):
        raise ValueError(f"uri: expected '{SCHEME}NAME', got {uri!r}")
    return fetch(uri[len(SCHEME):], progress=progress)


def verify(name: str) -> CacheRecord:
    """Re-hash ``name``'s cached file against its record (and its published hash, where one exists), whatever its
    stamp says.

    Raises:
        WeightsError: not cached, or it differs.
    """
    entry = get(name)
    folder = cache_dir() / name
    rec = None
    if folder.is_dir():
        with _locked(folder, read_only_ok=True) as writable:
            rec = _rehashed(entry, writable)
    if rec is None:
        raise WeightsError(f'weights: {name!r} is not cached ({folder}); run `dla-plugins weights fetch {name}`')
    for src in entry.sources:
        if src.file == rec.file and src.pinned:
            try:
                _check_pins(rec.path, src)
            except SourceFailed as e:
                raise WeightsError(f'weights: cached file {str(rec.path)!r} of {name!r}: {e}') from None
            break
    return rec


def load_line(name: str, loaded: int, skipped: Sequence[str], into: str) -> str:
    """:func:`describe_load` for cached file ``name``, with the source and hash status of its cache record."""
    rec = cache_record(name)
    return describe_load(name, rec.source if rec else 'the cache', rec.hash_status if rec else 'no record', loaded,
                         skipped, into)


def describe_load(name: str, source: str, hash_status: str, loaded: Optional[int] = None,
                  skipped: Optional[Union[Mapping[str, str], Sequence[str]]] = None, into: str = '') -> str:
    """The one log line a host prints when it loads registry weights: name, source, hash status, what loaded and
    what was skipped (key -> reason mapping or key list; the first few keys are named)."""
    parts = [f'weights {name}: from {source} ({hash_status})']
    if loaded is not None:
        parts.append(f"loaded {loaded} tensors{f' into {into}' if into else ''}")
    if skipped is not None:
        keys: Iterable[str] = list(skipped)
        keys = list(keys)
        shown = ', '.join(keys[:4]) + (', ...' if len(keys) > 4 else '')
        parts.append(f'skipped {len(keys)}' + (f' ({shown})' if keys else ''))
    return '; '.join(parts)
