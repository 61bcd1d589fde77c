"""Every weights test runs against loopback only: a fresh cache, no mirror, downloads on, the Hugging Face endpoint and
cache pointed at nothing real, and connections to any non-loopback address refused before they leave the machine."""
import socket

import pytest

from tests.weights.guard import install_loopback_guard


@pytest.fixture(autouse=True)
def _loopback_only(tmp_path, monkeypatch):
    for var in ('DLA_PLUGINS_MIRROR', 'DLA_PLUGINS_OFFLINE', 'HF_HUB_OFFLINE', 'DLA_PLUGINS_TIMEOUT', 'HF_HUB_CACHE'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('DLA_PLUGINS_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:9')  # the discard port: refused
    install_loopback_guard(monkeypatch.setattr, socket)
    yield
