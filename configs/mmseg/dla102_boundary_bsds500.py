# DLA-102 + DLA-Up (stride 2) boundary detection on BSDS500: the DLA code's `dla102up` run, otherwise as
# dla34_boundary_bsds500.py (same recipe and data).
_base_ = ['./dla34_boundary_bsds500.py']
model = dict(
    # weights by name: see issue 17
    backbone=dict(arch='dla102', init_cfg=dict(checkpoint='checkpoints/dla102_imagenet.pth')),
    decode_head=dict(in_channels=[32, 128, 256, 512, 1024]))
