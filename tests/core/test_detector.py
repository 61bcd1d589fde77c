"""``dla_plugins.CenterNet``: CenterNet's ctdet checkpoints (pose_dla_dcn and dlav0, rebuilt from the golden
manifests in their real ``{'epoch', 'state_dict'}`` container) load whole, heads included, and reproduce the reference
head outputs; heads of another class count are refused or re-initialised; conversion keeps ctdet heads."""
import pytest
import torch

import dla_plugins as dp
from dla_plugins.checkpoint import CheckpointError, read_state_dict
from dla_plugins.convert import convert, format_options
from dla_plugins.detector import ctdet_heads
from tests.golden import load_manifest, load_outputs, make_input, write_checkpoint

FIXTURES = {'centernet_dla34_dcn': {}, 'centernet_dla34_v0': dict(flavor='paper', node_type='conv')}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ctdet')
    return {n: write_checkpoint(load_manifest(n), str(tmp / f'{n}.pth')) for n in FIXTURES}


@pytest.mark.parametrize('name', list(FIXTURES))
def test_ctdet_checkpoint_loads_whole_and_matches_the_reference_heads(name, files):
    model = dp.CenterNet('dla34', **FIXTURES[name]).eval()
    report = model.load_weights(files[name])
    state = read_state_dict(files[name])
    heads = [k for k in state if k.split('.')[0] in ('hm', 'wh', 'reg')]
    assert len(heads) == 12 and all(f'{k} -> heads.{k}' in report.converted for k in heads)
    assert not [k for k, r in report.skipped.items() if 'head' in r]
    ref = load_outputs(name)
    with torch.no_grad():
        out = model(make_input(load_manifest(name)))
    for k in ('hm', 'wh', 'reg'):
        assert (out[k] - ref[k]).abs().max().item() < 1e-5, k


def test_module_prefix_and_checkpoint_path_argument(files, tmp_path):
    ckpt = torch.load(files['centernet_dla34_dcn'], weights_only=True)
    ckpt['state_dict'] = {'module.' + k: v for k, v in ckpt['state_dict'].items()}  # DataParallel, not unwrapped
    torch.save(ckpt, tmp_path / 'dp.pth')
    a = dp.CenterNet(checkpoint_path=str(tmp_path / 'dp.pth'))
    b = dp.CenterNet(checkpoint_path=files['centernet_dla34_dcn'])
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_other_class_count_is_refused_or_reinitialised(files):
    with pytest.raises(CheckpointError) as err:
        dp.CenterNet(heads={'hm': 20, 'wh': 2, 'reg': 2}, checkpoint_path=files['centernet_dla34_dcn'])
    assert str(err.value) == (
        "heads: the checkpoint's hm head has 80 classes, the model's 20; build the model with "
        'heads={"hm": 80, ...} or pass reinit_hm=True to keep a fresh 20-class heatmap head')
    model = dp.CenterNet(heads={'hm': 20, 'wh': 2, 'reg': 2})
    report = model.load_weights(files['centernet_dla34_dcn'], reinit_hm=True)
    assert report.dropped_classifier == ['heads.hm.2.weight', 'heads.hm.2.bias']
    assert torch.equal(model.heads.hm[2].bias, torch.full((20,), -2.19))
    state = read_state_dict(files['centernet_dla34_dcn'])
    assert torch.equal(model.heads.wh[2].weight, state['wh.2.weight'])


def test_backbone_only_file_leaves_heads_and_neck_fresh(tmp_path):
    torch.save(dp.create_dla('dla34').state_dict(), tmp_path / 'in1k.pth')
    fresh = dp.CenterNet()
    model = dp.CenterNet(checkpoint_path=str(tmp_path / 'in1k.pth'))
    assert torch.equal(model.backbone.level5.root.conv.weight,
                       read_state_dict(str(tmp_path / 'in1k.pth'))['level5.root.conv.weight'])
    assert torch.equal(model.heads.hm[2].bias, fresh.heads.hm[2].bias)


def test_detect_scales_the_decoded_boxes_to_input_pixels(files):
    model = dp.CenterNet(checkpoint_path=files['centernet_dla34_dcn']).eval()
    x = make_input(load_manifest('centernet_dla34_dcn'))
    with torch.no_grad():
        boxes, scores, classes = model.detect(x, K=7)
        out = model(x)
    ref = dp.centernet.ctdet_decode(out['hm'].sigmoid(), out['wh'], out['reg'], K=7)
    assert torch.equal(boxes, ref[0] * 4) and torch.equal(scores, ref[1]) and torch.equal(classes, ref[2])


def test_ctdet_heads_only_for_ctdet_files(files):
    state = read_state_dict(files['centernet_dla34_dcn'])
    assert ctdet_heads(state) == dict(heads={'hm': 80, 'wh': 2, 'reg': 2}, head_conv=256, final_kernel=1)
    pose = dict(state, **{'hps.2.weight': torch.zeros(34, 256, 1, 1)})
    assert ctdet_heads(pose) == {}
    trunk = {k: v for k, v in state.items() if k.startswith(('base.', 'dla_up.', 'ida_up.'))}
    assert ctdet_heads(trunk) == {}


def test_convert_keeps_ctdet_heads_for_core_and_detectron2_and_drops_them_for_mmseg(files):
    src = files['centernet_dla34_dcn']
    core = convert(src, 'core')
    assert format_options(core).startswith("CenterNet('dla34', down_ratio=4")
    model = dp.CenterNet(**core.network)
    model.load_state_dict(core.state, strict=True)
    d2 = convert(src, 'detectron2')
    assert sum(k.startswith('heads.') for k in d2.state) == 12
    assert d2.host_options[:2] == ['MODEL.META_ARCHITECTURE', 'DLAPCenterNet']
    mm = convert(src, 'mmseg')
    assert not [k for k in mm.state if 'heads' in k]


def test_registry_ctdet_entries_build_the_detector():
    with torch.device('meta'):
        coco = dp.create_from_weights('centernet/ctdet_coco_dla_2x')
        pascal = dp.create_from_weights('centernet/ctdet_pascal_dla_384')
        v0 = dp.create_from_weights('centernet/ctdet_coco_dlav0_1x')
        pose = dp.create_from_weights('centernet/multi_pose_dla_3x')
    assert isinstance(coco, dp.CenterNet) and coco.num_heatmap_classes == 80
    assert pascal.num_heatmap_classes == 20 and v0.neck.flavor == 'paper'
    assert type(pose) is dp.DLASeg


def test_bad_heads():
    with pytest.raises(ValueError, match=r"^heads: \{'wh': 2\}; allowed: a mapping with an 'hm' \(class heatmap"):
        dp.CenterNet(heads={'wh': 2})
