# DLA-34 + IDA-Up (DLA-Up, paper §4.2) on CamVid (11 classes, 367/101/233 split), 400x400 crops, 4 GPUs x 2,
# SGD + poly over 20k iterations.
# Data layout: data/camvid/{images,annotations}/{train,val,test}/<name>.png, void = 255 (see docs/mmseg.md).
# ImageNet initialisation: see _base_/models/dla34_idaup.py.
_base_ = [
    './_base_/models/dla34_idaup.py',
    './_base_/datasets/camvid.py',
    './_base_/schedules/sgd_poly_20k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (400, 400)  # as _base_/datasets/camvid.py
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=11))
