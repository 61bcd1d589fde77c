"""Boundary detection in mmseg: BSDS500Dataset labels equal the consensus rule computed by hand from the .mat files
(BSR layout and HED pair lists), WeightedBoundaryLoss equals the reference losses, the boundary model trains in both
output forms, BoundaryMetric through mmseg's data samples, and bad input."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import DATASETS, METRICS, MODELS
from mmseg.structures import SegDataSample
from scipy.io import loadmat, savemat

from mmseg_ext import get_config_file
from mmseg_ext.boundary.evaluation import evaluate_image, summarize
from mmseg_ext.boundary.synthetic import NUM_ANNOTATORS, write_bsds_layout, write_hed_pair_list

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadBoundaryAnnotations'), dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def bsds(tmp_path_factory):
    return write_bsds_layout(str(tmp_path_factory.mktemp('bsds') / 'data'), dict(train=3), size=(48, 64))


def _dataset(root, **kw):
    if 'ann_file' not in kw:  # a pair list names paths relative to data_root
        kw.setdefault('data_prefix', dict(img_path='images/train', seg_map_path='groundTruth/train'))
    return DATASETS.build(dict(type='BSDS500Dataset', data_root=root, pipeline=PIPELINE, **kw))


def _annotator_counts(mat_path):
    """By hand: scipy reads MATLAB's 1 x K cell of structs; count the annotators marking each pixel."""
    cell = loadmat(mat_path)['groundTruth']
    assert cell.shape == (1, NUM_ANNOTATORS)
    return sum(cell[0, k]['Boundaries'][0, 0].astype(int) for k in range(cell.shape[1]))


@pytest.mark.parametrize('kw,rule', [
    (dict(), lambda n: np.where(n >= 2, 1, np.where(n == 1, 255, 0))),  # 5 annotators: > 30% is 2 or more
    (dict(ignore_band=False), lambda n: np.where(n >= 2, 1, 0)),
    (dict(edge_threshold=0.5), lambda n: np.where(n >= 3, 1, np.where(n >= 1, 255, 0))),
])
def test_labels_equal_the_consensus_rule(bsds, kw, rule):
    ds = _dataset(bsds, **kw)
    assert len(ds) == 3 and ds.metainfo['classes'] == ('background', 'boundary')
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]
        path = sample['data_samples'].seg_map_path
        label = sample['data_samples'].gt_sem_seg.data[0].numpy()
        counts = _annotator_counts(path)
        np.testing.assert_array_equal(label, rule(counts))
        seen |= set(np.unique(counts).tolist())
        assert sample['inputs'].shape[-2:] == label.shape == (48, 64)
    assert seen >= {0, 1, 2, 3, 4, 5}  # every annotator fraction occurs, the ignore band included


def test_hed_pair_list_gives_the_same_labels(bsds, tmp_path):
    lst = write_hed_pair_list(bsds, 'train', str(tmp_path / 'HED-BSDS'))
    assert open(lst).readline().split() == ['train/aug_data/1.0_0/100000.jpg', 'train/aug_gt/1.0_0/100000.png']
    hed = _dataset(str(tmp_path / 'HED-BSDS'), ann_file='train_pair.lst')
    ref = _dataset(bsds)
    assert len(hed) == len(ref) == 3
    for i in range(3):
        a, b = hed[i]['data_samples'], ref[i]['data_samples']
        assert a.seg_map_path == str(tmp_path / 'HED-BSDS' / 'train' / 'aug_gt' / '1.0_0' / f'10000{i}.png')
        torch.testing.assert_close(a.gt_sem_seg.data, b.gt_sem_seg.data, rtol=0, atol=0)


