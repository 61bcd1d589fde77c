"""A loopback HTTP server for the weights tests (127.0.0.1 only, started and stopped by each test).

Serves registered byte strings or files as a real server does: HTTP Range (206/416) and ``If-Range`` (a validator
that is not the current one gets 200 with the whole file), a strong ``ETag`` per content (unless a route turns it off
or sets its own validators), HEAD, redirects and the headers a Hugging Face ``resolve`` endpoint sends. Faults on
demand: throttle, close the connection after N bytes, stall without answering, a wrong ``Content-Range``. Records
every request. The stdlib ``SimpleHTTPRequestHandler`` has no Range support, hence this handler.

Google Drive: ``add_drive`` serves a file id the way Drive does (``drive.google.com/uc?id=`` redirects to
``drive.usercontent.google.com/download``, which answers the file, or for a large file the virus-scan page whose
``download-form`` carries ``id``/``export``/``confirm``/``uuid``). gdown reaches those host names through this server
acting as an HTTPS proxy (``CONNECT``; the test sets ``HTTPS_PROXY``), which terminates TLS with the test certificate
of ``tests/weights/tls/`` (``REQUESTS_CA_BUNDLE`` names its CA; ``tls/make_certs.sh`` regenerates both).
"""
import hashlib
import os
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

TLS = Path(__file__).resolve().parent / 'tls'
CA_BUNDLE = TLS / 'ca.pem'
DRIVE, USERCONTENT = 'drive.google.com', 'drive.usercontent.google.com'


@dataclass
class Route:
    """What one path serves."""

    data: Optional[bytes] = None          # the body (or ``folder`` for a directory tree)
    status: int = 200                      # e.g. 404 to fail
    redirect: Optional[str] = None         # 302 to this path
    drop_after: Optional[int] = None       # close the connection after this many body bytes ...
    drops: int = 1                         # ... on this many requests
    delay: float = 0.0                     # seconds to sleep per 64 KiB (throttle)
    headers: Dict[str, str] = field(default_factory=dict)
    etag: bool = True                      # send a strong ETag of the content (unless ``headers`` has one)
    stall: bool = False                    # read the request, never answer (until the server stops)
    range_shift: int = 0                   # add this to the start a 206's Content-Range announces (a broken server)

    def auto_etag(self) -> Optional[str]:
        """The ETag the server makes up for this content (none when the route sets its own validators)."""
        if not self.etag or 'ETag' in self.headers or 'Last-Modified' in self.headers:
            return None
        return f'"{hashlib.sha256(self.data or b"").hexdigest()[:16]}"'

    def validator(self) -> Optional[str]:
        """What ``If-Range`` must carry for a range to be honoured: the ETag, else Last-Modified."""
        return self.headers.get('ETag') or self.headers.get('Last-Modified') or self.auto_etag()


@dataclass
class Request:
    method: str
    path: str
    range: Optional[str]
    if_range: Optional[str] = None
    host: str = ''


