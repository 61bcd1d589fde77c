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
    """What the mirror serves: ``variant``'s classifier state_dict with every float tensor random (not init values)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in create_dla(variant).state_dict().items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith('running_var'):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g)
    return out


@contextmanager
def in1k_mirror(tmp: Path, variant: str = 'dla34', monkeypatch: Optional[pytest.MonkeyPatch] = None
                ) -> Iterator[Tuple[dict, Dict[str, torch.Tensor]]]:
    """Serve :func:`served_state` of ``variant`` on 127.0.0.1; yields (child environment, served state). With
    ``monkeypatch`` the same variables are set in this process too."""
    state, name, file = served_state(variant), f'{variant}.in1k', UNPINNED_FILE[variant]
    buf = io.BytesIO()
    torch.save(state, buf)
    with LoopbackServer() as srv:
        srv.add(f'/m/{name}/{file}', buf.getvalue())
        env = dict(DLA_PLUGINS_MIRROR=srv.url('/m'), DLA_PLUGINS_HOME=str(tmp / 'weights-home'),
                   DLA_PLUGINS_OFFLINE='0', HF_HUB_OFFLINE='0', HF_ENDPOINT='http://127.0.0.1:9',
                   HF_HOME=str(tmp / 'hf'))
        if monkeypatch is not None:
            for k, v in env.items():
                monkeypatch.setenv(k, v)
        yield subprocess_env(**env), state
        assert any(r.path == f'/m/{name}/{file}' for r in srv.requests), 'the mirror was never asked'
