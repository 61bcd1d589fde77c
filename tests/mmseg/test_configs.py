"""mmseg configs, merged: what the shipped configs resolve to through their ``_base_`` files (the boundary model on
the IDA-Up model, CamVid's dataset and schedule bases), written out key by key so that a base edit shows up."""
from typing import Any, Dict

import pytest
from mmengine.config import Config

from mmseg_ext import get_config_file

CAMVID = 'dla34_idaup_4xb2-20k_camvid-400x400.py'
PAPER = 'dla34_idaup_paper_4xb2-cityscapes-896x896.py'


def _flat(value: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'a.b.0.c': leaf}`` of nested dicts and lists of dicts (a list of plain values is one leaf)."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value):
        items = enumerate(value)
    else:
        return {prefix.rstrip('.'): value}
    out = {}
    for key, v in items:
        out.update(_flat(v, f'{prefix}{key}.'))
    return out


# the merged model of dla34_boundary_bsds500.py as it was written out in full before it inherited dla34_idaup.py
BOUNDARY_MODEL = {
    'type': 'EncoderDecoder',
    'data_preprocessor.type': 'SegDataPreProcessor',
    'data_preprocessor.mean': [123.675, 116.28, 103.53],
    'data_preprocessor.std': [58.395, 57.12, 57.375],
    'data_preprocessor.bgr_to_rgb': True,
    'data_preprocessor.pad_val': 0,
    'data_preprocessor.seg_pad_val': 255,
    'data_preprocessor.size': (416, 416),
    'backbone.type': 'DLA',
    'backbone.arch': 'dla34',
    'backbone.out_indices': (1, 2, 3, 4, 5),
    'backbone.output_stride': 32,
    'backbone.norm_cfg.type': 'SyncBN',
    'backbone.norm_cfg.requires_grad': True,
    'backbone.frozen_stages': -1,
    'backbone.norm_eval': False,
    'backbone.with_cp': False,
    'backbone.init_cfg.type': 'Pretrained',
    'backbone.init_cfg.checkpoint': 'dlap://dla34.in1k',
    'decode_head.type': 'DLAUpHead',
    'decode_head.in_channels': [32, 64, 128, 256, 512],
    'decode_head.strides': [2, 4, 8, 16, 32],
    'decode_head.in_index': [0, 1, 2, 3, 4],
    'decode_head.node_type': 'conv',
    'decode_head.dropout_ratio': 0.0,
    'decode_head.num_classes': 2,
    'decode_head.norm_cfg.type': 'SyncBN',
    'decode_head.norm_cfg.requires_grad': True,
    'decode_head.align_corners': False,
    'decode_head.loss_decode.type': 'WeightedBoundaryLoss',  # nothing left of the IDA-Up model's CrossEntropyLoss
    'decode_head.loss_decode.edge_weight': 10.0,
    'train_cfg': {},
    'test_cfg.mode': 'whole',
}
DLA102_CHANGES = {'backbone.arch': 'dla102', 'backbone.init_cfg.checkpoint': 'dlap://dla102.in1k',
                  'decode_head.in_channels': [32, 128, 256, 512, 1024]}


@pytest.mark.parametrize('name,changes', [('dla34_boundary_bsds500.py', {}),
                                          ('dla102_boundary_bsds500.py', DLA102_CHANGES)])
def test_boundary_models_merge_to_the_written_out_model(name, changes):
    assert _flat(Config.fromfile(get_config_file(name)).model) == {**BOUNDARY_MODEL, **changes}


def _schedule(max_iters: int, interval: int) -> Dict[str, Any]:
    """The flat schedule keys of ``_base_/schedules/sgd_poly_20k.py`` run for ``max_iters`` (interval: val, ckpt)."""
    return {
        'max_iters': max_iters,
        'optimizer.type': 'SGD', 'optimizer.lr': 0.01, 'optimizer.momentum': 0.9, 'optimizer.weight_decay': 1e-4,
        'optim_wrapper.type': 'OptimWrapper', 'optim_wrapper.optimizer.type': 'SGD',
        'optim_wrapper.optimizer.lr': 0.01, 'optim_wrapper.optimizer.momentum': 0.9,
        'optim_wrapper.optimizer.weight_decay': 1e-4, 'optim_wrapper.clip_grad': None,
        'param_scheduler.0.type': 'PolyLR', 'param_scheduler.0.eta_min': 0.0, 'param_scheduler.0.power': 0.9,
        'param_scheduler.0.begin': 0, 'param_scheduler.0.end': max_iters, 'param_scheduler.0.by_epoch': False,
        'train_cfg.type': 'IterBasedTrainLoop', 'train_cfg.max_iters': max_iters, 'train_cfg.val_interval': interval,
        'val_cfg.type': 'ValLoop', 'test_cfg.type': 'TestLoop',
        'default_hooks.timer.type': 'IterTimerHook', 'default_hooks.logger.type': 'LoggerHook',
        'default_hooks.logger.interval': 50, 'default_hooks.logger.log_metric_by_epoch': False,
        'default_hooks.param_scheduler.type': 'ParamSchedulerHook', 'default_hooks.checkpoint.type': 'CheckpointHook',
        'default_hooks.checkpoint.by_epoch': False, 'default_hooks.checkpoint.interval': interval,
        'default_hooks.sampler_seed.type': 'DistSamplerSeedHook',
        'default_hooks.visualization.type': 'SegVisualizationHook',
    }


@pytest.mark.parametrize('name,max_iters,interval', [(CAMVID, 20000, 2000), (PAPER, 90000, 10000)])
def test_schedule_base_and_its_longer_run(name, max_iters, interval):
    cfg = Config.fromfile(get_config_file(name))
    got = {}
    for key in ('optimizer', 'optim_wrapper', 'param_scheduler', 'train_cfg', 'val_cfg', 'test_cfg', 'default_hooks'):
        got.update(_flat(cfg[key], f'{key}.'))
    assert {'max_iters': cfg.max_iters, **got} == _schedule(max_iters, interval)


def test_camvid_data_and_model():
    cfg = Config.fromfile(get_config_file(CAMVID))
    assert cfg.model.decode_head.num_classes == 11 and cfg.model.data_preprocessor.size == (400, 400)
    assert cfg.model.backbone.init_cfg.checkpoint == 'dlap://dla34.in1k'
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader), ('test', cfg.test_dataloader)):
        assert (loader.batch_size, loader.num_workers, loader.persistent_workers) == (2 if split == 'train' else 1, 2,
                                                                                      True)
        assert loader.sampler.type == ('InfiniteSampler' if split == 'train' else 'DefaultSampler')
        assert loader.sampler.shuffle == (split == 'train')
        assert {k: v for k, v in loader.dataset.items() if k != 'pipeline'} == dict(
            type='CamVidDataset', data_root='data/camvid/',
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))
    train = _flat(cfg.train_dataloader.dataset.pipeline)
    assert [train[f'{i}.type'] for i in range(7)] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomResize',
                                                      'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
                                                      'PackSegInputs']
    assert (train['2.scale'], train['2.ratio_range'], train['2.keep_ratio']) == ((960, 720), (0.5, 2.0), True)
    assert (train['3.crop_size'], train['4.prob'], len(train)) == ((400, 400), 0.5, 12)
    test = cfg.test_dataloader.dataset.pipeline
    assert test == cfg.val_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(960, 720), keep_ratio=True),
        dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    assert cfg.val_evaluator == cfg.test_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])
