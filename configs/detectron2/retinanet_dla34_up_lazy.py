"""LazyConfig: RetinaNet, DLA-34 + DLA-Up neck over level3-level5 + P6/P7 (p3-p7), COCO 1x.

The model is detectron2's common RetinaNet with the backbone swapped.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from d2_ext import IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, DLABackbone, DLAUpNeck

dataloader = model_zoo.get_config('common/data/coco.py').dataloader
optimizer = model_zoo.get_config('common/optim.py').SGD
optimizer.lr = 0.01
lr_multiplier = model_zoo.get_config('common/coco_schedule.py').lr_multiplier_1x
train = model_zoo.get_config('common/train.py').train
model = model_zoo.get_config('common/models/retinanet.py').model

LEVELS = ['level3', 'level4', 'level5']
model.backbone = L(DLAUpNeck)(
    bottom_up=L(DLABackbone)(arch='dla34', out_features=LEVELS, norm='FrozenBN', freeze_at=2),
    in_features=LEVELS,
    out_channels=256,
    node_type='conv',  # 'dcn': modulated deformable aggregation nodes (torchvision)
    norm='GN',
    top_block=L(LastLevelP6P7)(in_channels=256, out_channels=256, in_feature='p5'),
    size_divisibility=32,
)
model.input_format = 'RGB'
model.pixel_mean = IMAGENET_RGB_MEAN
model.pixel_std = IMAGENET_RGB_STD
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.use_instance_mask = False  # RetinaNet has no mask head: leave the masks undecoded
dataloader.test.mapper.image_format = 'RGB'
train.init_checkpoint = 'dlap://dla34.in1k'  # ImageNet weights by name (docs/checkpoints.md); '' from scratch
