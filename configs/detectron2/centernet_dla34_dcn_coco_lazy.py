"""LazyConfig: CenterNet ctdet_coco_dla_1x (DLA-34 + deformable DLA-Up, 512x512), CenterNet's own recipe: Adam,
lr 1.25e-4 at batch 32 (scale it linearly with ``dataloader.train.total_batch_size``), 140 COCO epochs as
iterations (3697 per epoch), lr x0.1 at epochs 90 and 120. Train with detectron2's ``lazyconfig_train_net.py``.

CenterNet's input pipeline runs in the model (:mod:`d2_ext.centernet`): the mappers pass images at their own size.
"""
import torch
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler, get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from d2_ext import DLABackbone, DLAPCenterNet, DLAUpNeck
from d2_ext.centernet_data import CENTERNET_MEAN, CENTERNET_STD, CenterAffine

EPOCH = 3697  # ceil(118287 / 32)
dataloader = model_zoo.get_config('common/data/coco.py').dataloader
dataloader.train.mapper.augmentations = []  # the model draws CenterNet's affine, flip and colours
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 32
dataloader.test.mapper.augmentations = []
train = model_zoo.get_config('common/train.py').train
train.init_checkpoint = 'dlap://dla34.in1k'  # ImageNet weights by name, as CenterNet starts; '' from scratch
train.max_iter = 140 * EPOCH

optimizer = L(torch.optim.Adam)(params=L(get_default_optimizer_params)(weight_decay_norm=0.0), lr=1.25e-4)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[90 * EPOCH, 120 * EPOCH],
                                         num_updates=train.max_iter),
    warmup_length=0, warmup_factor=1.0)

LEVELS = ['level2', 'level3', 'level4', 'level5']
model = L(DLAPCenterNet)(
    backbone=L(DLAUpNeck)(
        bottom_up=L(DLABackbone)(arch='dla34', out_features=LEVELS, norm='BN', freeze_at=0),
        in_features=LEVELS, out_channels=0, node_type='dcn', norm='BN', flavor='centernet', top_block=None,
        size_divisibility=32),
    in_feature='p2',
    num_classes=80,
    # CenterNet feeds BGR images normalised by its COCO statistics (0-255 scale here), its ImageNet backbone included
    pixel_mean=[255 * m for m in CENTERNET_MEAN],
    pixel_std=[255 * s for s in CENTERNET_STD],
    input_format='BGR',
    input_size=512,
    keep_res=True,  # tested as CenterNet tests COCO (test.py --keep_res): each image at its own size, padded to 32
    train_affine=L(CenterAffine)(size=512, train=True),
    K=100,
)
