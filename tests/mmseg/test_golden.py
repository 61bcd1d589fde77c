"""ucbdrive's Cityscapes DLASeg (reference checkpoint from its golden fixture) -> ``dla-plugins convert --to mmseg``
-> ``load_from`` of an mmseg EncoderDecoder (DLA + DLAUpHead) -> the reference's features and logits."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from mmseg.registry import MODELS

import mmseg_ext  # noqa: F401  (registers DLA, DLAUpHead)
from dla_plugins.checkpoint import read_state_dict
from dla_plugins.tools.cli import main
from tests.golden import load_manifest, load_outputs, make_input, tolerance, write_checkpoint


@pytest.fixture(autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')


def _model(init_cfg=None):
    """ucbdrive's dla34up(19) (down_ratio 2, undilated) written as an mmseg config."""
    return MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='DLA', arch='dla34', out_indices=(1, 2, 3, 4, 5), output_stride=32, init_cfg=init_cfg),
        decode_head=dict(type='DLAUpHead', in_channels=[32, 64, 128, 256, 512], strides=[2, 4, 8, 16, 32],
                         num_classes=19, flavor='paper', dropout_ratio=0.0, align_corners=False),
        train_cfg=dict(), test_cfg=dict(mode='whole'))).eval()


def test_converted_ucbdrive_dlaseg_loads_through_load_from(tmp_path, capsys):
    manifest = load_manifest('ucbdrive_dlaseg_dla34')
    src = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    dst = str(tmp_path / 'mmseg.pth')
    assert main(['convert', src, dst, '--to', 'mmseg', '--no-progress']) == 0
    assert '(ucbdrive-dlaseg layout' in capsys.readouterr().out
    model = _model()
    mmengine_load_checkpoint(model, dst, map_location='cpu', strict=True)  # what Runner's load_from does, strictly
    ref = load_outputs('ucbdrive_dlaseg_dla34')
    x = make_input(manifest)
    with torch.no_grad():
        feats = model.decode_head.dla_up(model.backbone(x))[0]
        logits = model.decode_head(model.backbone(x))
    up = read_state_dict(src)['up.weight']  # ucbdrive's frozen bilinear upsampling (skipped by the converter)
    logits = F.conv_transpose2d(logits, up, stride=2, padding=1, groups=19)
    for got, want in ((feats, ref['features']), (logits, ref['logits'])):
        assert (got - want).abs().max().item() <= tolerance(want)[0]


def test_init_cfg_takes_the_backbone_of_a_dlaseg_checkpoint(tmp_path):
    manifest = load_manifest('ucbdrive_dlaseg_dla34')
    src = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    model = _model(init_cfg=dict(type='Pretrained', checkpoint=src))
    model.backbone.init_weights()
    state = read_state_dict(src)
    assert torch.equal(model.backbone.body.level5.root.conv.weight, state['base.level5.root.conv.weight'])


def test_mmcv_modulated_deform_conv_matches_ours_under_the_conversion_rule():
    """The golden fixtures ran DCNv2/mmcv/detectron2 through a torchvision stand-in; this checks the real mmcv op
    (CPU build): mmdetection3d's ``conv.conv_offset`` -> our ``offset_mask`` with no channel reordering."""
    from mmcv.ops import ModulatedDeformConv2dPack

    from dla_plugins import ModulatedDeformConv2d

    torch.manual_seed(0)
    theirs = ModulatedDeformConv2dPack(8, 6, 3, padding=1, bias=True).eval()
    with torch.no_grad():
        theirs.conv_offset.weight.normal_(0, 0.3)  # non-zero offsets and masks
        theirs.conv_offset.bias.normal_(0, 0.5)
        theirs.bias.normal_()
    ours = ModulatedDeformConv2d(8, 6, 3, padding=1, bias=True).eval()
    ours.load_state_dict({'weight': theirs.weight, 'bias': theirs.bias, 'offset_mask.weight': theirs.conv_offset.weight,
                          'offset_mask.bias': theirs.conv_offset.bias})
    x = torch.randn(2, 8, 11, 13)
    with torch.no_grad():
        ref = theirs(x)
        assert (ours(x) - ref).abs().max().item() <= tolerance(ref, deformable=True)[0]