def test_shipped_config_data_pipelines_run_on_the_bsr_layout(tmp_path):
    """The recipe's train set (train + val, rotation, 416 crop, flip, colour) and the test set, as shipped."""
    from mmengine.dataset import ConcatDataset

    root = write_bsds_layout(str(tmp_path / 'data'), dict(train=2, val=1, test=1), size=(48, 64))
    cfg = Config.fromfile(get_config_file('dla34_boundary_bsds500.py'))
    train = cfg.train_dataloader.dataset
    for d in train.datasets:
        d.data_root = root
    train = DATASETS.build(train)
    assert isinstance(train, ConcatDataset) and len(train) == 3
    assert [t['type'] for t in cfg.train_dataloader.dataset.datasets[0].pipeline] == [
        'LoadImageFromFile', 'LoadBoundaryAnnotations', 'RandomRotate', 'RandomCrop', 'RandomFlip',
        'PhotoMetricDistortion', 'PackSegInputs']
    sample = train[2]['data_samples']
    label = sample.gt_sem_seg.data
    assert label.shape[-2:] == (48, 64) and set(label.unique().tolist()) <= {0, 1, 255}
    assert (label == 255).any()  # the rotation pads with ignore (and the band is ignored)
    cfg.test_dataloader.dataset.data_root = root
    test = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(test) == 1 and test[0]['data_samples'].seg_map_path.endswith('.mat')
    assert cfg.test_evaluator == dict(type='BoundaryMetric', thresholds=99, nproc=8)
    assert cfg.val_evaluator == dict(type='BoundaryMetric', thresholds=[0.5])


def test_bad_data_names_the_problem(bsds, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        _dataset(str(tmp_path / 'none'))
    assert str(e.value) == (f"BSDS500Dataset: no image folder {str(tmp_path / 'none' / 'images/train')!r} "
                            f"(data_root={str(tmp_path / 'none')!r}); expected <data_root>/images/<split>/<id>.jpg and "
                            f"<data_root>/groundTruth/<split>/<id>.mat")
    (tmp_path / 'pairs.lst').write_text('a.jpg\n')
    with pytest.raises(ValueError) as e:
        _dataset(str(tmp_path), ann_file='pairs.lst')
    assert str(e.value) == f"ann_file: line 1 of {str(tmp_path / 'pairs.lst')!r} must hold 'image_path label_path', " \
                           f"got 'a.jpg'"
    (tmp_path / 'pairs.lst').write_text('a.jpg b.png\n')
    with pytest.raises(FileNotFoundError) as e:
        _dataset(str(tmp_path), ann_file='pairs.lst')
    assert str(e.value) == f"BSDS500Dataset: 1 image(s) without ground truth, e.g. {str(tmp_path / 'b.png')!r}"
    with pytest.raises(ValueError) as e:
        _dataset(bsds, edge_threshold=1.0)
    assert str(e.value) == 'edge_threshold: must be in [0, 1), got 1.0'
    bad = tmp_path / 'bad.mat'
    savemat(str(bad), {'seg': np.zeros((4, 4))})
    from mmseg_ext.boundary import read_bsds_boundaries
    with pytest.raises(ValueError) as e:
        read_bsds_boundaries(str(bad))
    assert str(e.value) == (f"groundTruth: {str(bad)!r} holds no 'groundTruth' cell array of annotator structs with "
                            f"'Boundaries' maps of one shape (the BSDS500 layout)")


def _loss(**kw):
    return MODELS.build(dict(type='WeightedBoundaryLoss', **kw))


def test_loss_equals_the_reference_losses():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 2, (2, 9, 11), generator=g)
    label[0, :3] = 255
    two = torch.randn(2, 2, 9, 11, generator=g, requires_grad=True)
    # the DLA code: log-softmax + NLLLoss2d(weight=[1, 10]) with ignore 255 (mean over the summed weights)
    expect = F.nll_loss(F.log_softmax(two, 1), label, weight=torch.tensor([1.0, 10.0]), ignore_index=255)
    torch.testing.assert_close(_loss()(two, label, ignore_index=255), expect)
    one = torch.randn(2, 1, 9, 11, generator=g)
    valid = label != 255
    bce = F.binary_cross_entropy_with_logits(one[:, 0][valid], label[valid].float(), pos_weight=torch.tensor(10.0))
    torch.testing.assert_close(_loss()(one, label, ignore_index=255), bce)  # DLA-AFA: BCE(pos_weight) over labels
    # ignored pixels do not matter; an all-ignored batch gives 0 and a zero gradient
    changed = two.detach().clone()
    changed[0, :, :3] = 100.0
    torch.testing.assert_close(_loss()(changed, label, ignore_index=255), expect)
    loss = _loss()(two, torch.full_like(label, 255), ignore_index=255)
    loss.backward()
    assert loss.item() == 0 and (two.grad == 0).all()


