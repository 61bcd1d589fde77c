"""Moving one source's bytes into its ``.part`` file: plain HTTP(S) with a guarded resume, the Hugging Face hub (its
endpoint, token, metadata and cache; the bytes through the same HTTP path) and local files. No cache logic here.

Resume rule: a ``.part`` is continued only with ``If-Range`` and the validator (strong ETag, else Last-Modified) of the
response that wrote it, kept beside it in ``<part>.validator``. A server whose file changed answers 200 with the whole
new file, which replaces the part; a part with no validator is continued (plain ``Range``) only for a source with a
published hash, which catches a splice; otherwise the download starts over.
"""
import errno
import http.client
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping, Optional, Union

from .._version import __version__
from .entry import Source

__all__ = ['SourceFailed', 'Incomplete', 'DISK_ERRNOS', 'is_disk_error', 'reason', 'discard', 'http_get', 'place',
           'hub_file', 'hf_endpoint']

CHUNK = 1 << 20
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors no other source can fix (disk full, quota, file size limit): reported at once, never retried."""


class SourceFailed(Exception):
    """One source failed (the message is the reason shown in the final error)."""


class Incomplete(Exception):
    """The transfer ended before the whole file arrived; ``received`` bytes came in this attempt."""

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received


def is_disk_error(e: BaseException) -> bool:
    """Whether ``e`` is a full disk, an exceeded quota or file size limit."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def reason(e: BaseException, timeout: float) -> str:
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


# ---- the part and its validator -------------------------------------------------------------------------------------

def _validator_path(part: Path) -> Path:
    return part.with_name(part.name + '.validator')


def discard(part: Path) -> None:
    """Delete a part and its validator."""
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)


def _read_validator(part: Path) -> Optional[str]:
    try:
        return _validator_path(part).read_text().strip() or None
    except OSError:
        return None


def _response_validator(resp: http.client.HTTPResponse) -> Optional[str]:
    """The strong ETag of a response, else its Last-Modified (what ``If-Range`` may carry), else None."""
    etag = resp.headers.get('ETag')
    if etag and not etag.startswith('W/'):
        return etag
    return resp.headers.get('Last-Modified')


def _start_fresh(part: Path, validator: Optional[str]) -> None:
    """Drop the old part, then record the new validator before the first byte (a kill leaves a consistent pair)."""
    discard(part)
    if validator:
        from ..files import save_atomic

        save_atomic(validator.encode(), _validator_path(part))


# ---- HTTP ------------------------------------------------------------------------------------------------------------

def _resume_point(part: Path, pinned: bool) -> tuple:
    """(start, validator): where a resume may begin, or 0 when the part may not be continued."""
    start = part.stat().st_size if part.exists() else 0
    validator = _read_validator(part) if start else None
    if start and validator is None and not pinned:
        return 0, None  # nothing says the server still has the file these bytes came from
    return start, validator


def _range_total(resp: http.client.HTTPResponse, part: Path, start: int) -> Optional[int]:
    """The file size a 206 announces; a Content-Range that does not begin at ``start`` deletes the part."""
    content_range = resp.headers.get('Content-Range', '')
    m = re.match(r'bytes (\d+)-\d+/(\d+|\*)$', content_range)
    if not m or int(m.group(1)) != start:
        discard(part)
        raise SourceFailed(f'bad Content-Range {content_range!r} for a resume at {start}; the part is deleted')
    return int(m.group(2)) if m.group(2) != '*' else None


def http_get(url: str, part: Path, timeout: float, progress: bool, desc: str, pinned: bool,
             headers: Optional[Mapping[str, str]] = None) -> None:
    """Download ``url`` into ``part``, resuming a kept part only under the rule of this module.

    Raises:
        Incomplete: the connection ended early (what arrived stays in the part, with its validator).
        SourceFailed: a bad Content-Range (the part is deleted).
        OSError: connection errors (``urllib.error.URLError``) and write errors (a full disk).
    """
    start, validator = _resume_point(part, pinned)
    req = {'User-Agent': f'dla-plugins/{__version__}', **(headers or {})}
    if start:
        req['Range'] = f'bytes={start}-'
        if validator:
            req['If-Range'] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=req), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the part is not a prefix of what the server has now: start over
            discard(part)
            return http_get(url, part, timeout, progress, desc, pinned, headers)
        raise
    with resp:
        if start and resp.status == 206:
            total, mode = _range_total(resp, part, start), 'ab'
        else:  # 200: the whole file (no Range sent, or the validator no longer matches)
            start, mode = 0, 'wb'
            _start_fresh(part, _response_validator(resp))
            length = resp.headers.get('Content-Length')
            total = int(length) if length is not None else None
        received, broken = _stream(resp, part, mode, start, total, progress, desc)
    got = part.stat().st_size
    if broken is not None or (total is not None and got != total):
        why = f' ({reason(broken, timeout)})' if broken is not None and not isinstance(
            broken, http.client.IncompleteRead) else ''
        raise Incomplete(f"connection closed after {got} of {total if total is not None else '?'} bytes{why}",
                         received)


