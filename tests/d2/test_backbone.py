"""d2_ext backbones with real detectron2: registration, shapes (odd sizes too), freezing, norms, timm equality."""
import math

import pytest
import torch
import torch.nn as nn
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from detectron2.structures import ImageList

import d2_ext
from d2_ext import DLABackbone, DLAUpNeck, add_dlap_config
from dla_plugins import ModulatedDeformConv2d, load_checkpoint
from dla_plugins.backbone import STAGES
from tests.helpers import randomize_bn, timm_reference

BUILDERS = ('build_dlap_backbone', 'build_dlap_fpn_backbone', 'build_dlap_retinanet_fpn_backbone',
            'build_dlap_up_backbone')
ODD_SIZES = ((97, 75), (33, 129))


def _cfg(name, arch='dla46_c', **dlap):
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.DLAP.ARCH = arch
    for k, v in dlap.items():
        node, key = (cfg.MODEL.DLAP.NECK, k[5:]) if k.startswith('NECK_') else (cfg.MODEL.DLAP, k)
        setattr(node, key, v)
    return cfg


def _check_shapes(backbone, h, w):
    """Forward an h x w image (padded as the model pads it) and compare with output_shape()."""
    x = ImageList.from_tensors([torch.randn(3, h, w)], backbone.size_divisibility).tensor
    backbone.eval()
    with torch.no_grad():
        out = backbone(x)
    shapes = backbone.output_shape()
    assert list(out) == list(shapes)
    for name, y in out.items():
        s = shapes[name]
        assert y.shape == (1, s.channels, math.ceil(x.shape[2] / s.stride), math.ceil(x.shape[3] / s.stride)), name


def test_registered_names_do_not_collide():
    for name in BUILDERS:
        assert BACKBONE_REGISTRY.get(name) is getattr(d2_ext, name)
    # CenterNet2 / AdelaiDet names stay free for those projects
    for foreign in ('build_dla_backbone', 'build_fcos_dla_fpn_backbone'):
        assert foreign not in BACKBONE_REGISTRY
    cfg = get_cfg()
    add_dlap_config(cfg)
    assert 'DLA' not in cfg.MODEL and cfg.MODEL.DLAP.ARCH == 'dla34' and cfg.MODEL.DLAP.NORM == 'FrozenBN'


@pytest.mark.parametrize('name', BUILDERS)
@pytest.mark.parametrize('size', ODD_SIZES)
def test_output_shape_matches_forward(name, size):
    backbone = build_backbone(_cfg(name))
    _check_shapes(backbone, *size)


def test_plain_backbone_reports_true_channels_and_strides_unpadded():
    b = DLABackbone('dla34', out_features=['level0', 'level1', 'level2', 'level5'], norm='BN')
    assert {k: (s.channels, s.stride) for k, s in b.output_shape().items()} == {
        'level0': (16, 1), 'level1': (32, 2), 'level2': (64, 4), 'level5': (512, 32)}
    assert b.size_divisibility == 0
    _check_shapes(b, 97, 75)  # no padding: ceil(H / stride) everywhere
    dilated = DLABackbone('dla46_c', out_features=['level3', 'level5'], norm='BN', output_stride=8)
    assert {k: s.stride for k, s in dilated.output_shape().items()} == {'level3': 8, 'level5': 8}
    _check_shapes(dilated, 45, 61)


