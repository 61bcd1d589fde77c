"""Two CPU processes under ``torchrun`` (gloo) train the shipped SyncBN config through ``mmseg_ext.train``.

DDP with ``find_unused_parameters=False`` fails on the second iteration if any parameter got no gradient, so a few
iterations that finish prove the model is DDP-clean.
"""
import socket
import subprocess
import sys

import pytest
import torch

from mmseg_ext.demo import CITYSCAPES_CONFIG, tiny_config
from mmseg_ext.synthetic import write_cityscapes_layout
from tests.helpers import subprocess_env  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_gloo_training_is_ddp_clean(tmp_path):
    root = write_cityscapes_layout(str(tmp_path / 'cityscapes'), dict(train=8, val=2))
    cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp_path / 'work'), max_iters=4, batch_size=2, arch='dla46_c')
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    cfg_path = str(tmp_path / 'ddp.py')
    cfg.dump(cfg_path)
    env = subprocess_env(OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(_free_port()),
           '-m', 'mmseg_ext.train', cfg_path, '--launcher', 'pytorch',
           '--cfg-options', 'env_cfg.dist_cfg.backend=gloo', 'find_unused_parameters=False', 'log_level=INFO']
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=str(tmp_path))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-3000:]
    assert 'SyncBN norm_cfg(s) -> BN' in log and 'DeviceAwareDDP' in log
    ckpt = torch.load(tmp_path / 'work' / 'iter_4.pth', map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 4
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