@dataclass
class DriveFile:
    """A file served under a Drive id; ``large`` puts the virus-scan confirmation page in front of it."""

    name: str
    route: Route
    large: bool
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.add('/a.pth', data); srv.url('/a.pth')``."""

    def __init__(self) -> None:
        self.routes: Dict[str, Route] = {}
        self.folders: List[Tuple[str, Path]] = []
        self.drive: Dict[str, DriveFile] = {}
        self.requests: List[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(TLS / 'drive.pem', TLS / 'drive-key.pem')
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            tunnel = ''  # the host of a CONNECT tunnel this connection now carries (TLS)

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                outer._serve(self, head=True)

            def do_GET(self) -> None:
                outer._serve(self, head=False)

            def do_CONNECT(self) -> None:
                outer._tunnel(self)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def __enter__(self) -> 'LoopbackServer':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str = '') -> str:
        return f'http://127.0.0.1:{self.port}{path}'

    def add(self, path: str, data: Union[bytes, Path, str, None] = None, **kwargs) -> str:
        """Serve ``data`` (bytes or a file's bytes) at ``path``; returns its URL."""
        if isinstance(data, (str, Path)):
            data = Path(data).read_bytes()
        self.routes[path] = Route(data=data, **kwargs)
        return self.url(path)

    def add_folder(self, prefix: str, folder: Union[str, Path]) -> str:
        """Serve the files under ``folder`` at ``prefix/<relative path>`` (a cache folder as a mirror)."""
        self.folders.append((prefix.rstrip('/'), Path(folder)))
        return self.url(prefix)

    def add_drive(self, file_id: str, data: bytes, name: str, large: bool = False, **kwargs) -> DriveFile:
        """Serve ``data`` as Drive file ``file_id`` (named ``name``); ``kwargs`` are :class:`Route` fault options of
        the file's response."""
        self.drive[file_id] = DriveFile(name, Route(data=data, **kwargs), large)
        return self.drive[file_id]

    def proxy_env(self) -> Dict[str, str]:
        """The environment under which ``requests`` (so gdown) reaches Drive's hosts through this server."""
        proxy = self.url()
        return dict(HTTPS_PROXY=proxy, https_proxy=proxy, REQUESTS_CA_BUNDLE=str(CA_BUNDLE))

    def gets(self, path: str) -> List[Request]:
        """The GET requests for ``path``."""
        with self._lock:
            return [r for r in self.requests if r.method == 'GET' and r.path == path]

    def _route(self, path: str) -> Optional[Route]:
        if path in self.routes:
            return self.routes[path]
        for prefix, folder in self.folders:
            if path.startswith(prefix + '/'):
                from urllib.parse import unquote

                f = folder / unquote(path[len(prefix) + 1:])
                if f.is_file() and folder.resolve() in f.resolve().parents:
                    return Route(data=f.read_bytes())
        return None

    def _tunnel(self, h: BaseHTTPRequestHandler) -> None:
        """``CONNECT host:443``: answer 200, then speak TLS as that host on the same connection."""
        with self._lock:
            self.requests.append(Request('CONNECT', h.path, None, host=h.path.split(':')[0]))
        h.send_response(200, 'Connection established')
        h.end_headers()
        h.wfile.flush()
        conn = self.tls.wrap_socket(h.connection, server_side=True)
        h.connection, h.tunnel = conn, h.path.split(':')[0]
        h.rfile, h.wfile = conn.makefile('rb'), conn.makefile('wb', buffering=0)
        h.close_connection = False  # the tunnel stays open for the requests inside (a CONNECT may say HTTP/1.0)

    @staticmethod
    def _empty(h: BaseHTTPRequestHandler, code: int, headers: Optional[Dict[str, str]] = None) -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header('Content-Length', '0')
        h.end_headers()

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        with self._lock:
            self.requests.append(Request(h.command, h.path, h.headers.get('Range'), h.headers.get('If-Range'),
                                         getattr(h, 'tunnel', '')))
        if getattr(h, 'tunnel', ''):
            return self._serve_drive(h, head)
        route = self._route(h.path)
        if route is None or route.status != 200:
            code = 404 if route is None else route.status
            return self._empty(h, code)
        if route.redirect:
            return self._empty(h, 302, {'Location': self.url(route.redirect)})
        self._send(h, route, head)

    def _serve_drive(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        """Drive's flow: /uc on drive.google.com redirects; /download on drive.usercontent.google.com answers the
        file, or (a large file without the form's confirm and uuid) the virus-scan page."""
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        f = self.drive.get(query.get('id', ''))
        if f is None or (h.tunnel, url.path) not in ((DRIVE, '/uc'), (USERCONTENT, '/download')):
            return self._empty(h, 404, {'Content-Type': 'text/html; charset=utf-8'})
        if h.tunnel == DRIVE:
            return self._empty(h, 303, {'Location': f"https://{USERCONTENT}/download?id={query['id']}&export=download"})
        if f.large and (query.get('confirm') != 't' or query.get('uuid') != f.uuid):
            page = _warning_page(query['id'], f).encode()
            h.send_response(200)
            h.send_header('Content-Type', 'text/html; charset=utf-8')
            h.send_header('Content-Length', str(len(page)))
            h.end_headers()
            h.wfile.write(page)
            return
        self._send(h, f.route, head, {'Content-Type': 'application/octet-stream',
                                      'Content-Disposition': f'attachment; filename="{f.name}"'})

    def _send(self, h: BaseHTTPRequestHandler, route: Route, head: bool, extra: Optional[Dict[str, str]] = None):
        """The body of ``route`` with Range/If-Range and the route's faults."""
        if route.stall:
            self._closing.wait()
            h.close_connection = True
            return
        data = route.data or b''
        start, end = 0, len(data)
        m = re.match(r'bytes=(\d+)-(\d*)$', h.headers.get('Range') or '')
        if_range = h.headers.get('If-Range')
        if m and (if_range is None or if_range == route.validator() and not if_range.startswith('W/')):
            start = int(m.group(1))
            end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
            if start >= len(data):
                return self._empty(h, 416, {'Content-Range': f'bytes */{len(data)}'})
            h.send_response(206)
            h.send_header('Content-Range', f'bytes {start + route.range_shift}-{end - 1}/{len(data)}')
        else:
            h.send_response(200)
        h.send_header('Content-Length', str(end - start))
        h.send_header('Accept-Ranges', 'bytes')
        etag = route.auto_etag()
        headers = {**({'ETag': etag} if etag else {}), **route.headers, **(extra or {})}
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            self._body(h, route, data, start, end)

    @staticmethod
    def _body(h: BaseHTTPRequestHandler, route: Route, data: bytes, start: int, end: int) -> None:
        drop = None
        if route.drop_after is not None and route.drops > 0:
            route.drops -= 1
            drop = route.drop_after
        sent, pos = 0, start
        try:
            while pos < end:
                n = min(1 << 16, end - pos) if drop is None else min(1 << 16, end - pos, drop - sent)
                if n <= 0:
                    break
                h.wfile.write(data[pos:pos + n])
                h.wfile.flush()
                pos += n
                sent += n
                if route.delay:
                    time.sleep(route.delay)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return
        if drop is not None and pos < end:  # cut the connection mid-body
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _warning_page(file_id: str, f: DriveFile) -> str:
    """Drive's virus-scan warning for a large file, as it serves it (one line; the form is what gdown reads)."""
    hidden = ''.join(f'<input type="hidden" name="{k}" value="{v}">'
                     for k, v in (('id', file_id), ('export', 'download'), ('confirm', 't'), ('uuid', f.uuid)))
    return ''.join([
        '<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>',
        '<meta http-equiv="content-type" content="text/html; charset=utf-8"/></head><body><div class="uc-main">',
        '<div id="uc-text"><p class="uc-warning-caption">Google Drive can\'t scan this file for viruses.</p>',
        f'<p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={file_id}">{f.name}</a> ',
        f'({len(f.route.data or b"") >> 20}M)</span> is too large for Google to scan for viruses. Would you still ',
        f'like to download this file?</p><form id="download-form" action="https://{USERCONTENT}/download" ',
        'method="get"><input type="submit" id="uc-download-link" class="goog-inline-block jfk-button ',
        f'jfk-button-action" value="Download anyway"/>{hidden}</form></div></div><div class="uc-footer">',
        '<hr class="uc-footer-divider"></div></body></html>\n'])


def hub_headers(data: bytes) -> Dict[str, str]:
    """The headers a Hugging Face ``resolve`` endpoint sends (huggingface_hub needs the commit and an ETag)."""
    return {'X-Repo-Commit': '0' * 40, 'ETag': f'"{hashlib.sha256(data).hexdigest()}"'}


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_bytes(path: Union[str, os.PathLike]) -> bytes:
    return Path(path).read_bytes()
