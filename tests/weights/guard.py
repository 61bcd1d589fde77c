"""Refuse every connection (and name lookup) that is not loopback: the weights tests never reach the internet."""
import socket as _socket
from typing import Any, Callable

_LOOPBACK_NAMES = ('localhost', '::1')


def _is_loopback(host: Any) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host.startswith('127.') or host in _LOOPBACK_NAMES


def install_loopback_guard(setattr_: Callable[[Any, str, Any], None] = setattr, socket: Any = _socket) -> None:
    """Patch ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` to refuse non-loopback addresses."""
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, \
        socket.getaddrinfo

    def check(sock: Any, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(111, f'test guard: no connection to {address[0]}')

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(-2, f'test guard: no name lookup of {host}')
        return real_getaddrinfo(host, *args, **kwargs)

    setattr_(socket.socket, 'connect', connect)
    setattr_(socket.socket, 'connect_ex', connect_ex)
    setattr_(socket, 'getaddrinfo', getaddrinfo)
