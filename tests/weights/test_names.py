"""Registry weights by name through every entry point, in this process: the core (``create_dla``/``DLASeg``
``pretrained=``, ``load_checkpoint('dlap://NAME')``), timm's ``create_model``, mmengine's ``CheckpointLoader`` scheme
and the mmseg ``DLA`` ``init_cfg``, detectron2's ``PathManager`` handler behind ``DetectionCheckpointer``. A loopback
mirror serves ``dla46_c.in1k``; every loaded tensor equals the served one and nothing else is contacted."""
import logging
import os
import re

import pytest
import torch
import torch.nn as nn

from dla_plugins import CheckpointError, DLASeg, create_dla, load_checkpoint, weights
from dla_plugins.weights import WeightsError
from tests.weights.mirror import UNPINNED_FILE, in1k_mirror, served_state

NAME = 'dla46_c.in1k'


@pytest.fixture
def served(tmp_path, monkeypatch):
    with in1k_mirror(tmp_path, 'dla46_c', monkeypatch) as (_, state):
        yield state


def _source() -> str:
    return f"mirror {os.environ['DLA_PLUGINS_MIRROR']}/{NAME}/{UNPINNED_FILE['dla46_c']}"


def assert_backbone_equal(model_state, served, prefix='', skip=('fc.',)):
    keys = [k for k, v in served.items() if not k.startswith(skip) and v.is_floating_point()]
    assert keys and all(torch.equal(model_state[prefix + k], served[k]) for k in keys)


def _lines(caplog, start):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_core_loads_by_name_and_logs_one_line(served, caplog):
    caplog.set_level(logging.INFO)
    model = create_dla('dla46_c', pretrained=True)
    assert_backbone_equal(model.state_dict(), served, skip=())
    n = len(model.state_dict())
    assert _lines(caplog, f'weights {NAME}: ') == [
        f'weights {NAME}: from {_source()} (recorded at first download); loaded {n} tensors into DLA(dla46_c); '
        'skipped 0']
    rec = weights.cache_record(NAME)
    assert rec.hash_status == 'recorded at first download' and rec.source == _source()

    seg = DLASeg('dla46_c', num_classes=3, pretrained='in1k')  # ImageNet into the backbone, classifier dropped
    assert_backbone_equal(seg.backbone.state_dict(), served)
    report = load_checkpoint(create_dla('dla46_c', num_classes=5), f'dlap://{NAME}', classifier='drop')
    assert report.weights == (f'weights {NAME}: from {_source()} (recorded at first download); loaded {n - 2} '
                              'tensors into DLA(dla46_c); skipped 2 (fc.weight, fc.bias)')


def test_core_name_errors(monkeypatch):
    with pytest.raises(ValueError) as err:
        create_dla('dla46_c', pretrained='nope')
    assert str(err.value).startswith("pretrained: no dla46_c weights called 'nope'; allowed: [True, 'in1k', ")
    with pytest.raises(ValueError, match=r"^pretrained: give pretrained or checkpoint_path, not both \(got True and "
                                         r"'x.pth'\)$"):
        create_dla('dla46_c', pretrained=True, checkpoint_path='x.pth')
    monkeypatch.setenv('DLA_PLUGINS_OFFLINE', '1')  # nothing cached yet: the name cannot resolve
    with pytest.raises(WeightsError, match=rf"^weights: '{NAME}' is not in the cache "):
        load_checkpoint(create_dla('dla46_c'), f'dlap://{NAME}')


def test_cli_converts_a_registry_name(served, tmp_path, capsys):
    from dla_plugins.tools.cli import main

    dst = tmp_path / 'dla46_c_mmseg.pth'
    assert main(['convert', f'dlap://{NAME}', str(dst), '--to', 'mmseg']) == 0
    assert capsys.readouterr().out.startswith(f'converted dlap://{NAME} (timm layout')
    state = torch.load(dst, weights_only=True)['state_dict']
    assert_backbone_equal(state, served, prefix='backbone.body.')


