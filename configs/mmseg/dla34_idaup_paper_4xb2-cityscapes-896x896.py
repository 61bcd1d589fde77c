# DLA-34 + IDA-Up (DLA-Up, paper §4.2) on Cityscapes in the paper's setting: 896x896 crops, batch 8 (here 4 GPUs x 2),
# SGD with poly learning rate, scale augmentation 0.5-2 and small rotations, output stride 8 (dilated level4/5).
# Our choices where we could not pin the paper down: the iteration count (90k x 8 = about 240 epochs of the 2975
# training images), lr 0.01, weight decay 1e-4, the 10000-iteration val/checkpoint interval, DLA-Up to stride 4
# (levels 2-5; the paper's IDA-Up reaches stride 2-4), mmseg's CrossEntropyLoss and cat_max_ratio crop rule.
# ImageNet initialisation as in the paper: see _base_/models/dla34_idaup.py.
_base_ = [
    './_base_/models/dla34_idaup.py',
    'mmseg::_base_/datasets/cityscapes.py',
    './_base_/schedules/sgd_poly_20k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (896, 896)
max_iters = 90000
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(output_stride=8),
    decode_head=dict(strides=[4, 8, 8, 8]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomRotate', prob=1.0, degree=10, pad_val=0, seg_pad_val=255),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=4, dataset=dict(pipeline=train_pipeline))

# the schedule base's SGD + poly, over 90k iterations
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))
