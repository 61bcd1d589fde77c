"""A loopback HTTP server for the weights tests (127.0.0.1 only, started and stopped by each test).

Serves registered byte strings or files with HTTP Range (206/416), HEAD, redirects and the headers a Hugging Face
``resolve`` endpoint sends; can throttle a response or close the connection after N bytes; records every request.
The stdlib ``SimpleHTTPRequestHandler`` has no Range support, hence this handler.
"""
import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union


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


@dataclass
class Request:
    method: str
    path: str
    range: Optional[str]


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.add('/a.pth', data); srv.url('/a.pth')``."""

    def __init__(self) -> None:
        self.routes: Dict[str, Route] = {}
        self.folders: List[Tuple[str, Path]] = []
        self.requests: List[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                outer._serve(self, head=True)

            def do_GET(self) -> None:
                outer._serve(self, head=False)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

    def __enter__(self) -> 'LoopbackServer':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
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

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        with self._lock:
            self.requests.append(Request(h.command, h.path, h.headers.get('Range')))
        route = self._route(h.path)
        if route is None or route.status != 200:
            code = 404 if route is None else route.status
            h.send_response(code, 'Not Found' if code == 404 else None)
            h.send_header('Content-Length', '0')
            h.end_headers()
            return
        if route.redirect:
            h.send_response(302)
            h.send_header('Location', self.url(route.redirect))
            h.send_header('Content-Length', '0')
            h.end_headers()
            return
        data = route.data or b''
        start, end = 0, len(data)
        m = re.match(r'bytes=(\d+)-(\d*)$', h.headers.get('Range') or '')
        if m:
            start = int(m.group(1))
            end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
            if start >= len(data):
                h.send_response(416)
                h.send_header('Content-Range', f'bytes */{len(data)}')
                h.send_header('Content-Length', '0')
                h.end_headers()
                return
            h.send_response(206)
            h.send_header('Content-Range', f'bytes {start}-{end - 1}/{len(data)}')
        else:
            h.send_response(200)
        h.send_header('Content-Length', str(end - start))
        h.send_header('Accept-Ranges', 'bytes')
        for k, v in route.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if head:
            return
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
        except (BrokenPipeError, ConnectionResetError):
            return
        if drop is not None and pos < end:  # cut the connection mid-body
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


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
