"""CenterNet "ctdet" pieces (``dla_plugins.centernet``) against xingyizhou/CenterNet's own code: the fixtures of
``tests/golden/data/ctdet`` (made by ``tests/golden/generate_ctdet.py``) hold what its decoder, dataset, losses and
head construction returned; and the bad-input errors."""
import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from dla_plugins.centernet import (
    CenterNetHeads,
    ctdet_decode,
    ctdet_loss,
    ctdet_targets,
    draw_umich_gaussian,
    gaussian_radius,
)
from tests.golden import DATA, load_manifest, load_outputs, make_input, seeded_maps, synth_state_dict

CTDET = os.path.join(DATA, 'ctdet')
TARGET_KEYS = ('hm', 'wh', 'reg', 'ind', 'reg_mask')


def fixture(name: str):
    with open(os.path.join(CTDET, name + '.json')) as f:
        meta = json.load(f)
    return meta, load_file(os.path.join(CTDET, name + '.safetensors'))


def targets_of(name: str):
    meta, ref = fixture(name)
    ours = ctdet_targets(ref['boxes'], ref['classes'], meta['num_classes'], tuple(meta['output_hw']),
                         max_objs=meta['max_objs'])
    return ours, ref


@pytest.mark.parametrize('name', ['decode_random', 'decode_plateaus', 'decode_no_reg_nonsquare'])
def test_decode_matches_reference(name):
    meta, ref = fixture(name)
    maps = seeded_maps(meta['maps'])
    hm = maps['hm'].sigmoid()
    boxes, scores, classes = ctdet_decode(hm, maps['wh'], maps['reg'] if meta['reg'] else None, K=meta['K'])
    dets = ref['detections']
    assert boxes.shape == (*dets.shape[:2], 4) and classes.dtype == torch.int64
    assert (boxes - dets[..., :4]).abs().max().item() <= 1e-4
    assert (scores - dets[..., 4]).abs().max().item() <= 1e-6
    assert torch.equal(classes, dets[..., 5].long())
    assert torch.equal(hm, maps['hm'].sigmoid())  # inputs untouched


@pytest.mark.parametrize('name', ['targets_a', 'targets_b'])
def test_targets_match_reference_dataset(name):
    ours, ref = targets_of(name)
    for k in TARGET_KEYS:
        assert ours[k].dtype == ref[k].dtype, k
        assert torch.equal(ours[k], ref[k]), k


def test_targets_cover_the_listed_cases():
    """The fixture exercises what it claims: overlapping peaks of one class, a clipped box, an empty slot."""
    ours, ref = targets_of('targets_a')
    assert ref['reg_mask'].tolist() == [1, 1, 1, 1, 0, 1, 0, 0]
    assert (ref['boxes'][:, 2] > 31).any() and ref['classes'].tolist().count(0) == 2
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = ref['boxes'][:2].tolist()
    assert min(ax2, bx2) > max(ax1, bx1) and min(ay2, by2) > max(ay1, by1)  # boxes 0 and 1 overlap
    assert int((ref['hm'] == 1).sum()) == 5


def test_losses_match_reference():
    meta, ref = fixture('losses')
    outputs = seeded_maps(meta['maps'])
    before = {k: v.clone() for k, v in outputs.items()}
    batch = [targets_of(n)[0] for n in meta['batch']]
    targets = {k: torch.stack([t[k] for t in batch]) for k in TARGET_KEYS}
    for tag, (hm_w, wh_w, off_w) in meta['weights'].items():
        got = ctdet_loss(outputs, targets, hm_weight=hm_w, wh_weight=wh_w, off_weight=off_w)
        for k, v in got.items():
            want = ref[f'{tag}.{k}']
            assert abs(v.item() - want.item()) <= 1e-6 * max(1.0, abs(want.item())), (tag, k)
    empty = {**targets, 'hm': torch.zeros_like(targets['hm'])}
    got = ctdet_loss(outputs, empty)['hm_loss']
    assert abs(got.item() - ref['focal_no_centre'].item()) <= 1e-6 * ref['focal_no_centre'].item()
    assert all(torch.equal(outputs[k], before[k]) for k in outputs)  # CenterNet's _sigmoid works in place; ours not


@pytest.mark.parametrize('name', ['heads_conv8_k1', 'heads_plain_k3'])
def test_heads_init_and_forward_match_reference(name):
    meta, ref = fixture(name)
    torch.manual_seed(meta['init_seed'])
    heads = CenterNetHeads(16, meta['heads'], head_conv=meta['head_conv'], final_kernel=meta['final_kernel'])
    state = heads.state_dict()
    assert [[k, list(v.shape), 'float32'] for k, v in state.items()] == meta['tensors']
    for k, v in state.items():
        assert torch.equal(v, ref[f'init.{k}']), k
    heads.load_state_dict(synth_state_dict(meta), strict=True)
    with torch.no_grad():
        out = heads(make_input(meta))
    assert list(out) == list(meta['heads'])
    for k, v in out.items():
        assert (v - ref[k]).abs().max().item() <= 1e-6, k


