"""A loopback mirror of registry weights for host tests: ``with dla34_mirror(tmp) as (env, state): ...`` serves a
random dla34 ImageNet state_dict (timm layout) as ``dla34.in1k/pytorch_model.bin`` (the hub file with no published
hash, so its sha256 is recorded at this first download) and gives the environment a child process needs to fetch it
from there and nowhere else (``python -m tests.weights.hostrun``)."""
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Tuple

import torch

from dla_plugins import create_dla
from tests.helpers import subprocess_env
from tests.weights.server import LoopbackServer

NAME, FILE = 'dla34.in1k', 'pytorch_model.bin'


def served_state(seed: int = 1) -> Dict[str, torch.Tensor]:
    """What the mirror serves: a dla34 classifier's state_dict with every tensor random (not the init's values)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in create_dla('dla34').state_dict().items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith('running_var'):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g)
    return out


@contextmanager
def dla34_mirror(tmp: Path, **extra: str) -> Iterator[Tuple[dict, Dict[str, torch.Tensor]]]:
    """Serve :func:`served_state` on 127.0.0.1; yields (child environment, served state)."""
    state = served_state()
    buf = io.BytesIO()
    torch.save(state, buf)
    with LoopbackServer() as srv:
        srv.add(f'/m/{NAME}/{FILE}', buf.getvalue())
        env = subprocess_env(DLA_PLUGINS_MIRROR=srv.url('/m'), DLA_PLUGINS_HOME=str(tmp / 'weights-home'),
                             DLA_PLUGINS_OFFLINE='0', HF_HUB_OFFLINE='0', HF_ENDPOINT='http://127.0.0.1:9',
                             HF_HOME=str(tmp / 'hf'), **extra)
        yield env, state
        assert any(r.path == f'/m/{NAME}/{FILE}' for r in srv.requests), 'the mirror was never asked'
