"""mmseg adapter, bad data (docs/errors.md): a missing CamVid data root, an image without labels, a corrupt label
map, the demo's chance-level helper on missing or unreadable labels; and the ``python -m mmseg_ext.*`` entries, whose
bad input is one line on stderr with exit status 2."""
import os
import subprocess
import sys

import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from dla_plugins.tools.errors import run_cli
from mmseg_ext import get_config_file
from mmseg_ext.demo import majority_class_miou
from mmseg_ext.synthetic import write_camvid_layout
from mmseg_ext.train import PROG as TRAIN
from mmseg_ext.train import main as train_main
from tests.helpers import subprocess_env

CITYSCAPES = get_config_file('dla34_idaup_4xb2-80k_cityscapes-512x1024.py')

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]


def _camvid(root: str):
    init_default_scope('mmseg')
    return DATASETS.build(dict(type='CamVidDataset', data_root=root, pipeline=PIPELINE,
                               data_prefix=dict(img_path='images/train', seg_map_path='annotations/train')))


def test_missing_data_root(tmp_path):
    root = str(tmp_path / 'camvid')
    with pytest.raises(FileNotFoundError) as e:
        _camvid(root)
    assert str(e.value) == (f"CamVidDataset: no image folder {os.path.join(root, 'images/train')!r} "
                            f"(data_root={root!r}); expected <data_root>/images/<split>/<name>.png and "
                            f"<data_root>/annotations/<split>/<name>.png")


def test_missing_and_corrupt_label_maps(tmp_path):
    root = write_camvid_layout(str(tmp_path / 'camvid'), dict(train=3), size=(32, 32))
    labels = tmp_path / 'camvid' / 'annotations' / 'train'
    ds = _camvid(root)
    assert len(ds) == 3 and ds[0]['data_samples'].gt_sem_seg.data.shape[-2:] == (32, 32)
    (labels / 'train_00001.png').write_bytes(b'not a png')
    with pytest.raises(RuntimeError) as e:
        ds[1]
    assert str(e.value).startswith(f"CamVidDataset: sample 1 failed to load (image "
                                   f"{str(tmp_path / 'camvid' / 'images' / 'train' / 'train_00001.png')!r}, labels "
                                   f"{str(labels / 'train_00001.png')!r}): ")
    (labels / 'train_00002.png').unlink()
    with pytest.raises(FileNotFoundError) as e:
        _camvid(root)
    assert str(e.value) == (f"CamVidDataset: 1 image(s) without a label map, e.g. "
                            f"{str(labels / 'train_00002.png')!r}")
    with pytest.raises(ValueError) as e:
        majority_class_miou(str(labels / '*.png'))
    assert str(e.value) == f"label map {str(labels / 'train_00001.png')!r}: not a readable 8-bit image"
    with pytest.raises(FileNotFoundError) as e:
        majority_class_miou(str(tmp_path / 'none' / '*.png'))
    assert str(e.value) == f"label_glob: no file matches {str(tmp_path / 'none' / '*.png')!r}"


@pytest.mark.slow  # three fresh processes importing mmseg: 9-15 s each on 2 shared cores
@pytest.mark.parametrize('entry,args,message', [
    ('train', ['missing.py'], "config: no such file 'missing.py'"),
    ('test', [CITYSCAPES, 'missing.pth'], "checkpoint: no such file 'missing.pth'"),
    ('eval_boundary', ['missing', '.'], "PRED_DIR: no such folder 'missing'"),
])
def test_entries_print_bad_input_as_one_line(tmp_path, entry, args, message):
    out = subprocess.run([sys.executable, '-m', f'mmseg_ext.{entry}', *args], cwd=tmp_path, capture_output=True,
                         text=True, env=subprocess_env(), timeout=300)
    assert (out.returncode, out.stderr, out.stdout) == (2, f'python -m mmseg_ext.{entry}: error: {message}\n', '')


def test_bad_options_and_missing_data_are_one_line(tmp_path, monkeypatch, capsys):
    """argparse's errors (no usage block), a --cfg-options pair without '=', and a data folder that does not exist
    (checked before the Runner starts, named by its config key, also inside a ConcatDataset) are one line, status 2."""
    for args, message in (
            (['--launcher', 'torchrun'], "argument --launcher: invalid choice: 'torchrun' (choose from 'none', "
                                         "'pytorch', 'slurm', 'mpi')"),
            (['--cfg-options', 'train_cfg.max_iters'], "argument --cfg-options: KEY=VALUE pairs expected, got "
                                                       "'train_cfg.max_iters'")):
        with pytest.raises(SystemExit) as e:
            train_main([CITYSCAPES, *args])
        assert (e.value.code, capsys.readouterr().err) == (2, f'{TRAIN}: error: {message}\n')
    nowhere = str(tmp_path / 'nowhere')
    args = [CITYSCAPES, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            f'train_dataloader.dataset.data_root={nowhere}']
    assert run_cli(TRAIN, lambda: train_main(args)) == 2
    assert capsys.readouterr().err == (f"{TRAIN}: error: train_dataloader.dataset.data_root: no such folder "
                                       f"{nowhere!r}; set it "
                                       f"with --cfg-options train_dataloader.dataset.data_root=PATH\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli(TRAIN, lambda: train_main([get_config_file('dla34_boundary_bsds500.py')])) == 2
    key = 'train_dataloader.dataset.datasets.0.data_root'
    assert capsys.readouterr().err == (f"{TRAIN}: error: {key}: no such folder 'data/BSR/BSDS500/data/' "
                                       f"(relative to the "
                                       f"working directory {str(tmp_path)!r}); set it with --cfg-options {key}=PATH\n")
    assert not (tmp_path / 'work').exists() and not (tmp_path / 'work_dirs').exists()  # stopped before the Runner


def test_unexpected_errors_keep_their_traceback(capsys):
    def broken(argv):
        raise RuntimeError(f'out of memory with {argv}')

    assert run_cli(TRAIN, lambda: broken(['x'])) == 1
    err = capsys.readouterr().err
    assert err.startswith('Traceback (most recent call last):\n') and "RuntimeError: out of memory with ['x']\n" in err
    assert err.endswith('python -m mmseg_ext.train: unexpected RuntimeError (traceback above)\n')