def test_timm_pretrained_tag_fetches_through_the_registry(served, caplog, tmp_path):
    import timm

    import timm_ext  # noqa: F401

    caplog.set_level(logging.INFO)
    model = timm.create_model('dla46_c.in1k', pretrained=True, num_classes=4)
    assert_backbone_equal(model.state_dict(), served)
    assert _lines(caplog, f'weights {NAME}: ') == [
        f'weights {NAME}: from {_source()} (recorded at first download); loaded {len(model.state_dict()) - 2} '
        'tensors into DLA(dla46_c); skipped 2 (fc.weight, fc.bias)']

    # a location named by the caller is timm's to load, untouched: their file, not the registry's
    own = served_state('dla46_c', seed=2)
    torch.save(own, tmp_path / 'mine.pth')
    model = timm.create_model('dla46_c', pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'mine.pth')))
    assert_backbone_equal(model.state_dict(), own, skip=())


def test_mmengine_scheme_and_mmseg_init_cfg(served):
    from mmengine.runner import CheckpointLoader
    from mmengine.runner import load_checkpoint as mm_load_checkpoint
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401

    ckpt = CheckpointLoader.load_checkpoint(f'dlap://{NAME}')
    assert ckpt['meta']['dlap'] == NAME
    assert_backbone_equal(ckpt['state_dict'], served, prefix='backbone.body.')
    holder = nn.Module()  # the mmseg layout: the DLA at backbone.body
    holder.backbone = MODELS.build(dict(type='DLA', arch='dla46_c'))
    mm_load_checkpoint(holder, f'dlap://{NAME}', strict=True)
    assert_backbone_equal(holder.state_dict(), served, prefix='backbone.body.')

    backbone = MODELS.build(dict(type='DLA', arch='dla46_c', init_cfg=dict(type='Pretrained',
                                                                            checkpoint=f'dlap://{NAME}')))
    backbone.init_weights()
    assert_backbone_equal(backbone.body.state_dict(), served)


@pytest.mark.parametrize('config,builder', [('faster_rcnn_dla34_fpn_1x.yaml', 'build_dlap_fpn_backbone'),
                                            ('retinanet_dla34_up_1x.yaml', 'build_dlap_up_backbone'),
                                            ('faster_rcnn_dla34_fpn_1x.yaml', 'build_dlap_backbone')])
def test_detectron2_weights_by_name_load_into_every_backbone(served, config, builder, caplog):
    """One converted file serves the plain (``backbone.dla.``), FPN and DLA-Up (``backbone.bottom_up.dla.``)
    backbones: every DLA tensor of the model is the served one; the conversion is made once per file."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_backbone, build_model

    import d2_ext

    caplog.set_level(logging.INFO)
    cfg = d2_ext.get_cfg()
    cfg.merge_from_file(d2_ext.get_config_file(config))
    assert cfg.MODEL.WEIGHTS == 'dlap://dla34.in1k'  # as shipped
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE, cfg.MODEL.DLAP.ARCH = f'dlap://{NAME}', 'cpu', 'dla46_c'
    if builder == 'build_dlap_backbone':
        cfg.MODEL.BACKBONE.NAME = builder
        model = nn.Module()
        model.backbone = build_backbone(cfg)
    else:
        model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    prefix = 'backbone.dla.' if builder == 'build_dlap_backbone' else 'backbone.bottom_up.dla.'
    state = model.state_dict()
    assert_backbone_equal(state, served, prefix=prefix, skip=('fc.', 'NONE'))
    assert not [k for k in state if k.startswith(prefix) and k[len(prefix):] not in served]
    converted = list((weights.cache_dir() / NAME).glob('detectron2-*.pth'))
    assert len(converted) == 1
    mtime = converted[0].stat().st_mtime_ns
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    assert converted[0].stat().st_mtime_ns == mtime
    n = sum(1 for k, v in served.items() if not k.startswith('fc.') and not k.endswith('num_batches_tracked'))
    assert _lines(caplog, f'weights {NAME}: ')[0] == (
        f'weights {NAME}: from {_source()} (recorded at first download); loaded {n} tensors into DLA(dla46_c); '
        'skipped 2 (fc.weight, fc.bias)')


WRONG = (r"checkpoint does not fit DLA\(dla34\) at '{prefix}': \d+ of its \d+ tensors are missing or mis-shaped in "
         r"the checkpoint; the file is weights dla46_c.in1k: DLA of dla46_c\n  (missing|mis-shaped): ")


@pytest.mark.parametrize('config,builder,prefix', [
    ('faster_rcnn_dla34_fpn_1x.yaml', None, 'backbone.bottom_up.dla.'),
    ('retinanet_dla34_up_1x.yaml', None, 'backbone.bottom_up.dla.'),
    ('faster_rcnn_dla34_fpn_1x.yaml', 'build_dlap_backbone', 'backbone.dla.'),
    ('faster_rcnn_dla34_fpn_lazy.py', None, 'backbone.bottom_up.dla.')])
def test_detectron2_refuses_weights_of_another_variant(served, config, builder, prefix):
    """The shipped dla34 configs (yaml: every builder; LazyConfig) with another variant's weights by name: detectron2
    alone would load non-strictly and train from random weights; our backbone refuses, naming the model's DLA and the
    file's."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling import build_backbone, build_model

    import d2_ext

    if config.endswith('.py'):  # what lazyconfig_train_net.py does with train.init_checkpoint
        model = instantiate(LazyConfig.load(d2_ext.get_config_file(config)).model)
    else:
        cfg = d2_ext.get_cfg()
        cfg.merge_from_file(d2_ext.get_config_file(config))
        cfg.MODEL.DEVICE = 'cpu'
        if builder:
            cfg.MODEL.BACKBONE.NAME = builder
            model = nn.Module()
            model.backbone = build_backbone(cfg)
        else:
            model = build_model(cfg)
    with pytest.raises(CheckpointError, match=WRONG.format(prefix=re.escape(prefix))):
        DetectionCheckpointer(model).load(f'dlap://{NAME}')


