# BSDS500 in the official BSR layout (data_root = BSR/BSDS500/data): images/{train,val,test}/<id>.jpg and
# groundTruth/{train,val,test}/<id>.mat. Labels: more than 30% of the annotators = boundary, fewer (but > 0) =
# ignored (BSDS500Dataset's consensus rule, docs/boundary.md). HED-BSDS augmented data instead:
#   dict(type='BSDS500Dataset', data_root='data/HED-BSDS', ann_file='train_pair.lst', pipeline=train_pipeline)
dataset_type = 'BSDS500Dataset'
data_root = 'data/BSR/BSDS500/data/'
crop_size = (416, 416)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadBoundaryAnnotations'),
    dict(type='RandomRotate', prob=1.0, degree=180, pad_val=0, seg_pad_val=255),
    dict(type='RandomCrop', crop_size=crop_size),  # BSDS images are 481x321: the data preprocessor pads to 416x416
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadBoundaryAnnotations'),
    dict(type='PackSegInputs'),
]


# the field's protocol (HED, RCF, DLA-AFA): train on train + val (300 images), report on test (200)
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='ConcatDataset',
        datasets=[
            dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/train', seg_map_path='groundTruth/train')),
            dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/val', seg_map_path='groundTruth/val')),
        ]))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/val', seg_map_path='groundTruth/val')))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/test', seg_map_path='groundTruth/test')))
# during training: precision / recall / F at threshold 0.5 (val is part of the training data here: a fit monitor);
# at test time: the BSDS benchmark, ODS / OIS / AP over 99 thresholds, edge NMS, thinning, tolerance 0.0075
val_evaluator = dict(type='BoundaryMetric', thresholds=[0.5])
test_evaluator = dict(type='BoundaryMetric', thresholds=99, nproc=8)
