"""The wheel as users install it: built from the checkout, installed with only ``[timm,bench]`` into a fresh
virtualenv outside the checkout, then smoke-tested there: timm models, every ``dla-plugins`` command, the shipped
configs of both other hosts. The wheel holds the library only (no benchmarks, tests or configs folder)."""
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import distribution, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT

# The fresh venv takes the versions this environment was tested with (pip finds them in its cache/local mirror).
PINNED = ('torch', 'torchvision', 'timm', 'numpy', 'safetensors', 'tqdm', 'huggingface_hub', 'pyyaml', 'fvcore',
          'iopath', 'matplotlib', 'scipy')
SMOKE = """
    import os, sys, torch, timm
    import dla_plugins, timm_ext, d2_ext, mmseg_ext
    assert 'site-packages' in dla_plugins.__file__, dla_plugins.__file__
    assert timm.models.model_entrypoint('dla60x').__module__ == 'timm_ext.dla'
    m = timm.create_model('dla60x', features_only=True, output_stride=16).eval()
    assert m.feature_info.reduction() == [2, 4, 8, 16, 16], m.feature_info.reduction()
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in m(torch.randn(1, 3, 64, 64))]
    assert shapes == [(1, 32, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 4, 4)], shapes
    for adapter, name in ((d2_ext, 'faster_rcnn_dla34_up_1x.yaml'), (d2_ext, 'Base-DLA.yaml'),
                          (mmseg_ext, 'dla34_idaup_4xb2-80k_cityscapes-512x1024.py'),
                          (mmseg_ext, '_base_/models/dla34_idaup.py')):
        path = adapter.get_config_file(name)
        assert os.path.isfile(path) and 'site-packages' in path, path
    print('smoke ok')
"""


def _share(names: tuple[str, ...], into: Path) -> set[str]:
    """Symlink the installed distributions ``names`` and all they require into ``into`` (code and metadata); the
    distributions' names. torch's CUDA build is 5.5 GB with its nvidia-* closure: the fresh venv reads it from this
    environment through a ``.pth`` file instead of installing a second copy (CI's disk is not large enough for
    several), and pip sees it installed."""
    done, todo = set(), list(names)
    while todo:
        dist = distribution(todo.pop())
        name = canonicalize_name(dist.metadata['Name'])
        if name in done:
            continue
        done.add(name)
        todo += [r.name for r in map(Requirement, dist.requires or ())
                 if r.marker is None or r.marker.evaluate({'extra': ''})]
        for top in {Path(f).parts[0] for f in dist.files or ()} - {'..', '__pycache__'}:
            if not (into / top).exists():
                (into / top).symlink_to(dist.locate_file(top))
    return done


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


@pytest.mark.slow
def test_wheel_with_timm_extra_in_a_fresh_venv(tmp_path):
    src = tmp_path / 'src'  # build from a copy: the checkout stays free of build/ and egg-info
    skip = ('.venv', '.git', 'build', 'dist', 'output', '*.egg-info', '__pycache__', '.pytest_cache', '.hypothesis',
            'work_dirs', '.whl')
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip))
    _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', tmp_path / 'dist',
          src])
    (wheel,) = (tmp_path / 'dist').glob('dla_plugins-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {'d2_ext/configs/Base-DLA.yaml', 'd2_ext/configs/retinanet_dla34_up_lazy.py',
            'mmseg_ext/configs/_base_/models/dla34_idaup.py', 'dla_plugins/tools/cli.py'} <= names
    assert not any(n.startswith(('tests/', 'configs/', 'benchmarks/', 'scripts/')) for n in names)

    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', venv])
    py = venv / 'bin' / 'python'
    shared = tmp_path / 'shared'
    shared.mkdir()
    assert {'torch', 'torchvision', 'numpy'} <= _share(('torch', 'torchvision'), shared)
    (site,) = (venv / 'lib').glob('python3.*/site-packages')
    (site / 'shared-torch.pth').write_text(f'{shared}\n')
    pins = tmp_path / 'constraints.txt'
    pins.write_text(''.join(f'{p}=={version(p)}\n' for p in PINNED))
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    _run([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-c', pins, f'{wheel}[timm,bench]'], env=env)

    out = _run([py, '-c', textwrap.dedent(SMOKE)], cwd=tmp_path, env=env)
    assert out.stdout.strip().endswith('smoke ok')
    cli = venv / 'bin' / 'dla-plugins'
    zoo = _run([cli, 'zoo', '--variants', 'dla34,dla46_m'], cwd=tmp_path, env=env)  # GFLOPs: fvcore of [bench]
    assert 'dla34' in zoo.stdout and 'DLA-48-B-m' in zoo.stdout and 'fvcore FlopCountAnalysis' in zoo.stdout
    demo = _run([cli, 'demo', '--variant', 'dla46_c', '--epochs', '1'], cwd=tmp_path, env=env)
    assert '[core] dla46_c on synthetic shapes: loss' in demo.stdout
    _run([py, '-c', 'import torch, timm; torch.save(timm.models.dla.dla46_c().state_dict(), "timm.pth")'],
         cwd=tmp_path, env=env)
    conv = _run([cli, 'convert', 'timm.pth', 'dla46_c.safetensors', '--no-progress'], cwd=tmp_path, env=env)
    assert 'dla46_c DLA, 1000 classes' in conv.stdout and 'loads strictly' in conv.stdout
    exp = _run([cli, 'export', 'dla46_c', '--torchscript', 'm.pt', '--img-size', '32', '--checkpoint',
                'dla46_c.safetensors', '--no-progress'], cwd=tmp_path, env=env)
    assert 'TorchScript matches eager' in exp.stdout
    onnx = subprocess.run([cli, 'export', 'dla46_c', '--onnx', 'm.onnx'], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)  # [export] is not installed: one line names it
    assert onnx.returncode == 2 and onnx.stderr.strip() == (
        "dla-plugins export: error: dla-plugins export --onnx needs onnx, which is not installed: "
        "pip install 'dla-plugins[export]'")
    # detectron2 is not installed there: its entry point says which extra to install, in one line
    d2 = subprocess.run([py, '-m', 'd2_ext.train_net', '--help'], capture_output=True, text=True, cwd=tmp_path,
                        env=env, timeout=300)
    assert d2.returncode == 1 and d2.stderr.strip().splitlines() == [
        "error: d2_ext needs detectron2, which is not installed: pip install 'dla-plugins[detectron2]' and the "
        'sal-detectron2 wheel (docs/install.md)']