def _stream(resp: http.client.HTTPResponse, part: Path, mode: str, start: int, total: Optional[int], progress: bool,
            desc: str) -> tuple:
    """Append the body to ``part``; returns (bytes received, the read error or None). Write errors propagate."""
    from tqdm.auto import tqdm

    received, broken = 0, None
    with open(part, mode) as f, tqdm(total=total, initial=start, unit='B', unit_scale=True, unit_divisor=1024,
                                     desc=desc, disable=not progress, leave=False) as bar:
        while True:
            try:
                chunk = resp.read(CHUNK)
            except (http.client.HTTPException, OSError) as e:  # IncompleteRead, reset, read timeout
                broken = e
                break
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    return received, broken


# ---- local files and the Hugging Face hub ---------------------------------------------------------------------------

def place(found: Union[str, Path], part: Path, link: bool) -> None:
    """Put a file that exists elsewhere at ``part``: a hard link (the Hugging Face cache's immutable blobs: no second
    copy on disk) or a copy (a local mirror, which a later write to the cache must never change)."""
    real = os.path.realpath(found)
    discard(part)
    if link:
        try:
            os.link(real, part)
            return
        except OSError:
            pass
    shutil.copyfile(real, part)


def hf_endpoint() -> str:
    """``$HF_ENDPOINT`` or the public hub."""
    return (os.environ.get('HF_ENDPOINT') or 'https://huggingface.co').rstrip('/')


def _hub_cache() -> Optional[str]:
    """The Hugging Face cache folder, read now (huggingface_hub reads its environment once, at import)."""
    if os.environ.get('HF_HUB_CACHE'):
        return os.environ['HF_HUB_CACHE']
    return os.path.join(os.environ['HF_HOME'], 'hub') if os.environ.get('HF_HOME') else None


def _hub_reason(e: BaseException, timeout: float) -> str:
    """One line for what huggingface_hub raised, worded as for HTTP sources where it can be."""
    name = type(e).__name__
    status = getattr(getattr(e, 'response', None), 'status_code', None)
    if status:
        return f"HTTP {status} {getattr(e.response, 'reason_phrase', '')}".rstrip()
    if 'Timeout' in name:
        return f'timed out after {timeout:g} s'
    if name == 'ConnectError' and 'refused' in str(e).lower():
        return 'connection refused'
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
    return f'{name}: {msg}' if msg else name


def hub_file(src: Source, part: Path, timeout: float, progress: bool, desc: str, local_only: bool = False) -> None:
    """A hub file. Offline (``local_only``): the Hugging Face cache's copy of the source's revision. Online: one
    metadata request through huggingface_hub (endpoint, token; ``timeout`` seconds, no retries), then the Hugging Face
    cache's copy of the commit the hub names, else the bytes through :func:`http_get` (our timeout, resume rule and
    retries; huggingface_hub's own download retries would ignore them). Plain HTTP when huggingface_hub is not
    installed. The Hugging Face cache is read, never written."""
    try:
        import huggingface_hub as hub
    except ImportError:
        if local_only:
            raise SourceFailed('huggingface_hub is not installed (no Hugging Face cache to look in)') from None
        url = f'{hf_endpoint()}/{src.where}/resolve/{src.revision}/{src.file}'
        return http_get(url, part, timeout, progress, desc, src.pinned)
    cache = _hub_cache()
    if local_only:
        found = hub.try_to_load_from_cache(src.where, src.file, cache_dir=cache, revision=src.revision)
        if not isinstance(found, str):
            raise SourceFailed('not in the Hugging Face cache')
        return place(found, part, link=True)
    url = hub.hf_hub_url(src.where, src.file, revision=src.revision, endpoint=hf_endpoint())
    try:
        meta = hub.get_hf_file_metadata(url, timeout=timeout)
    except Exception as e:  # huggingface_hub raises its own, httpx's and OS errors
        raise SourceFailed(_hub_reason(e, timeout)) from None
    found = meta.commit_hash and hub.try_to_load_from_cache(src.where, src.file, cache_dir=cache,
                                                           revision=meta.commit_hash)
    if isinstance(found, str):
        return place(found, part, link=True)
    from huggingface_hub.utils import build_hf_headers

    same_host = urllib.parse.urlsplit(meta.location).netloc == urllib.parse.urlsplit(url).netloc
    headers = build_hf_headers() if same_host else {}  # the token never leaves the hub
    http_get(meta.location, part, timeout, progress, desc, src.pinned, headers)
