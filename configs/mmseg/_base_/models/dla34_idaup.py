# DLA-34 + IDA-Up (DLA-Up, paper §4.2) segmentor: the one model dict our mmseg configs share.
# ImageNet initialisation by name: 'dlap://dla34.in1k' is fetched on first use (timm's file on the Hugging Face hub,
# then its fallbacks; docs/checkpoints.md) and verified. A file of your own: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH; from scratch: model.backbone.init_cfg=None.
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)

pretrained = 'dlap://dla34.in1k'
# SyncBN across GPUs; mmengine's Runner turns it into BN in a single-process run (one GPU or CPU).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='DLA',
        arch='dla34',
        out_indices=(2, 3, 4, 5),
        output_stride=32,
        norm_cfg=norm_cfg,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(
        type='DLAUpHead',
        in_channels=[64, 128, 256, 512],
        strides=[4, 8, 16, 32],
        in_index=[0, 1, 2, 3],
        node_type='conv',
        dropout_ratio=0.0,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
