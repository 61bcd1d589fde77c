"""Fetching registry files: cache, mirror, failover, resume, lock and verification.

Cache layout (``$DLA_PLUGINS_HOME``, default ``~/.cache/dla-plugins/weights``)::

    <home>/<name>/<file>          the verified file (its source's file name, e.g. dla34.in1k/model.safetensors)
    <home>/<name>/record.json     where it came from, its sha256 and size and how they were verified
    <home>/<name>/.part-<id>-<file>  a partial download from one source (resumed with HTTP Range)
    <home>/<name>/.lock           the file lock: concurrent processes download once

A mirror (``$DLA_PLUGINS_MIRROR``: an http(s) base URL or a local folder) uses the same layout, so a cache folder
served by any web server, or copied to an air-gapped machine, is a mirror: ``<mirror>/<name>/<file>``, tried first for
each of the entry's file names. ``DLA_PLUGINS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) turns downloads off: only the
cache (and the Hugging Face cache, for hub files) is used.
"""
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .._version import __version__
from ..files import WEIGHTS_SCHEME as SCHEME
from .registry import Source, WeightEntry, get

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
_CHUNK = 1 << 20
log = logging.getLogger('dla_plugins.weights')


class WeightsError(RuntimeError):
    """A registry file could not be fetched or failed verification; the message lists every source and why."""


class _SourceFailed(Exception):
    """One source failed (the message is the reason shown in the final error)."""


