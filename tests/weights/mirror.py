"""A loopback mirror of registry ImageNet weights for host tests: ``with in1k_mirror(tmp, 'dla34') as (env, state)``
serves a random ``<variant>`` state_dict (timm layout) as ``<variant>.in1k/<file>``, where ``<file>`` is the entry's
source with no published hash (so the download is accepted and its sha256 recorded; a random file under a pinned
name would be rejected), and gives the environment that fetches it from there and nowhere else: in this process
(``monkeypatch``) or in a child run through ``python -m tests.weights.hostrun``."""
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest
import torch

from dla_plugins import create_dla
from tests.helpers import subprocess_env
from tests.weights.server import LoopbackServer

# The source of '<variant>.in1k' that has no published hash, per variant the tests serve.
UNPINNED_FILE = {'dla34': 'pytorch_model.bin', 'dla46_c': 'dla46_c-2bfd52c3.pth'}


def served_state(variant: str, seed: int = 1) -> Dict[str, torch.Tensor]:
    """What the mirror serves: ``variant``'s classifier state_dict as a trained file looks, and unlike any fresh init:
    the convolutions of a model initialised under ``seed``, BatchNorm affine parameters and statistics drawn at
    random (a trained network's scale, so a host trains on from it without diverging)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        state = create_dla(variant).state_dict()
        for k, v in state.items():
            if k.endswith('running_var'):
                v.copy_(torch.rand(v.shape) + 0.5)
            elif k.endswith(('running_mean', 'bias')):
                v.copy_(0.1 * torch.randn(v.shape))
            elif v.ndim == 1 and v.is_floating_point():  # BatchNorm weight
                v.copy_(1 + 0.1 * torch.randn(v.shape))
    return {k: v.clone() for k, v in state.items()}


@contextmanager
def files_mirror(tmp: Path, files: Dict[str, bytes], monkeypatch: Optional[pytest.MonkeyPatch] = None
                 ) -> Iterator[dict]:
    """Serve ``files`` (``'<name>/<file>'`` -> bytes) as a ``$DLA_PLUGINS_MIRROR`` on 127.0.0.1; yields the child
    environment that fetches from there and nowhere else (with ``monkeypatch``: set in this process too). Every file
    must have been asked for by the end."""
    with LoopbackServer() as srv:
        for path, data in files.items():
            srv.add(f'/m/{path}', data)
        env = dict(DLA_PLUGINS_MIRROR=srv.url('/m'), DLA_PLUGINS_HOME=str(tmp / 'weights-home'),
                   DLA_PLUGINS_OFFLINE='0', HF_HUB_OFFLINE='0', HF_ENDPOINT='http://127.0.0.1:9',
                   HF_HOME=str(tmp / 'hf'))
        if monkeypatch is not None:
            for k, v in env.items():
                monkeypatch.setenv(k, v)
        yield subprocess_env(**env)
        for path in files:
            assert any(r.path == f'/m/{path}' for r in srv.requests), f'the mirror was never asked for {path}'


@contextmanager
def in1k_mirror(tmp: Path, variant: str = 'dla34', monkeypatch: Optional[pytest.MonkeyPatch] = None
                ) -> Iterator[Tuple[dict, Dict[str, torch.Tensor]]]:
    """Serve :func:`served_state` of ``variant`` on 127.0.0.1; yields (child environment, served state). With
    ``monkeypatch`` the same variables are set in this process too."""
    state, name, file = served_state(variant), f'{variant}.in1k', UNPINNED_FILE[variant]
    buf = io.BytesIO()
    torch.save(state, buf)
    with files_mirror(tmp, {f'{name}/{file}': buf.getvalue()}, monkeypatch) as env:
        yield env, state
