# DLA-34 + DLA-Up at stride 2 for boundary detection (paper §5.4; the DLA code's `dla_up.py` DLASeg with
# down_ratio=2): levels 1-5 aggregated up to stride 2, a 1x1 classifier, logits resized to the input.
# Output: 2 classes with weighted cross-entropy, as the DLA code (log-softmax + NLLLoss2d(weight=[1, 10])). For one
# channel with BCE(pos_weight=10) as DLA-AFA: decode_head=dict(out_channels=1, threshold=0.5); the loss follows.
custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)

pretrained = 'dlap://dla34.in1k'  # ImageNet weights by name, fetched on first use (docs/checkpoints.md)
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
        out_indices=(1, 2, 3, 4, 5),
        output_stride=32,
        norm_cfg=norm_cfg,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(
        type='DLAUpHead',
        in_channels=[32, 64, 128, 256, 512],
        strides=[2, 4, 8, 16, 32],
        in_index=[0, 1, 2, 3, 4],
        node_type='conv',
        dropout_ratio=0.0,
        num_classes=2,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='WeightedBoundaryLoss', edge_weight=10.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
