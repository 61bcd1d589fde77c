"""Google Drive sources through gdown (the ``gdrive`` extra): Drive's download and virus-scan confirmation flow.

- Version floor :data:`GDOWN_FLOOR`, checked at use: gdown 6.3.0 is the first with ``timeout=``/``retries=`` (a stalled
  transfer must end, or it holds the cache lock and every other rank waits) and a checked resume (206 and
  ``If-Range``). Drive's current large-file page (a ``download-form`` to drive.usercontent.google.com whose hidden
  ``id``/``export``/``confirm``/``uuid`` fields make the link) is read since gdown 5.1.0.
- Same timeout as every source; gdown itself does not retry (a refused or stalled Drive costs one attempt), the fetcher
  retries a transfer that broke after bytes arrived, as for HTTP sources.
- No resume across attempts or calls: each attempt starts over in a private temporary folder beside the part, removed
  afterwards with whatever gdown left in it.
- Proxies and CA bundles come from the environment, as in any ``requests`` program (``HTTPS_PROXY``,
  ``REQUESTS_CA_BUNDLE``). gdown's cookie file is not used.
"""
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Tuple

from .entry import Source
from .transfer import Incomplete, SourceFailed, discard, is_disk_error

__all__ = ['GDOWN_FLOOR', 'gdrive_file']

GDOWN_FLOOR = '6.3.0'


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r'\d+', text.split('+')[0])[:3])


def _gdown() -> Any:
    """The gdown module, at the floor version or newer.

    Raises:
        SourceFailed: gdown is missing or older than :data:`GDOWN_FLOOR`.
    """
    try:
        import gdown
    except ImportError:
        raise SourceFailed("needs gdown, which is not installed: pip install 'dla-plugins[gdrive]'") from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version('gdown')
    except PackageNotFoundError:
        found = getattr(gdown, '__version__', '0')
    if _version(found) < _version(GDOWN_FLOOR):
        raise SourceFailed(f'needs gdown>={GDOWN_FLOOR} (download timeouts; Drive\'s confirmation page), found '
                           f"{found}: pip install -U 'dla-plugins[gdrive]'")
    return gdown


def _reason(e: BaseException, timeout: float) -> str:
    """One line for what gdown or requests raised."""
    response = getattr(e, 'response', None)
    if response is not None and type(e).__name__ == 'HTTPError':
        return f'HTTP {response.status_code} {response.reason}'
    text = str(e)
    if 'Timeout' in type(e).__name__ or 'timed out' in text.lower():
        return f'timed out after {timeout:g} s'
    if 'refused' in text.lower():
        return 'connection refused'
    first = text.strip().splitlines()[0] if text.strip() else ''
    return f'{type(e).__name__}: {first}' if first else type(e).__name__


def gdrive_file(src: Source, part: Path, timeout: float, progress: bool) -> None:
    """Download Drive file ``src.where`` to ``part`` with gdown, from the start.

    Raises:
        SourceFailed: gdown missing or too old, or the download failed before any byte arrived.
        Incomplete: the transfer broke after some bytes (the fetcher may try again from the start).
        OSError: a write error (full disk).
    """
    gdown = _gdown()
    discard(part)
    tmp = Path(tempfile.mkdtemp(prefix='.gdrive-', dir=part.parent))
    try:
        try:
            out = gdown.download(id=src.where, output=str(tmp / src.file), quiet=not progress, use_cookies=False,
                                 resume=False, timeout=timeout, retries=0)
        except Exception as e:  # gdown raises its own and requests' errors
            if is_disk_error(e):
                raise
            received = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())
            if received:
                raise Incomplete(f'transfer broke after {received} bytes ({_reason(e, timeout)})', received) from None
            raise SourceFailed(_reason(e, timeout)) from None
        if not out or not os.path.isfile(out):
            raise SourceFailed('gdown could not download it (no file)')
        os.replace(out, part)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
