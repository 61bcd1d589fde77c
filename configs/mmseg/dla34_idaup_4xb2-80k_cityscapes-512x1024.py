# DLA-34 + IDA-Up (DLA-Up, paper §4.2) on Cityscapes, mmseg's standard 512x1024 crops / 80k iterations / 4 GPUs x 2.
_base_ = [
    './_base_/models/dla34_idaup.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
