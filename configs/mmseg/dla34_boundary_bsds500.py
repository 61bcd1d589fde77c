# DLA-34 + DLA-Up (stride 2) boundary detection on BSDS500 with the recipe of the DLA code (ucbdrive/dla README,
# BSDS: `segment.py train -c 2 -s 416 --batch-size 16 --lr 0.01 --momentum 0.9 --lr-mode step --epochs 1200
# --step 800 --random-rotate 180 --random-color`, arch dla102up): 2-class weighted cross-entropy (boundary weight 10),
# 416x416 crops, batch 16 (here 4 GPUs x 4), SGD lr 0.01 / momentum 0.9, 1200 epochs with a x0.1 step at epoch 800,
# rotation +-180 degrees, flip, colour jitter (mmseg's PhotoMetricDistortion).
# Our choices: weight decay 1e-4 (the DLA code's default), train on train + val, the consensus label rule (> 30% of
# annotators, docs/boundary.md), checkpoints and the F@0.5 check every 100 epochs.
# ImageNet initialisation: see _base_/models/dla34_boundary.py (--cfg-options model.backbone.init_cfg=None: none).
_base_ = [
    './_base_/models/dla34_boundary.py',
    './_base_/datasets/bsds500.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (416, 416)  # as _base_/datasets/bsds500.py
max_epochs = 1200
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)

optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[800], gamma=0.1, begin=0, end=max_epochs)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=100, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