@dataclass(frozen=True)
class CacheRecord:
    """The sidecar of a cached file: what it is, where it came from, how it was verified."""

    name: str
    file: str
    sha256: str
    size: int
    source: str
    hash_status: str
    fetched_at: str

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
        return CacheRecord(**{f.name: data[f.name] for f in dataclasses.fields(CacheRecord)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_path(name: str) -> Optional[str]:
    """The cached file of ``name`` if it and its record exist (not re-hashed: :func:`verify` does that)."""
    rec = cache_record(name)
    return str(rec.path) if rec is not None and rec.path.is_file() else None


def _hashes(path: Path, sha384: bool = False) -> Tuple[str, Optional[str]]:
    h256, h384 = hashlib.sha256(), hashlib.sha384() if sha384 else None
    with open(path, 'rb') as f:
        while chunk := f.read(_CHUNK):
            h256.update(chunk)
            if h384 is not None:
                h384.update(chunk)
    return h256.hexdigest(), h384.hexdigest() if h384 is not None else None


def _check_pins(path: Path, src: Source) -> str:
    """Verify ``path`` against ``src``'s published size/hashes; returns its full sha256.

    Raises:
        _SourceFailed: a size or hash differs from the published one.
    """
    size = path.stat().st_size
    if src.size is not None and size != src.size:
        raise _SourceFailed(f'size mismatch: published {src.size} bytes, got {size}')
    sha256, sha384 = _hashes(path, sha384=src.sha384 is not None)
    if src.sha256 is not None and not sha256.startswith(src.sha256):
        raise _SourceFailed(f'sha256 mismatch: published {src.sha256}, got {sha256[:len(src.sha256)]}')
    if src.sha384 is not None and sha384 != src.sha384:
        raise _SourceFailed(f'sha384 mismatch: published {src.sha384[:16]}..., got {sha384[:16]}...')
    return sha256


def _check_readable(path: Path) -> None:
    """A file with no published hash must at least be a checkpoint (not an HTML page, not truncated)."""
    from ..files import CheckpointError, read_checkpoint

    try:
        read_checkpoint(path)
    except CheckpointError as e:
        raise _SourceFailed(str(e).replace(f'{str(path)!r}', 'the download').replace('checkpoint: ', '', 1)) from None


# ---- transports -----------------------------------------------------------------------------------------------------

def _reason(e: BaseException, timeout: float) -> str:
    """One line saying why a request failed."""
    if isinstance(e, urllib.error.HTTPError):
        return f'HTTP {e.code} {e.reason}'
    inner = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(inner, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(inner, (socket.timeout, TimeoutError)):
        return f'timed out after {timeout:g} s'
    if isinstance(inner, ConnectionResetError):
        return 'connection reset'
    return f'{type(inner).__name__}: {inner}'


class _Incomplete(Exception):
    """The connection ended before the whole file arrived (what did arrive stays in the .part file)."""


def _http(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    from tqdm.auto import tqdm


    start = part.stat().st_size if part.exists() else 0
    headers = {'User-Agent': f'dla-plugins/{__version__}'}
    if start:
        headers['Range'] = f'bytes={start}-'
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # our part is not a prefix of what the server has now: start over
            part.unlink()
            return _http(url, part, timeout, progress, desc)
        raise
    with resp:
        total = None
        if start and resp.status == 206:
            m = re.match(r'bytes (\d+)-\d+/(\d+|\*)', resp.headers.get('Content-Range', ''))
            if not m or int(m.group(1)) != start:
                raise _SourceFailed(f"bad Content-Range {resp.headers.get('Content-Range')!r} for a resume at {start}")
            total = int(m.group(2)) if m.group(2) != '*' else None
            mode = 'ab'
        else:  # 200: a fresh download (the server ignored our Range, or there was none)
            start, mode = 0, 'wb'
            length = resp.headers.get('Content-Length')
            total = int(length) if length is not None else None
        with open(part, mode) as f, tqdm(total=total, initial=start, unit='B', unit_scale=True, unit_divisor=1024,
                                         desc=desc, disable=not progress, leave=False) as bar:
            broken = None
            try:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:  # IncompleteRead, reset, read timeout
                broken = e
            finally:
                f.flush()
                os.fsync(f.fileno())
    got = part.stat().st_size
    if broken is not None or (total is not None and got != total):
        why = f' ({_reason(broken, timeout)})' if broken is not None and not isinstance(
            broken, http.client.IncompleteRead) else ''
        raise _Incomplete(f"connection closed after {got} of {total if total is not None else '?'} bytes{why}")


def _hf_endpoint() -> str:
    return (os.environ.get('HF_ENDPOINT') or 'https://huggingface.co').rstrip('/')


def _place(found: Union[str, Path], part: Path, link: bool) -> None:
    """Put a file that exists elsewhere at ``part``: a hard link (the Hugging Face cache's immutable blobs: no second
    copy on disk) or a copy (a local mirror, which a later write to the cache must never change)."""
    real = os.path.realpath(found)
    part.unlink(missing_ok=True)
    if link:
        try:
            os.link(real, part)
            return
        except OSError:
            pass
    shutil.copyfile(real, part)


def _hf(src: Source, part: Path, timeout: float, progress: bool, desc: str, local_only: bool = False) -> None:
    """A hub file through huggingface_hub (its cache, auth and endpoint), or plain HTTP when it is not installed."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        if local_only:
            raise _SourceFailed('huggingface_hub is not installed (no Hugging Face cache to look in)') from None
        return _http(f'{_hf_endpoint()}/{src.where}/resolve/{src.revision}/{src.file}', part, timeout, progress, desc)
    hub_cache = os.environ.get('HF_HUB_CACHE') or (os.path.join(os.environ['HF_HOME'], 'hub')
                                                   if os.environ.get('HF_HOME') else None)
    try:  # endpoint and cache read now (huggingface_hub reads its environment once, at import)
        found = hf_hub_download(src.where, src.file, revision=src.revision, local_files_only=local_only,
                                endpoint=_hf_endpoint(), etag_timeout=timeout, cache_dir=hub_cache)
    except Exception as e:  # huggingface_hub raises its own, httpx's and OS errors
        if local_only and type(e).__name__ == 'LocalEntryNotFoundError':
            raise _SourceFailed('not in the Hugging Face cache') from None
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise _SourceFailed(f'{type(e).__name__}: {msg}' if msg else type(e).__name__) from None
    _place(found, part, link=True)


def _gdrive(src: Source, part: Path, progress: bool) -> None:
    try:
        import gdown
    except ImportError:
        raise _SourceFailed("needs gdown, which is not installed: pip install 'dla-plugins[gdrive]'") from None
    try:
        out = gdown.download(id=src.where, output=str(part), quiet=not progress, resume=True)
    except Exception as e:  # gdown raises its own and requests' errors
        raise _SourceFailed(f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}') from None
    if not out or not part.is_file():
        raise _SourceFailed('gdown could not download it (no file)')


def mirror_sources(entry: WeightEntry, base: Optional[str] = None) -> Tuple[Source, ...]:
    """The mirror's candidates for ``entry``: ``<base>/<name>/<file>`` for each of its file names, in source order,
    each verified like the first source of that file name. ``base`` defaults to ``$DLA_PLUGINS_MIRROR``."""
    base = (os.environ.get(ENV_MIRROR, '') if base is None else base).strip()
    if not base:
        return ()
    out, seen = [], set()
    for src in entry.automatic_sources:
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


def _download(entry: WeightEntry, src: Source, folder: Path, timeout: float, progress: bool, retries: int,
              local_only: bool = False) -> Tuple[Path, str]:
    """Fetch ``src`` into its .part file and verify it; returns (part path, sha256)."""
    part = _part_path(folder, src)
    desc = f'{entry.name} ({src.kind})'
    resumed = part.exists() and part.stat().st_size > 0
    attempt = 0
    while True:
        try:
            if src.kind == 'hf':
                _hf(src, part, timeout, progress, desc, local_only=local_only)
            elif src.kind == 'gdrive':
                _gdrive(src, part, progress)
            elif src.kind == 'mirror' and not re.match(r'^https?://', src.where):
                if not os.path.isfile(src.where):
                    raise _SourceFailed('no such file')
                _place(src.where, part, link=False)
            else:
                _http(src.where, part, timeout, progress, desc)
            break
        except _Incomplete as e:
            if attempt < retries:
                attempt += 1
                log.warning('%s: %s from %s; resuming (%d/%d)', entry.name, e, src.describe(), attempt, retries)
                resumed = True
                continue
            raise _SourceFailed(f'{e}; the part is kept for a resume') from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise _SourceFailed(_reason(e, timeout)) from None
    try:
        sha256 = _check_pins(part, src)
        if not src.pinned:
            _check_readable(part)
    except _SourceFailed:
        part.unlink(missing_ok=True)  # never resume from bytes that failed verification
        if resumed and src.kind in ('url', 'mirror', 'hf'):  # the kept part may have been stale: one clean try
            return _download(entry, src, folder, timeout, progress, retries=0, local_only=local_only)
        raise
    return part, sha256


# ---- cache ----------------------------------------------------------------------------------------------------------

def _write_record(rec: CacheRecord) -> None:
    from ..files import save_atomic

    save_atomic(json.dumps(dataclasses.asdict(rec), indent=1).encode(), cache_dir() / rec.name / RECORD)


def _check_cached(entry: WeightEntry) -> Optional[CacheRecord]:
    """The verified cached file of ``entry`` (re-hashed against its record), or None if there is none.

    A file placed by hand under ``<home>/<name>/<file>`` (no record yet) is verified against the published hash of
    that file name, or must be a readable checkpoint, and then gets a record.

    Raises:
        WeightsError: the cached file differs from its record or from the published hash.
    """
    folder = cache_dir() / entry.name
    rec = cache_record(entry.name)
    if rec is not None and rec.path.is_file():
        size = rec.path.stat().st_size
        sha256 = _hashes(rec.path)[0] if size == rec.size else None
        if sha256 != rec.sha256:
            what = f'sha256 {sha256}' if sha256 else f'{size} bytes'
            raise WeightsError(f'weights: cached file {str(rec.path)!r} of {entry.name!r} does not match its record '
                               f'(recorded sha256 {rec.sha256}, {rec.size} bytes; found {what})')
        return rec
    for src in entry.automatic_sources:
        path = folder / src.file
        if path.is_file():
            try:
                sha256 = _check_pins(path, src)
                if not src.pinned:
                    _check_readable(path)
            except _SourceFailed as e:
                raise WeightsError(f'weights: file {str(path)!r} placed in the cache for {entry.name!r} is not '
                                   f'the published file: {e}') from None
            rec = CacheRecord(entry.name, src.file, sha256, path.stat().st_size, 'placed in the cache by hand',
                              src.hash_status if src.pinned else 'recorded at first use', _now())
            try:
                _write_record(rec)
            except OSError:
                pass  # a read-only cache still serves the file
            return rec
    return None


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


def _install(entry: WeightEntry, src: Source, part: Path, sha256: str) -> CacheRecord:
    """Move a verified download into place (atomic rename) and write its record."""
    folder = cache_dir() / entry.name
    old = cache_record(entry.name)
    final = folder / src.file
    with open(part, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    if old is not None and old.file != src.file:
        (folder / old.file).unlink(missing_ok=True)
    status = src.hash_status if src.pinned else 'recorded at first download'
    rec = CacheRecord(entry.name, src.file, sha256, final.stat().st_size, src.describe(), status, _now())
    _write_record(rec)
    return rec


def _manual_lines(entry: WeightEntry, folder: Path) -> List[str]:
    return [f'  download by hand: {s.where} ({s.note}) and save it as {folder / s.file}'
            for s in entry.sources if s.kind == 'manual']


def _offline_fetch(entry: WeightEntry, reason: str, timeout: float) -> str:
    folder = cache_dir() / entry.name
    hub = [s for s in entry.sources if s.kind == 'hf']
    tried = []
    for src in hub:  # the Hugging Face cache counts as a cache
        try:
            folder.mkdir(parents=True, exist_ok=True)
            part, sha256 = _download(entry, src, folder, timeout, False, 0, local_only=True)
            return str(_install(entry, src, part, sha256).path)
        except (_SourceFailed, OSError) as e:
            tried.append(f'{src.describe()}: {e}')
    lines = [f'weights: {entry.name!r} is not in the cache ({folder}) and downloads are off ({reason}); run '
             f'`dla-plugins weights fetch {entry.name}` where there is a network and copy {cache_dir()}, or unset '
             f"{reason.split('=')[0]}"]
    lines += [f'  {t}' for t in tried]
    raise WeightsError('\n'.join(lines))


def fetch(name: str, progress: bool = True, timeout: Optional[float] = None, retries: int = 2) -> str:
    """The local path of registry file ``name``, downloaded and verified on first use.

    Order: the verified cache; else (under a file lock, so concurrent processes download once) the mirror of
    ``$DLA_PLUGINS_MIRROR`` and then every source of the entry in priority order, failing over on any error
    (refused, 404, timeout, size/hash mismatch, not a checkpoint). A broken connection resumes (HTTP Range) up to
    ``retries`` times, and a later call resumes the kept ``.part``. Files with no published hash get their sha256
    recorded at the first download and checked on every later use.

    Args:
        name: a registry name (:func:`dla_plugins.weights.names`).
        progress: show a tqdm bar per download.
        timeout: seconds per connection/read (default ``$DLA_PLUGINS_TIMEOUT`` or 30).
        retries: resumes of one source after a broken connection before moving to the next.

    Raises:
        ValueError: unknown name.
        WeightsError: offline and not cached; every source failed (the message lists each and why); or the cached
            file differs from its record (offline only; online it is fetched again).
    """
    entry = get(name)
    timeout = _timeout(timeout)
    off = offline_reason()
    if off:
        rec = _check_cached(entry)
        return str(rec.path) if rec is not None else _offline_fetch(entry, off, timeout)
    try:  # the common case, without the lock: a verified cache (DDP ranks do not queue to re-hash)
        rec = _check_cached(entry)
        if rec is not None:
            return str(rec.path)
    except WeightsError:
        pass  # handled under the lock
    from filelock import FileLock, Timeout

    folder = cache_dir() / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / '.lock'))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info('%s: another process is downloading it; waiting for %s', name, folder / '.lock')
        lock.acquire()
    try:
        try:
            rec = _check_cached(entry)
        except WeightsError as e:
            log.warning('%s; fetching it again', e)
            bad = cache_record(entry.name)
            for path in [folder / RECORD] + ([bad.path] if bad else []):
                path.unlink(missing_ok=True)
            rec = None
        if rec is not None:
            return str(rec.path)
        sources = mirror_sources(entry) + entry.automatic_sources
        failures = []
        for src in sources:
            try:
                log.info('%s: fetching from %s', name, src.describe())
                part, sha256 = _download(entry, src, folder, timeout, progress, retries)
            except _SourceFailed as e:
                log.warning('%s: %s failed: %s', name, src.describe(), e)
                failures.append(f'{src.describe()}: {e}')
                continue
            rec = _install(entry, src, part, sha256)
            log.info('%s: %s (%s) -> %s', name, src.describe(), rec.hash_status, rec.path)
            return str(rec.path)
        lines = [f'weights: could not fetch {name!r}; tried {len(failures)} source(s):']
        lines += [f'  {i}. {f}' for i, f in enumerate(failures, 1)]
        lines += _manual_lines(entry, folder)
        if not mirror_sources(entry):
            lines.append(f'  (a mirror holding {name}/<file> can be named with {ENV_MIRROR})')
        raise WeightsError('\n'.join(lines))
    finally:
        lock.release()


def resolve(uri: str, progress: bool = True) -> str:
    """``'dlap://NAME'`` -> the local path of registry file NAME (fetched if needed).

    Raises:
        ValueError: not a ``dlap://`` URI, or an unknown name.
    """
    if not isinstance(uri, str) or not uri.startswith(SCHEME) or len(uri) == len(SCHEME):
        raise ValueError(f"uri: expected '{SCHEME}NAME', got {uri!r}")
    return fetch(uri[len(SCHEME):], progress=progress)


def verify(name: str) -> CacheRecord:
    """Re-hash ``name``'s cached file against its record (and its published hash, where one exists).

    Raises:
        WeightsError: not cached, or it differs.
    """
    entry = get(name)
    rec = _check_cached(entry)
    if rec is None:
        raise WeightsError(f'weights: {name!r} is not cached ({cache_dir() / name}); '
                           f'run `dla-plugins weights fetch {name}`')
    for src in entry.automatic_sources:
        if src.file == rec.file and src.pinned:
            try:
                _check_pins(rec.path, src)
            except _SourceFailed as e:
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
