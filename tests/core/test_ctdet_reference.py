"""The end-to-end CenterNet fixtures of ``tests/golden/data/ctdet`` (``detector_*``, ``train_batch``, made by
``tests/golden/generate_ctdet_detector.py`` from CenterNet's own detector, dataset and loss on the seeded checkpoints)
are consistent with our core pieces and with what their notes document: ``ctdet_decode`` reproduces the reference
detections from the recorded raw outputs (flip averaging included), the documented affine and post-processing map
them back to the recorded image boxes, and ``ctdet_targets`` / the losses reproduce the recorded training values.
The model-level comparisons (our detector on these inputs) live with the detector's own tests."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dla_plugins.centernet import ctdet_decode, ctdet_loss, ctdet_targets
from dla_plugins.centernet.losses import clamped_sigmoid, focal_loss
from tests.golden import DATA

CTDET = os.path.join(DATA, 'ctdet')
DETECTORS = ['detector_dla34_dcn_fix', 'detector_dla34_dcn_keep', 'detector_dla34_dcn_fix_flip',
             'detector_dla34_dcn_keep_flip', 'detector_dlav0_fix', 'detector_dlav0_keep']
IMAGES = ['a', 'b']
TARGET_KEYS = ('wh', 'reg', 'ind', 'reg_mask')


def fixture(name: str):
    with open(os.path.join(CTDET, name + '.json')) as f:
        meta = json.load(f)
    return meta, load_file(os.path.join(CTDET, name + '.safetensors'))


def image_case(name: str, key: str):
    meta, ref = fixture(name)
    return meta, meta['images'][key], {k.split('.', 1)[1]: v for k, v in ref.items() if k.startswith(key + '.')}


def test_fixture_set_is_small_and_complete():
    names = {f.rsplit('.', 1)[0] for f in os.listdir(CTDET) if f.startswith(('detector_', 'train_batch'))}
    assert names == set(DETECTORS) | {'detector_inputs', 'train_batch'}
    size = sum(os.path.getsize(os.path.join(CTDET, f)) for f in os.listdir(CTDET)
               if f.startswith(('detector_', 'train_batch')))
    assert size < 3.2e6


@pytest.mark.parametrize('name', DETECTORS)
def test_preprocessing_follows_the_documented_affine(name):
    """c, s and the input size follow the fix_res / keep_res rules of the notes, and the affine is the similarity
    x -> (W / s_w) (x - c) + (W / 2, H / 2)."""
    meta, _ = fixture(name)
    inputs, _ = fixture('detector_inputs')
    for key in IMAGES:
        info = meta['images'][key]
        h, w = inputs['images'][key]['hw']
        if meta['keep_res']:
            assert info['input_hw'] == [(h | 31) + 1, (w | 31) + 1]
            assert info['c'] == [w // 2, h // 2] and info['s'] == info['input_hw'][::-1]
            s_w = info['s'][0]
        else:
            assert info['input_hw'] == [256, 256] and info['c'] == [w / 2, h / 2] and info['s'] == max(h, w)
            s_w = info['s']
        in_h, in_w = info['input_hw']
        k = in_w / s_w
        want = [[k, 0, in_w / 2 - k * info['c'][0]], [0, k, in_h / 2 - k * info['c'][1]]]
        assert np.abs(np.array(info['trans_input']) - np.array(want)).max() < 1e-4
        assert info['out_hw'] == [in_h // 4, in_w // 4] and info['batch'] == (2 if meta['flip_test'] else 1)


@pytest.mark.parametrize('mode', ['fix', 'keep'])
def test_warped_inputs_are_cv2_warp_affine_of_the_images(mode):
    """The stored network inputs (uint8, before normalisation) are cv2.warpAffine(image, trans, INTER_LINEAR)."""
    cv2 = pytest.importorskip('cv2')
    _, tensors = fixture('detector_inputs')
    meta, _ = fixture(f'detector_dla34_dcn_{mode}')
    for key in IMAGES:
        info = meta['images'][key]
        image = tensors[f'images.{key}'].numpy()
        h, w = info['input_hw']
        warped = cv2.warpAffine(image, np.array(info['trans_input']), (w, h), flags=cv2.INTER_LINEAR)
        assert np.array_equal(warped, tensors[f'inputs.{key}.{mode}'].numpy())


def reference_maps(meta, ref):
    """The decoder's inputs as CenterNet's process() forms them, on the recorded classes: sigmoid, flip averaging."""
    hm, wh, reg = ref['hm_kept'].sigmoid(), ref['wh'], ref['reg']
    rest = ref['hm_rest_max'].sigmoid()
    if meta['flip_test']:
        hm = (hm[0:1] + hm[1:2].flip(3)) / 2
        wh = (wh[0:1] + wh[1:2].flip(3)) / 2
        reg = reg[0:1]
        rest = (rest[0:1] + rest[1:2].flip(2)) / 2  # an upper bound of every other class's averaged score
    return hm, wh, reg, rest


@pytest.mark.parametrize('key', IMAGES)
@pytest.mark.parametrize('name', DETECTORS)
def test_decode_reproduces_reference_detections(name, key):
    meta, info, ref = image_case(name, key)
    hm, wh, reg, rest = reference_maps(meta, ref)
    dets = ref['dets'][0]
    assert rest.max() < dets[-1, 4]  # no other class reaches the top-K: the recorded classes decide it
    boxes, scores, classes = ctdet_decode(hm, wh, reg, K=meta['K'])
    assert (scores[0] - dets[:, 4]).abs().max().item() <= 1e-6
    ours = canonical(boxes[0], scores[0], torch.tensor(info['hm_kept_classes'])[classes[0]])
    want = canonical(dets[:, :4], dets[:, 4], dets[:, 5].long())
    assert (ours[0] - want[0]).abs().max().item() <= 1e-4
    assert torch.equal(ours[2], want[2])


def canonical(boxes, scores, classes):
    """Rows by score (best first), exact ties by class then x1, y1: the reference's top-K has exactly tied scores
    (the seeded heads give a nearly flat heatmap; see the manifests' exact_ties), whose order topk leaves open."""
    order = np.lexsort((boxes[:, 1].numpy(), boxes[:, 0].numpy(), classes.numpy(), -scores.numpy()))
    order = torch.from_numpy(order)
    return boxes[order], scores[order], classes[order]


@pytest.mark.parametrize('key', IMAGES)
@pytest.mark.parametrize('name', DETECTORS)
def test_post_processing_maps_detections_to_the_image(name, key):
    """Every one of the K detections is kept; image boxes = the inverse similarity of the output-stride boxes; the
    clipped boxes are clamped to the image; the flat order is by class, then decode order."""
    meta, info, ref = image_case(name, key)
    inputs, _ = fixture('detector_inputs')
    h, w = inputs['images'][key]['hw']
    dets, rank = ref['dets'][0].double(), ref['rank']
    assert sorted(rank.tolist()) == list(range(meta['K']))
    assert torch.equal(ref['scores'], dets[rank, 4].float()) and torch.equal(ref['classes'], dets[rank, 5].long())
    order = ref['classes'] * meta['K'] + rank
    assert torch.equal(order, order.sort().values)
    out_h, out_w = info['out_hw']
    s_w = info['s'][0] if meta['keep_res'] else info['s']
    c = torch.tensor(info['c'], dtype=torch.float64).repeat(2)
    centre = torch.tensor([out_w / 2, out_h / 2], dtype=torch.float64).repeat(2)
    boxes = (dets[rank, :4] - centre) * (s_w / out_w) + c
    assert (boxes - ref['boxes']).abs().max().item() <= 1e-4
    lo = torch.zeros(4)
    hi = torch.tensor([w, h, w, h], dtype=torch.float32)
    assert torch.equal(ref['boxes_clipped'], torch.maximum(torch.minimum(ref['boxes'], hi), lo))
    assert not torch.equal(ref['boxes_clipped'], ref['boxes'])  # some boxes do leave the image


def test_flip_fixture_differs_from_the_plain_run():
    """The flip-test fixture records a second (mirrored) pass that changes the detections; its first pass is the plain
    run (up to batched-convolution rounding)."""
    _, plain = fixture('detector_dla34_dcn_fix')
    _, flip = fixture('detector_dla34_dcn_fix_flip')
    assert (flip['a.wh'][0] - plain['a.wh'][0]).abs().max() < 1e-5
    assert (flip['a.wh'][1] - plain['a.wh'][0]).abs().max() > 1e-3
    assert not torch.equal(flip['a.dets'], plain['a.dets'])


def train_targets():
    meta, ref = fixture('train_batch')
    ours = {key: ctdet_targets(ref[f'{key}.boxes'], ref[f'{key}.classes'], meta['num_classes'],
                               tuple(meta['output_hw']), max_objs=meta['max_objs']) for key in meta['batch']}
    return meta, ref, ours


def test_train_targets_match_reference_dataset():
    meta, ref, ours = train_targets()
    kept = meta['target_classes']
    for key, got in ours.items():
        for k in TARGET_KEYS:
            assert got[k].dtype == ref[f'{key}.{k}'].dtype and torch.equal(got[k], ref[f'{key}.{k}']), (key, k)
        assert torch.equal(got['hm'][kept], ref[f'{key}.hm_kept'])
        assert not got['hm'][[c for c in range(meta['num_classes']) if c not in kept]].any()


def test_train_batch_covers_the_listed_cases():
    """Several boxes per image, two overlapping boxes of one class in each, one box reaching past the output map."""
    meta, ref, _ = train_targets()
    for key in meta['batch']:
        boxes, classes = ref[f'{key}.boxes'], ref[f'{key}.classes']
        assert len(boxes) >= 3 and int(ref[f'{key}.reg_mask'].sum()) == len(boxes)
        same = [i for i in range(len(classes)) if (classes == classes[i]).sum() == 2]
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes[same].tolist()
        assert min(ax2, bx2) > max(ax1, bx1) and min(ay2, by2) > max(ay1, by1)
    assert (ref['a.boxes'][:, 2] > meta['output_hw'][1] - 1).any()  # clipped at the right border


def test_train_losses_match_reference_from_recorded_outputs():
    meta, ref, ours = train_targets()
    targets = {k: torch.stack([ours[key][k] for key in meta['batch']]) for k in ('hm',) + TARGET_KEYS}
    outputs = {'hm': torch.zeros_like(targets['hm']), 'wh': ref['out.wh'], 'reg': ref['out.reg']}
    got = ctdet_loss(outputs, targets)
    for k in ('wh_loss', 'off_loss'):
        want = ref[f'loss.{k}'].item()
        assert abs(got[k].item() - want) <= 1e-6 * max(1.0, abs(want)), k
    kept = meta['target_classes']
    focal = focal_loss(clamped_sigmoid(ref['out.hm_kept']), targets['hm'][:, kept])
    assert abs(focal.item() - ref['loss.focal_kept'].item()) <= 1e-6 * ref['loss.focal_kept'].item()
    w = meta['loss_weights']
    total = w['hm'] * ref['loss.hm_loss'] + w['wh'] * ref['loss.wh_loss'] + w['off'] * ref['loss.off_loss']
    assert abs(total.item() - ref['loss.loss'].item()) <= 1e-6 * ref['loss.loss'].item()
    assert meta['loss_weights'] == {'hm': 1, 'wh': 0.1, 'off': 1}


def test_hm_fingerprints_are_consistent():
    """The recorded hm pieces agree with each other: samples of kept classes equal the kept maps, the class sums of
    kept classes equal their maps' sums, and no other class exceeds hm_rest_max anywhere sampled."""
    for name in DETECTORS + ['train_batch']:
        meta, ref = fixture(name)
        prefixes = ['out.'] if name == 'train_batch' else [f'{k}.' for k in IMAGES]
        for p in prefixes:
            kept = meta['target_classes'] if name == 'train_batch' else meta['images'][p[:-1]]['hm_kept_classes']
            hm_kept, index = ref[p + 'hm_kept'], ref[p + 'hm_index']
            b, _, h, w = hm_kept.shape
            cls, pix = index // (h * w), index % (h * w)
            for j, c in enumerate(kept):
                sel = cls == c
                assert torch.equal(ref[p + 'hm_sample'][:, sel], hm_kept[:, j].flatten(1)[:, pix[sel]]), (name, p, c)
                assert torch.allclose(ref[p + 'hm_class_sum'][:, c], hm_kept[:, j].double().sum((1, 2)), rtol=1e-9)
            other = ~torch.isin(cls, torch.tensor(kept))
            rest = ref[p + 'hm_rest_max'].flatten(1)[:, pix[other]]
            assert (ref[p + 'hm_sample'][:, other] <= rest).all() and other.any()


def normalised(warped: torch.Tensor, train: bool) -> torch.Tensor:
    """The documented normalisation: BGR, COCO mean/std (float32); float64 in test pre-processing, float32 in the
    training dataset; HWC -> CHW."""
    meta, _ = fixture('detector_inputs')
    mean, std = np.float32(meta['mean_bgr']), np.float32(meta['std_bgr'])
    w = warped.numpy()
    x = (w.astype(np.float32) / 255. - mean) / std if train else ((w / 255. - mean) / std).astype(np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


@pytest.mark.parametrize('name', DETECTORS + ['train_batch'])
def test_normalised_inputs_match_the_reference_checksums(name):
    meta, _ = fixture(name)
    _, inputs = fixture('detector_inputs')
    for key in IMAGES:
        if name == 'train_batch':
            want, warped = meta['input_channel_sums'][key], inputs[f'inputs.{key}.fix']
        else:
            want = meta['images'][key]['input_channel_sums']
            warped = inputs[f'inputs.{key}.{"keep" if meta["keep_res"] else "fix"}']
        got = normalised(warped, name == 'train_batch').double().sum((1, 2))
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-9), (key, got, want)
        rgb = normalised(warped.flip(2), name == 'train_batch').double().sum((1, 2))  # a wrong channel order shows
        assert not torch.allclose(rgb, torch.tensor(want, dtype=torch.float64), rtol=1e-6)