def test_mmengine_refuses_weights_of_another_variant_and_converts_once(served):
    from mmengine.runner import CheckpointLoader
    from mmengine.runner import load_checkpoint as mm_load_checkpoint
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401

    holder = nn.Module()
    holder.backbone = MODELS.build(dict(type='DLA', arch='dla34'))
    with pytest.raises(CheckpointError, match=WRONG.format(prefix=re.escape('backbone.body.'))):
        mm_load_checkpoint(holder, f'dlap://{NAME}')  # mmengine's default (load_from): strict=False
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmseg_ext import get_config_file

    init_default_scope('mmseg')
    cfg = Config.fromfile(get_config_file('dla34_idaup_4xb2-80k_cityscapes-512x1024.py')).model
    cfg.backbone.init_cfg = None
    cfg.init_cfg = dict(type='Pretrained', checkpoint=f'dlap://{NAME}')  # mmengine's own Pretrained init
    segmentor = MODELS.build(cfg)
    with pytest.raises(CheckpointError, match=WRONG.format(prefix=re.escape('backbone.body.'))):
        segmentor.init_weights()
    converted = sorted((weights.cache_dir() / NAME).glob('mmseg-*'))
    assert [p.suffix for p in converted] == ['.json', '.pth']
    mtime = converted[1].stat().st_mtime_ns
    ckpt = CheckpointLoader.load_checkpoint(f'dlap://{NAME}', map_location='meta')  # the caller's map_location
    assert {v.device.type for v in ckpt['state_dict'].values()} == {'meta'}
    assert converted[1].stat().st_mtime_ns == mtime  # not converted again
    stale = converted[1].with_name('mmseg-0123456789abcdef-v0.pth')
    stale.write_bytes(b'old')
    CheckpointLoader.load_checkpoint(f'dlap://{NAME}')
    assert not stale.exists()  # another hash or converter version: removed


@pytest.mark.slow
def test_train_net_refuses_weights_of_another_variant(tmp_path):
    """Through detectron2's DefaultTrainer (``python -m d2_ext.train_net``): one error, exit code 2, no training."""
    import subprocess
    import sys

    import d2_ext
    from tests.helpers import ROOT

    with in1k_mirror(tmp_path, 'dla46_c') as (env, _):
        out = subprocess.run([sys.executable, '-m', 'd2_ext.train_net', '--config-file',
                              d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml'), '--synthetic-shapes', '4',
                              '--synthetic-size', '64', 'MODEL.WEIGHTS', f'dlap://{NAME}', 'MODEL.DEVICE', 'cpu',
                              'OUTPUT_DIR', str(tmp_path / 'out'), 'SOLVER.MAX_ITER', '2', 'DATALOADER.NUM_WORKERS',
                              '0', 'SOLVER.IMS_PER_BATCH', '2'], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    assert re.search('d2_ext.train_net: error: ' + WRONG.format(prefix=re.escape('backbone.bottom_up.dla.')),
                     out.stderr), out.stderr[-3000:]
    assert not (tmp_path / 'out' / 'model_final.pth').exists()
