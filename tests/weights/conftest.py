"""Every weights test runs against loopback only: a fresh cache, no mirror, downloads on, the Hugging Face endpoint and
cache pointed at nothing real, no proxy, and connections to any non-loopback address refused before they leave the
machine."""
import socket

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

import dla_plugins as dp
from tests.weights.guard import install_loopback_guard

_PROXY_VARS = ('HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE')


@pytest.fixture(autouse=True)
def _loopback_only(tmp_path, monkeypatch):
    for var in ('DLA_PLUGINS_MIRROR', 'DLA_PLUGINS_OFFLINE', 'HF_HUB_OFFLINE', 'DLA_PLUGINS_TIMEOUT', 'HF_HUB_CACHE',
                *_PROXY_VARS, *(v.lower() for v in _PROXY_VARS)):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('DLA_PLUGINS_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    monkeypatch.setenv('HF_ENDPOINT', 'http://127.0.0.1:9')  # the discard port: refused
    install_loopback_guard(monkeypatch.setattr, socket)
    yield


@pytest.fixture(scope='module')
def dla46_files(tmp_path_factory):
    """Real checkpoints of our dla46_c: safetensors bytes and a torch.save .pth (different bytes, same tensors)."""
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in dp.create_dla('dla46_c', num_classes=10).state_dict().items()}
    pth = tmp_path_factory.mktemp('ckpt') / 'dla46_c.pth'
    torch.save(state, pth)
    return dict(safetensors=safetensors_bytes(state), pth=pth.read_bytes(), state=state)
