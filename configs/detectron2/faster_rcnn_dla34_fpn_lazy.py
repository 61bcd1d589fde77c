"""LazyConfig: Faster R-CNN, DLA-34 + detectron2's FPN (p2-p6), COCO 1x (train with lazyconfig_train_net.py).

The model is detectron2's common R-CNN FPN model with the backbone swapped and the mask branch removed.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from d2_ext import IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, DLABackbone

dataloader = model_zoo.get_config('common/data/coco.py').dataloader
optimizer = model_zoo.get_config('common/optim.py').SGD
lr_multiplier = model_zoo.get_config('common/coco_schedule.py').lr_multiplier_1x
train = model_zoo.get_config('common/train.py').train
model = model_zoo.get_config('common/models/mask_rcnn_fpn.py').model

LEVELS = ['level2', 'level3', 'level4', 'level5']
model.backbone = L(FPN)(
    bottom_up=L(DLABackbone)(arch='dla34', out_features=LEVELS, norm='FrozenBN', freeze_at=2),
    in_features=LEVELS,
    out_channels=256,
    top_block=L(LastLevelMaxPool)(),
)
model.roi_heads.update(mask_in_features=None, mask_pooler=None, mask_head=None)
# timm/ucbdrive ImageNet weights (converted by `python -m d2_ext.convert`) expect RGB + ImageNet statistics.
model.input_format = 'RGB'
model.pixel_mean = IMAGENET_RGB_MEAN
model.pixel_std = IMAGENET_RGB_STD
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.use_instance_mask = False  # no mask head: leave the masks undecoded
dataloader.test.mapper.image_format = 'RGB'
train.init_checkpoint = 'dlap://dla34.in1k'  # ImageNet weights by name (docs/checkpoints.md); '' from scratch
