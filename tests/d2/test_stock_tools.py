"""detectron2's own tools with our configs, run as docs/detectron2.md says: ``python -m d2_ext.run TOOL ARGS`` for
``train_net.py``, ``plain_train_net.py`` and ``analyze_model.py`` (the sal-detectron2 wheel installs them as the
``tools`` package), ``lazyconfig_train_net.py`` as is. The data: synthetic shapes in COCO's layout where detectron2's
builtin ``coco_2017_train``/``coco_2017_val`` look for it (``$DETECTRON2_DATASETS/coco``), so the tools run unchanged.
"""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.modeling import build_model

import d2_ext
from d2_ext.data import write_shapes_coco
from tests.helpers import subprocess_env
from tests.weights.mirror import in1k_mirror

TOOLS = os.path.dirname(importlib.util.find_spec('tools').origin)  # sal-detectron2's stock tools/
TINY = ['MODEL.WEIGHTS', '', 'MODEL.DEVICE', 'cpu', 'MODEL.DLAP.ARCH', 'dla46_c', 'MODEL.DLAP.NORM', 'BN',
        'MODEL.DLAP.FREEZE_AT', '0',
        'INPUT.MIN_SIZE_TRAIN', '(64,)', 'INPUT.MAX_SIZE_TRAIN', '64', 'INPUT.MIN_SIZE_TEST', '64',
        'INPUT.MAX_SIZE_TEST', '64', 'SOLVER.IMS_PER_BATCH', '2', 'SOLVER.MAX_ITER', '3', 'SOLVER.STEPS', '()',
        'DATALOADER.NUM_WORKERS', '0', 'SEED', '1']  # seeded: 3 iterations from scratch must still predict boxes


def coco_layout(root, splits=(('train2017', 8, 0), ('val2017', 4, 1)), size: int = 64) -> str:
    """``root`` as ``DETECTRON2_DATASETS`` holding ``coco/<split>`` and ``coco/annotations/instances_<split>.json``
    ((split, images, seed) each, ``size`` px shape images); the json lists COCO's 80 thing categories (detectron2's
    builtin metadata insists), the shapes use the first four ids. Returns ``str(root)``."""
    os.makedirs(root / 'coco' / 'annotations')
    for split, n, seed in splits:
        with open(write_shapes_coco(str(root / 'stage' / split), n, size=(size, size), seed=seed)) as f:
            data = json.load(f)
        shutil.move(str(root / 'stage' / split / 'images'), str(root / 'coco' / split))
        data['categories'] = [dict(id=c['id'], name=c['name']) for c in COCO_CATEGORIES if c['isthing']]
        with open(root / 'coco' / 'annotations' / f'instances_{split}.json', 'w') as f:
            json.dump(data, f)
    return str(root)


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    """8 + 4 shape images of 64 px in COCO's layout (:func:`coco_layout`)."""
    return coco_layout(tmp_path_factory.mktemp('datasets'))