def test_up_neck_variants_p3_p7_native_width_and_dcn():
    bottom = DLABackbone('dla46_c', out_features=['level3', 'level4', 'level5'], norm='BN')
    neck = DLAUpNeck(bottom, ['level3', 'level4', 'level5'], out_channels=0, node_type='dcn', norm='BN',
                     top_block=LastLevelP6P7(256, 256, in_feature='p5'), size_divisibility=0)
    assert {k: (s.channels, s.stride) for k, s in neck.output_shape().items()} == {
        'p3': (64, 8), 'p4': (128, 16), 'p5': (256, 32), 'p6': (256, 64), 'p7': (256, 128)}
    assert any(isinstance(m, ModulatedDeformConv2d) for m in neck.dla_up.modules())
    _check_shapes(neck, 71, 90)
    neck.train()
    out = neck(torch.randn(2, 3, 64, 64))
    sum(v.mean() for v in out.values()).backward()
    offsets = [m.offset_mask.weight.grad for m in neck.dla_up.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert all(g is not None and g.abs().sum() > 0 for g in offsets)
    # the top block may also read a bottom-up level
    neck2 = DLAUpNeck(bottom, ['level3', 'level4', 'level5'], out_channels=32,
                      top_block=LastLevelP6P7(256, 32, in_feature='level5'))
    _check_shapes(neck2, 64, 64)


def test_neck_bad_arguments():
    bottom = DLABackbone('dla46_c', norm='BN')
    with pytest.raises(ValueError, match=r"in_features: need >= 2 features of bottom_up; unknown: \['res5'\]"):
        DLAUpNeck(bottom, ['level4', 'res5'])
    with pytest.raises(ValueError, match='top_block: in_feature'):
        DLAUpNeck(bottom, ['level4', 'level5'], top_block=LastLevelP6P7(256, 256, in_feature='res5'))
    dilated = DLABackbone('dla46_c', out_features=['level4', 'level5'], output_stride=16)
    with pytest.raises(ValueError, match='strides must be strictly increasing'):
        DLAUpNeck(dilated, ['level4', 'level5'])
    with pytest.raises(ValueError, match=r"norm: unknown norm 'LN'; allowed: \['FrozenBN', 'BN', 'SyncBN'"):
        DLAUpNeck(bottom, ['level4', 'level5'], norm='LN')
    with pytest.raises(ValueError, match=r"out_features: unknown level\(s\) \['res2'\]"):
        DLABackbone('dla46_c', out_features=['res2'])
    with pytest.raises(ValueError, match='freeze_at: must be an integer in 0..5, got 6'):
        DLABackbone('dla46_c', freeze_at=6)
    cfg = _cfg('build_dlap_up_backbone', NECK_TOP_BLOCK='p8')
    with pytest.raises(ValueError, match=r"MODEL.DLAP.NECK.TOP_BLOCK: unknown top block 'p8'"):
        build_backbone(cfg)


@pytest.mark.parametrize('freeze_at', [0, 1, 3, 5])
def test_freeze_at_has_resnet_meaning(freeze_at):
    b = DLABackbone('dla46_c', norm='BN', freeze_at=freeze_at)
    b.train()
    loss = sum(v.mean() for v in b(torch.randn(2, 3, 64, 64)).values())
    if freeze_at < 5:
        loss.backward()
    else:  # everything frozen: nothing to differentiate
        assert not loss.requires_grad
    for i, group in enumerate(STAGES):
        frozen = i < freeze_at
        for name in group:
            mod = getattr(b.dla, name)
            params = list(mod.parameters())
            assert all(p.grad is None and not p.requires_grad for p in params) if frozen else \
                all(p.requires_grad for p in params)
            norms = [m for m in mod.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
            assert all(isinstance(m, FrozenBatchNorm2d if frozen else nn.BatchNorm2d) for m in norms), name
    if freeze_at < 5:
        assert b.dla.level5.tree1.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('norm,cls', [('FrozenBN', FrozenBatchNorm2d), ('BN', nn.BatchNorm2d),
                                      ('SyncBN', nn.SyncBatchNorm), ('GN', nn.GroupNorm)])
def test_norms_are_the_requested_types(norm, cls):
    cfg = _cfg('build_dlap_up_backbone', NORM=norm, FREEZE_AT=0, NECK_NORM=norm)
    b = build_backbone(cfg)
    kinds = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, FrozenBatchNorm2d)
    norms = [m for m in b.modules() if isinstance(m, kinds)]
    assert norms and all(type(m) is cls or (norm == 'BN' and isinstance(m, cls)) for m in norms)
    if norm == 'GN':  # 32 groups where possible, fewer on DLA's narrow first levels
        assert {m.num_channels: m.num_groups for m in norms}[16] == 16
    b.train()
    out = b(torch.randn(2, 3, 64, 64))  # SyncBN falls back to BN outside a process group
    assert all(torch.isfinite(v).all() for v in out.values())


def test_backbone_equals_timm_dla_features():
    """The wrapped DLA is the core DLA: same weights give the same features as timm's own DLA."""
    ref = randomize_bn(timm_reference('dla34', num_classes=0)).eval()  # non-trivial norm statistics and affines
    b = DLABackbone('dla34', norm='FrozenBN').eval()
    state = ref.state_dict()
    load_checkpoint(b.dla, state)  # strict; FrozenBN has no num_batches_tracked, the core's loader drops them
    x = torch.randn(1, 3, 64, 96)  # timm itself needs even sizes at every level
    with torch.no_grad():
        ours = b(x)
        theirs = ref.forward_intermediates(x, indices=[2, 3, 4, 5], intermediates_only=True)
    for (name, y), z in zip(ours.items(), theirs):
        torch.testing.assert_close(y, z, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


def test_fpn_builders_use_detectron2_fpn_with_our_levels():
    fpn = build_backbone(_cfg('build_dlap_fpn_backbone'))
    assert isinstance(fpn, FPN) and isinstance(fpn.bottom_up, DLABackbone)
    assert isinstance(fpn.top_block, LastLevelMaxPool) and fpn.size_divisibility == 32
    ret = build_backbone(_cfg('build_dlap_retinanet_fpn_backbone', OUT_FEATURES=['level3', 'level4', 'level5']))
    assert isinstance(ret.top_block, LastLevelP6P7) and ret.top_block.in_feature == 'level5'
    assert list(ret.output_shape()) == ['p3', 'p4', 'p5', 'p6', 'p7']
    assert ShapeSpec(channels=256, stride=128) == ret.output_shape()['p7']