def test_loss_bad_input():
    with pytest.raises(ValueError) as e:
        _loss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert str(e.value) == 'seg_logits: WeightedBoundaryLoss takes 1 (sigmoid) or 2 (softmax) channels, got 3'
    with pytest.raises(ValueError) as e:
        _loss()(torch.zeros(1, 2, 4, 4), torch.full((1, 4, 4), 2, dtype=torch.long))
    assert str(e.value) == 'label: boundary labels must be 0, 1 or ignore_index=255, got [2]'
    with pytest.raises(ValueError) as e:
        _loss(edge_weight=0)
    assert str(e.value) == 'edge_weight: must be > 0, got 0'
    with pytest.raises(ValueError) as e:
        _loss(loss_name='boundary')
    assert str(e.value) == "loss_name: must start with 'loss_' (mmengine sums those), got 'boundary'"


@pytest.mark.parametrize('out_channels', [None, 1])
def test_boundary_model_trains_in_both_output_forms(out_channels):
    """The shipped model (dla46_c): 2-class softmax (default) or 1 sigmoid channel; logits at the input size."""
    cfg = Config.fromfile(get_config_file('dla34_boundary_bsds500.py'))
    cfg.model.data_preprocessor.size = (40, 56)
    cfg.model.backbone.update(arch='dla46_c', init_cfg=None, norm_cfg=dict(type='BN'))
    cfg.model.decode_head.update(in_channels=[32, 64, 64, 128, 256], norm_cfg=dict(type='BN'))
    if out_channels:
        cfg.model.decode_head.update(out_channels=1, threshold=0.5)
    model = MODELS.build(cfg.model)
    model.init_weights()
    x = torch.randn(2, 3, 40, 56) * 50 + 120
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(40, 56), ori_shape=(40, 56), pad_shape=(40, 56)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 2, (1, 40, 56)))
        samples.append(s)
    samples[0].gt_sem_seg.data[:, :5] = 255
    data = model.data_preprocessor(dict(inputs=list(x), data_samples=samples), training=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = model.loss(data['inputs'], data['data_samples'])['decode.loss_boundary']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        pred = model.predict(data['inputs'], data['data_samples'])[0]
    assert pred.seg_logits.data.shape == ((1 if out_channels else 2), 40, 56)


def test_metric_reads_every_annotator(bsds, tmp_path):
    """BoundaryMetric on mmseg data samples: ground truth from the .mat (every annotator), prediction written as
    the 8-bit PNG the benchmark reads; equal to evaluate_image on the same arrays."""
    metric = METRICS.build(dict(type='BoundaryMetric', thresholds=9, output_dir=str(tmp_path / 'out')))
    ds = _dataset(bsds)
    g = torch.Generator().manual_seed(0)
    expect = []
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        logits = torch.randn(2, 48, 64, generator=g)
        sample.seg_logits = PixelData(data=logits)
        metric.process({}, [sample.to_dict()])
        strength = np.round(logits.softmax(0)[1].numpy() * 255) / 255
        from mmseg_ext.boundary import read_bsds_boundaries
        expect.append(evaluate_image(strength, read_bsds_boundaries(sample.seg_map_path), thresholds=9))
        assert os.path.isfile(tmp_path / 'out' / f'10000{i}.png')
    assert metric.compute_metrics(metric.results) == summarize(expect, 9)
    fixed = METRICS.build(dict(type='BoundaryMetric', thresholds=[0.5]))
    fixed.process({}, [sample.to_dict()])
    assert set(fixed.compute_metrics(fixed.results)) == {'F', 'precision', 'recall'}
    sample.seg_logits = PixelData(data=torch.zeros(2, 24, 32))
    with pytest.raises(ValueError) as e:
        fixed.process({}, [sample.to_dict()])
    assert str(e.value) == (f'ground truth {sample.seg_map_path!r}: shape (48, 64) differs from the prediction '
                            f'(24, 32) (predictions are resized to ori_shape; keep ground truth at the image size)')


@pytest.mark.parametrize('kw,message', [
    (dict(gt='mat'), "gt: unknown ground-truth mode 'mat'; allowed: ['auto', 'annotators', 'label']"),
    (dict(max_dist=2), 'max_dist: a fraction of the image diagonal in (0, 1) expected, got 2'),
    (dict(nproc=0), 'nproc: must be an integer >= 1, got 0'),
    (dict(matcher='csa'), "matcher: unknown 'csa'; allowed: ['scipy', 'pyedgeeval']"),
])
def test_metric_bad_arguments(kw, message):
    with pytest.raises(ValueError) as e:
        METRICS.build(dict(type='BoundaryMetric', **kw))
    assert str(e.value) == message