def _run(args, datasets, cwd, env=None):
    """A fresh process, stdout and stderr together; returns (returncode, output). With ``env`` (a loopback weights
    mirror's) the tool runs through tests/weights/hostrun.py, whose sockets reach loopback only."""
    args = ['-m', 'tests.weights.hostrun', *args] if env is not None else args
    out = subprocess.run([sys.executable, *args], env=dict(env or subprocess_env(), DETECTRON2_DATASETS=datasets),
                         cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    return out.returncode, out.stdout


# The shipped DLA-34 configs as they are (ImageNet weights by name, FrozenBN, stem + level2 frozen), on 64 px images
# for 2 iterations.
SMALL = ['MODEL.DEVICE', 'cpu', 'INPUT.MIN_SIZE_TRAIN', '(64,)', 'INPUT.MAX_SIZE_TRAIN', '64', 'INPUT.MIN_SIZE_TEST',
         '64', 'INPUT.MAX_SIZE_TEST', '64', 'SOLVER.IMS_PER_BATCH', '2', 'SOLVER.MAX_ITER', '2', 'SOLVER.STEPS', '()',
         'DATALOADER.NUM_WORKERS', '0']


def _assert_imagenet_loaded(out, out_dir, env, served, prefix='backbone.bottom_up.dla.'):
    """One weights line naming the mirror; after training, the frozen stem and every FrozenBN tensor are the served
    ones, and the trained level5 conv is not."""
    n = sum(1 for k in served if not k.startswith('fc.') and not k.endswith('num_batches_tracked'))
    lines = [line for line in out.splitlines() if 'weights dla34.in1k: ' in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"weights dla34.in1k: from mirror {env['DLA_PLUGINS_MIRROR']}/dla34.in1k/pytorch_model.bin (recorded at first "
        f'download); loaded {n} tensors into DLA(dla34); '
        'skipped 2 (fc.weight, fc.bias)'), lines
    final = torch.load(os.path.join(out_dir, 'model_final.pth'), weights_only=True)['model']
    fixed = [k for k in served if not k.endswith('num_batches_tracked') and (
        k.startswith(('base_layer.', 'level0.', 'level1.', 'level2.')) or 'running_' in k)]
    assert len(fixed) > 40 and all(torch.equal(final[prefix + k], served[k]) for k in fixed)
    assert not torch.equal(final[prefix + 'level5.root.conv.weight'], served['level5.root.conv.weight'])


@pytest.mark.slow
def test_stock_train_net_loads_shipped_imagenet_weights_by_name(datasets, tmp_path):
    """``MODEL.WEIGHTS: "dlap://dla34.in1k"`` as shipped, no file placed by hand: fetched from the mirror."""
    out_dir = str(tmp_path / 'out')
    with in1k_mirror(tmp_path, 'dla34') as (env, served):
        rc, out = _run(['-m', 'd2_ext.run', os.path.join(TOOLS, 'train_net.py'),
                        '--config-file', d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml'), *SMALL,
                        'OUTPUT_DIR', out_dir], datasets, tmp_path, env)
    assert rc == 0, out[-3000:]
    _assert_imagenet_loaded(out, out_dir, env, served)


@pytest.mark.slow
def test_stock_lazyconfig_train_net_loads_shipped_imagenet_weights_by_name(datasets, tmp_path):
    """``train.init_checkpoint = 'dlap://dla34.in1k'`` as shipped."""
    out_dir = str(tmp_path / 'out')
    with in1k_mirror(tmp_path, 'dla34') as (env, served):
        rc, out = _run([os.path.join(TOOLS, 'lazyconfig_train_net.py'),
                        '--config-file', d2_ext.get_config_file('faster_rcnn_dla34_fpn_lazy.py'),
                        'train.device=cpu', 'train.max_iter=2', f'train.output_dir={out_dir}',
                        'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
                        'dataloader.test.num_workers=0',
                        'dataloader.train.mapper.augmentations.0.short_edge_length=[64]',
                        'dataloader.train.mapper.augmentations.0.max_size=64',
                        'dataloader.test.mapper.augmentations.0.short_edge_length=64',
                        'dataloader.test.mapper.augmentations.0.max_size=64'], datasets, tmp_path, env)
    assert rc == 0, out[-3000:]
    _assert_imagenet_loaded(out, out_dir, env, served)


def _bbox_ap(output):
    """The bbox AP of the last ``copypaste:`` block detectron2 prints after an evaluation."""
    lines = output.splitlines()
    task = max(i for i, line in enumerate(lines) if line.endswith('copypaste: Task: bbox'))
    return float(lines[task + 2].rsplit('copypaste: ', 1)[1].split(',')[0])


def _metrics(output_dir):
    with open(os.path.join(output_dir, 'metrics.json')) as f:
        return [json.loads(line) for line in f]


def test_get_cfg_and_import_leave_detectron2_defaults_alone():
    """``d2_ext.get_cfg()`` is detectron2's defaults + ``MODEL.DLAP``; importing d2_ext changes no default."""
    from detectron2.config import get_cfg

    cfg = d2_ext.get_cfg()
    assert cfg.MODEL.DLAP.ARCH == 'dla34' and cfg.MODEL.DLAP.NECK.NODE_TYPE == 'conv'
    assert 'DLAP' not in get_cfg().MODEL
    cfg.merge_from_file(d2_ext.get_config_file('retinanet_dla34_up_1x.yaml'))
    assert cfg.MODEL.BACKBONE.NAME == 'build_dlap_up_backbone' and cfg.MODEL.META_ARCHITECTURE == 'RetinaNet'


@pytest.mark.slow
def test_stock_tool_without_d2_ext_names_it(datasets, tmp_path):
    """Without the runner, detectron2's train_net stops at our first ``_BASE_``, and the path says what is missing."""
    rc, out = _run([os.path.join(TOOLS, 'train_net.py'), '--config-file',
                    d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml'), 'OUTPUT_DIR', str(tmp_path)],
                   datasets, tmp_path)
    assert rc == 1
    assert out.rstrip().endswith("FileNotFoundError: [Errno 2] No such file or directory: "
                                 "'/@import-d2_ext/detectron2-model-zoo/Base-RCNN-FPN.yaml'"), out[-2000:]


@pytest.mark.slow
def test_stock_train_net_trains_and_evaluates(datasets, tmp_path):
    out_dir = str(tmp_path / 'out')
    rc, out = _run(['-m', 'd2_ext.run', os.path.join(TOOLS, 'train_net.py'),
                    '--config-file', d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml'), *TINY,
                    'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'OUTPUT_DIR', out_dir], datasets, tmp_path)
    assert rc == 0, out[-3000:]
    with open(os.path.join(out_dir, 'config.yaml')) as f:
        dlap = yaml.safe_load(f)['MODEL']['DLAP']
    assert dlap['ARCH'] == 'dla46_c' and dlap['NORM'] == 'BN'
    train = [m for m in _metrics(out_dir) if 'total_loss' in m]
    assert train[-1]['iteration'] == 2 and all(math.isfinite(m['total_loss']) for m in train)
    final = torch.load(os.path.join(out_dir, 'model_final.pth'), weights_only=True)
    assert final['iteration'] == 2 and 'backbone.bottom_up.dla.level5.root.conv.weight' in final['model']
    assert 0.0 <= _bbox_ap(out) <= 100.0  # DefaultTrainer's final COCOEvaluator run on coco_2017_val


@pytest.mark.slow
def test_stock_train_net_evaluates_in_two_spawned_processes(datasets, tmp_path):
    """``--num-gpus 2``: detectron2's launch spawns two processes (gloo on the CPU); each gets d2_ext's set-up
    from the runner (plain ``runpy`` would leave them without it), and inference is split over both."""
    rc, out = _run(['-m', 'd2_ext.run', os.path.join(TOOLS, 'train_net.py'), '--num-gpus', '2', '--dist-url', 'auto',
                    '--eval-only',
                    '--config-file', d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml'), *TINY,
                    'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'OUTPUT_DIR', str(tmp_path / 'out')],
                   datasets, tmp_path)
    assert rc == 0, out[-3000:]
    assert 'World size: 2' in out and 'on 2 devices)' in out
    assert 0.0 <= _bbox_ap(out) <= 100.0


@pytest.mark.slow
def test_stock_plain_train_net_trains_and_evaluates(datasets, tmp_path):
    out_dir = str(tmp_path / 'out')
    rc, out = _run(['-m', 'd2_ext.run', os.path.join(TOOLS, 'plain_train_net.py'),
                    '--config-file', d2_ext.get_config_file('retinanet_dla34_up_1x.yaml'), *TINY,
                    'MODEL.DLAP.NECK.OUT_CHANNELS', '32', 'MODEL.RETINANET.NUM_CONVS', '1',
                    'MODEL.RETINANET.SCORE_THRESH_TEST', '0.0', 'OUTPUT_DIR', out_dir], datasets, tmp_path)
    assert rc == 0, out[-3000:]
    final = torch.load(os.path.join(out_dir, 'model_final.pth'), weights_only=True)
    assert final['iteration'] == 2
    assert 'backbone.bottom_up.dla.level5.root.conv.weight' in final['model']
    assert final['model']['backbone.top_block.p7.weight'].shape[0] == 32  # DLA-Up neck + P6/P7 at the narrowed width
    assert 'Evaluation results for coco_2017_val' in out and 0.0 <= _bbox_ap(out) <= 100.0


@pytest.mark.slow
def test_stock_analyze_model_counts_our_model(datasets, tmp_path):
    config = d2_ext.get_config_file('mask_rcnn_dla34_up_1x.yaml')
    rc, out = _run(['-m', 'd2_ext.run', os.path.join(TOOLS, 'analyze_model.py'), '--tasks', 'parameter', 'flop',
                    '--num-inputs', '1', '--config-file', config, 'MODEL.WEIGHTS', '', 'MODEL.DEVICE', 'cpu',
                    'INPUT.MIN_SIZE_TEST', '64',
                    'INPUT.MAX_SIZE_TEST', '64'], datasets, tmp_path)
    assert rc == 0, out[-3000:]
    cfg = d2_ext.get_cfg()
    cfg.merge_from_file(config)
    cfg.MODEL.DEVICE = 'cpu'
    params = sum(p.numel() for p in build_model(cfg).parameters())
    row = [line for line in out.splitlines() if line.startswith('| model ')][-1]  # the flop table's total row
    assert float(row.split('|')[2].strip().rstrip('M')) == pytest.approx(params / 1e6, abs=1e-3)
    assert '| backbone.bottom_up.dla.level5 ' in out and 'Total GFlops: ' in out


@pytest.mark.slow
def test_stock_lazyconfig_train_net_trains_without_mask_decoding(datasets, tmp_path):
    """The shapes store RLE masks: a train mapper that still decoded masks (``use_instance_mask=True``, polygon
    format) would fail on them, so this run also proves the LazyConfig leaves them undecoded."""
    out_dir = str(tmp_path / 'out')
    rc, out = _run([os.path.join(TOOLS, 'lazyconfig_train_net.py'),
                    '--config-file', d2_ext.get_config_file('faster_rcnn_dla34_fpn_lazy.py'),
                    'train.device=cpu', 'train.max_iter=3', f'train.output_dir={out_dir}', 'train.init_checkpoint=',
                    'train.seed=1',
                    'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
                    'dataloader.test.num_workers=0', 'dataloader.train.mapper.augmentations.0.short_edge_length=[64]',
                    'dataloader.train.mapper.augmentations.0.max_size=64',
                    'dataloader.test.mapper.augmentations.0.short_edge_length=64',
                    'dataloader.test.mapper.augmentations.0.max_size=64', 'model.backbone.bottom_up.arch=dla46_c',
                    'model.backbone.bottom_up.norm=BN', 'model.backbone.bottom_up.freeze_at=0',
                    'model.roi_heads.box_predictor.test_score_thresh=0.0'], datasets, tmp_path)
    assert rc == 0, out[-3000:]
    train = [m for m in _metrics(out_dir) if 'total_loss' in m]
    assert train[-1]['iteration'] == 2 and all(math.isfinite(m['total_loss']) for m in train)
    assert os.path.isfile(os.path.join(out_dir, 'model_final.pth')) and 0.0 <= _bbox_ap(out) <= 100.0
