# DLA-102 + DLA-Up (stride 2) boundary detection on BSDS500: the DLA code's `dla102up` run, otherwise as
# dla34_boundary_bsds500.py (same recipe and data).
_base_ = ['./dla34_boundary_bsds500.py']
model = dict(
    backbone=dict(arch='dla102', init_cfg=dict(checkpoint='dlap://dla102.in1k')),
    decode_head=dict(in_channels=[32, 128, 256, 512, 1024]))