def test_heads_of_a_centernet_checkpoint_load_by_name():
    """The head keys of the CenterNet DLA-34 fixture (the reference's own create_model) load strictly, and our
    heads reproduce its head outputs from the features it recorded."""
    manifest = load_manifest('centernet_dla34_dcn')
    ref = load_outputs('centernet_dla34_dcn')
    names = {'hm': 80, 'wh': 2, 'reg': 2}
    state = {k: v for k, v in synth_state_dict(manifest).items() if k.split('.')[0] in names}
    heads = CenterNetHeads(64, names)
    heads.load_state_dict(state, strict=True)
    assert list(heads.state_dict()) == list(state)
    with torch.no_grad():
        out = heads(ref['features'])
    for k in names:
        assert (out[k] - ref[k]).abs().max().item() <= 1e-5 * max(1.0, ref[k].abs().max().item()), k


def test_gaussian_radius_matches_reference():
    meta, ref = fixture('gaussian_radius')
    ours = [[gaussian_radius(tuple(size), min_overlap=o) for o in meta['min_overlaps']] for size in meta['sizes']]
    assert torch.equal(torch.tensor(ours, dtype=torch.float64), ref['radius'])


def test_gaussian_peak_is_clipped_at_the_border():
    hm = draw_umich_gaussian(torch.zeros(5, 6), (5, 0), 2)
    assert hm[0, 5] == 1 and hm[:3, 3:].gt(0).all() and hm[3:].eq(0).all() and hm[:, :3].eq(0).all()
    assert gaussian_radius((1, 1)) > 0


BAD = [
    (lambda: CenterNetHeads(0, {'hm': 3}), 'in_channels: 0; allowed: an int >= 1'),
    (lambda: CenterNetHeads(64, {'hm': 3}, head_conv=-1), 'head_conv: -1; allowed: an int >= 0 (0: one conv per head)'),
    (lambda: CenterNetHeads(64, {'hm': 3}, final_kernel=2), 'final_kernel: 2; allowed: an odd int >= 1'),
    (lambda: CenterNetHeads(64, {}), "heads: {}; allowed: a non-empty mapping name -> channels, e.g. "
                                     "{'hm': 80, 'wh': 2, 'reg': 2}"),
    (lambda: CenterNetHeads(64, {'train': 3}),
     "heads: name 'train'; allowed: a Python identifier that is no nn.Module attribute"),
    (lambda: CenterNetHeads(64, {'hm': 0}), "heads['hm']: 0; allowed: an int >= 1"),
    (lambda: ctdet_decode(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 4)),
     "wh: shape (1, 2, 8, 4); allowed: (1, 2, 8, 8) (hm's batch and size)"),
    (lambda: ctdet_decode(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), torch.rand(2, 2, 8, 8)),
     "reg: shape (2, 2, 8, 8); allowed: (1, 2, 8, 8) (hm's batch and size)"),
    (lambda: ctdet_decode(torch.rand(3, 8, 8), torch.rand(1, 2, 8, 8)),
     'hm: shape (3, 8, 8); allowed: (batch, classes, height, width)'),
    (lambda: ctdet_decode(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), K=65),
     'K: 65; allowed: 1..64 (height x width of hm)'),
    (lambda: ctdet_loss({'hm': torch.zeros(1)}, {}), "outputs: missing ['wh', 'reg']; allowed: a dict with "
                                                     "['hm', 'wh', 'reg']"),
    (lambda: ctdet_targets([[0, 0, 4, 4]], [3], 3, (8, 8)), 'classes: [3]; allowed: 0..2'),
    (lambda: ctdet_targets([[0, 0, 4, 4]], [0.0], 3, (8, 8)),
     'classes: shape (1,) torch.float32; allowed: (1,) ints'),
    (lambda: ctdet_targets([[0, 0, 4]], [0], 3, (8, 8)), 'boxes: shape (1, 3); allowed: (N, 4) finite x1, y1, x2, y2'),
    (lambda: ctdet_targets([[0, 0, 4, 4]], [0], 0, (8, 8)), 'num_classes: 0; allowed: an int >= 1'),
    (lambda: ctdet_targets([[0, 0, 4, 4]], [0], 3, (8, 8), max_objs=0), 'max_objs: 0; allowed: an int >= 1'),
    (lambda: ctdet_targets([[0, 0, 4, 4]], [0], 3, (8,)), 'output_size: (8,); allowed: (height, width), ints >= 1'),
    (lambda: gaussian_radius((4, 4), min_overlap=1.0), 'min_overlap: 1.0; allowed: a float in (0, 1)'),
]


@pytest.mark.parametrize('make,message', BAD, ids=[m.split(':')[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_input(make, message):
    with pytest.raises(ValueError, match='^' + re.escape(message) + '$'):
        make()
