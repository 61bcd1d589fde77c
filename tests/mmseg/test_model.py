"""mmseg adapter, model level: registration, configs, equality with the core, freezing, norms, pretrained loading."""
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, METRICS, MODEL_WRAPPERS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample

import mmseg_ext
from dla_plugins import CheckpointError, DLASeg, create_dla, weights
from dla_plugins.layers import bilinear_upsample_init
from mmseg_ext import get_config_file, list_config_files
from tests.golden import load_manifest, synth_state_dict
from tests.helpers import randomize_bn

CONFIGS = [get_config_file(n) for n in list_config_files() if not n.startswith('_base_')]
CITYSCAPES = get_config_file('dla34_idaup_4xb2-80k_cityscapes-512x1024.py')


@pytest.fixture(autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')
    torch.manual_seed(0)


def _backbone(**kw):
    return MODELS.build(dict(type='DLA', **kw))


def test_registered_names_are_ours():
    assert MODELS.get('DLA') is mmseg_ext.DLA
    assert MODELS.get('DLAUpHead') is mmseg_ext.DLAUpHead
    assert DATASETS.get('CamVidDataset') is mmseg_ext.CamVidDataset
    assert MODEL_WRAPPERS.get('DeviceAwareDDP') is mmseg_ext.DeviceAwareDDP
    for registry, names in ((MODELS, mmseg_ext.REGISTERED['MODELS']), (DATASETS, mmseg_ext.REGISTERED['DATASETS']),
                            (TRANSFORMS, mmseg_ext.REGISTERED['TRANSFORMS']),
                            (METRICS, mmseg_ext.REGISTERED['METRICS'])):
        for name in names:
            assert registry.module_dict[name].__module__.startswith('mmseg_ext.')


def test_configs_exist():
    names = [os.path.basename(c) for c in CONFIGS]
    assert any('cityscapes-512x1024' in n for n in names)
    assert any('paper' in n and '896x896' in n for n in names)
    assert any('camvid-400x400' in n for n in names)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_cfg_options_move_or_drop_the_imagenet_checkpoint(path):
    """ImageNet weights by registry name as shipped, and the documented overrides (docs/mmseg.md): another checkpoint
    path, or training from scratch."""
    from mmseg_ext.train import build_parser, load_config

    backbone = Config.fromfile(path).model.backbone
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=f'dlap://{backbone.arch}.in1k')  # by name
    assert backbone.arch + '.in1k' in weights.names()
    args = build_parser().parse_args([path, '--cfg-options', 'model.backbone.init_cfg.checkpoint=/models/dla34.pth'])
    cfg = load_config(args.config, args.cfg_options)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='/models/dla34.pth')
    args = build_parser().parse_args([path, '--cfg-options', 'model.backbone.init_cfg=None'])
    cfg = load_config(args.config, args.cfg_options)
    assert cfg.model.backbone.init_cfg is None
    MODELS.build(cfg.model.backbone).init_weights()  # no file needed


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_predicts_odd_sizes(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmseg_ext'], allow_failed_imports=False)
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    model = MODELS.build(cfg.model)
    model.eval()
    num_classes = cfg.model.decode_head.num_classes
    h, w = 67, 93
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        stride = cfg.model.decode_head.strides[0]  # 4 (level2: 67 -> 34 -> 17, 93 -> 47 -> 24), 2 for boundaries
        assert logits.shape == ((1, num_classes, 17, 24) if stride == 4 else (1, num_classes, 34, 47))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        pred = model.predict(x, [sample])[0]
    assert pred.pred_sem_seg.data.shape == (1, h, w)
    assert pred.seg_logits.data.shape == (num_classes, h, w)


@pytest.mark.parametrize('output_stride,strides', [(32, [4, 8, 16, 32]), (8, [4, 8, 8, 8])])
def test_backbone_and_head_equal_core_dlaseg(output_stride, strides):
    """Backbone + DLAUpHead compute exactly the core DLASeg (same weights), dilated or not, on odd sizes."""
    ref = DLASeg('dla34', num_classes=7, down_ratio=4, output_stride=output_stride).eval()
    backbone = _backbone(arch='dla34', output_stride=output_stride).eval()
    head = MODELS.build(dict(type='DLAUpHead', in_channels=[64, 128, 256, 512], strides=strides, num_classes=7,
                             dropout_ratio=0.0)).eval()
    assert backbone.out_strides == strides and backbone.out_channels == [64, 128, 256, 512]
    backbone.body.load_state_dict(ref.backbone.state_dict())
    head.dla_up.load_state_dict(ref.neck.state_dict())
    head.conv_seg.load_state_dict(ref.classifier.state_dict())
    x = torch.randn(2, 3, 45, 71)
    with torch.no_grad():
        feats = backbone(x)
        expect_feats = ref.backbone.forward_intermediates(x, intermediates_only=True)[2:]
        for a, b in zip(feats, expect_feats):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        out = head(feats)
        expect = ref.classifier(ref.neck(expect_feats)[0])
    torch.testing.assert_close(out, expect, rtol=0, atol=0)


def test_init_weights_keeps_bilinear_upsampling():
    cfg = Config.fromfile(CITYSCAPES)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    ups = [m for m in model.decode_head.dla_up.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups
    for up in ups:
        expect = torch.empty_like(up.weight)
        ref = nn.ConvTranspose2d(up.in_channels, up.out_channels, up.kernel_size, groups=up.groups, bias=False)
        bilinear_upsample_init(ref)
        expect.copy_(ref.weight)
        torch.testing.assert_close(up.weight.detach(), expect)


def test_frozen_stages_stay_frozen_and_norm_eval_holds_bn():
    backbone = _backbone(arch='dla46_c', frozen_stages=3, norm_eval=True)
    head = MODELS.build(dict(type='DLAUpHead', in_channels=[64, 64, 128, 256], strides=[4, 8, 16, 32],
                             num_classes=3, dropout_ratio=0.0))
    backbone.train()
    frozen = [getattr(backbone.body, n) for n in ('base_layer', 'level0', 'level1', 'level2', 'level3', 'level4')]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in backbone.body.level5.parameters())
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    params = [p for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    x, y = torch.randn(2, 3, 48, 64), torch.randint(0, 3, (2, 12, 16))
    for _ in range(2):
        loss = nn.functional.cross_entropy(head(backbone(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = backbone.state_dict()
    for k, v in before.items():
        frozen = tuple(f'body.{n}' for n in ('base_layer', 'level0', 'level1', 'level2', 'level3', 'level4'))
        if k.startswith(frozen) or 'running' in k or 'num_batches' in k:
            torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    assert not torch.equal(after['body.level5.root.conv.weight'], before['body.level5.root.conv.weight'])
    backbone.train(False)
    assert all(not m.training for m in backbone.modules())


def test_without_norm_eval_bn_trains():
    backbone = _backbone(arch='dla46_c', frozen_stages=0).train()
    assert not any(getattr(backbone.body, n).training for n in ('base_layer', 'level0', 'level1'))
    assert all(m.training for m in backbone.body.level2.modules())


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages_has_mmseg_resnet_meaning_and_matches_d2_freeze_at(frozen_stages):
    """-1 nothing; 0 the stem (everything at stride <= 2); k >= 1 also level2..level{k+1}: detectron2's
    freeze_at = frozen_stages + 1 freezes the same modules (one stage table in the core)."""
    import d2_ext

    backbone = _backbone(arch='dla46_c', frozen_stages=frozen_stages).train()
    stem = ('base_layer', 'level0', 'level1')
    expect = set(stem + tuple(f'level{i}' for i in range(2, frozen_stages + 2))) if frozen_stages >= 0 else set()
    frozen = {n for n in stem + ('level2', 'level3', 'level4', 'level5')
              if not any(p.requires_grad for p in getattr(backbone.body, n).parameters())}
    assert frozen == expect
    d2 = d2_ext.DLABackbone('dla46_c', norm='BN', freeze_at=frozen_stages + 1)
    assert {n for n in stem + ('level2', 'level3', 'level4', 'level5')
            if not any(p.requires_grad for p in getattr(d2.dla, n).parameters())} == expect


def test_with_cp_gives_same_outputs_and_grads():
    a = _backbone(arch='dla46_c', with_cp=False).train()
    b = _backbone(arch='dla46_c', with_cp=True).train()
    b.load_state_dict(a.state_dict())
    assert b.body.grad_checkpointing
    x = torch.randn(2, 3, 40, 56)
    sa, sb = sum(f.square().mean() for f in a(x)), sum(f.square().mean() for f in b(x))
    sa.backward()
    sb.backward()
    torch.testing.assert_close(sa, sb)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    for (name, ba), bb in zip(a.named_buffers(), b.buffers()):  # BN statistics updated once despite recomputation
        torch.testing.assert_close(ba, bb, msg=name)


def test_norm_cfg_translation():
    gn = _backbone(arch='dla46_c', norm_cfg=dict(type='GN', num_groups=32))
    gns = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert gns and not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert gn.body.base_layer[1].num_groups == 16 and gn.body.level5.tree2.bn1.num_groups == 32
    sync = _backbone(arch='dla46_c', norm_cfg=dict(type='SyncBN'))
    assert isinstance(sync.body.base_layer[1], nn.SyncBatchNorm)
    fixed = _backbone(arch='dla46_c', norm_cfg=dict(type='BN', requires_grad=False))
    assert not fixed.body.base_layer[1].weight.requires_grad
    with pytest.raises(ValueError, match=r"norm_cfg: unsupported type 'LN'; allowed: \['BN', 'BN2d', 'SyncBN', 'GN'\]"):
        _backbone(arch='dla46_c', norm_cfg=dict(type='LN'))
    head = MODELS.build(dict(type='DLAUpHead', in_channels=[64, 64, 128, 256], strides=[4, 8, 16, 32],
                             num_classes=3, norm_cfg=dict(type='GN', num_groups=8)))
    assert any(isinstance(m, nn.GroupNorm) for m in head.dla_up.modules())


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r'out_indices: level indices in 0..5 expected, got \(2, 6\)'):
        _backbone(out_indices=(2, 6))
    with pytest.raises(ValueError, match='frozen_stages: must be an integer in -1..4, got 5'):
        _backbone(frozen_stages=5)
    with pytest.raises(ValueError, match='output_stride: must be 32, 16 or 8, got 4'):
        _backbone(output_stride=4)
    with pytest.raises(ValueError, match="variant: unknown DLA variant 'dla35'"):
        _backbone(arch='dla35')
    with pytest.raises(ValueError, match=r"init_cfg: unsupported keys \['prefix'\]; allowed: type, checkpoint"):
        _backbone(init_cfg=[dict(type='Kaiming'), dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')])
    with pytest.raises(ValueError, match=r"init_cfg: None, a dict or a list of dicts expected, got 'x.pth'"):
        _backbone(init_cfg='x.pth')
    with pytest.raises(ValueError, match=r"init_cfg: unknown initializer 'Kaiming2d'; allowed: \['Caffe2Xavier', "
                                         r"'Constant', 'Kaiming', 'Normal', 'Pretrained', 'TruncNormal', 'Uniform', "
                                         r"'Xavier'\]"):
        _backbone(init_cfg=[dict(type='Kaiming2d', layer='Conv2d')])
    with pytest.raises(ValueError, match='init_cfg: at most one Pretrained entry, got 2'):
        _backbone(init_cfg=[dict(type='Pretrained', checkpoint='a.pth'), dict(type='Pretrained', checkpoint='b.pth')])
    with pytest.raises(ValueError, match=r"init_cfg: Pretrained needs checkpoint=PATH, got \{'type': 'Pretrained'\}"):
        _backbone(init_cfg=dict(type='Pretrained'))
    head_cfg = dict(type='DLAUpHead', in_channels=[64, 128, 256, 512], strides=[4, 8, 16, 32], num_classes=3)
    with pytest.raises(ValueError, match=r'channels: DLA-Up outputs the width of the finest level, in_channels\[0\]='):
        MODELS.build(dict(head_cfg, channels=128))
    with pytest.raises(ValueError, match="input_transform: DLAUpHead needs 'multiple_select', got 'resize_concat'"):
        MODELS.build(dict(head_cfg, input_transform='resize_concat'))
    with pytest.raises(ValueError, match="node_type: unknown aggregation node 'deform'; allowed: \\['conv', 'dcn'\\]"):
        MODELS.build(dict(head_cfg, node_type='deform'))
    with pytest.raises(ValueError, match='strides: need one stride per in_channels entry'):
        MODELS.build(dict(head_cfg, strides=[4, 8]))
    head = MODELS.build(head_cfg)
    feats = _backbone(output_stride=8)(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'strides: declared \[4, 8, 16, 32\], but the inputs have heights'):
        head(feats)


@pytest.mark.parametrize('layout', ['timm', 'ucbdrive'])
def test_pretrained_init_cfg_loads_strictly_and_drops_classifier(tmp_path, layout):
    src = randomize_bn(create_dla('dla34', num_classes=1000))
    if layout == 'ucbdrive':  # ucbdrive's own file layout (golden fixture from its dla.py)
        state = synth_state_dict(load_manifest('ucbdrive_dla34'))
        own = src.state_dict()
        src.load_state_dict({k: v for k, v in state.items() if k in own})
    else:
        state = src.state_dict()
    assert ('level3.project.0.weight' in state) == (layout == 'ucbdrive')
    path = tmp_path / f'dla34_{layout}.pth'
    torch.save(state, path)
    cfg = Config.fromfile(CITYSCAPES)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    model = MODELS.build(cfg.model)
    model.init_weights()  # what mmengine's Runner calls
    got = model.backbone.body.state_dict()
    for k, v in src.state_dict().items():
        if k.startswith('fc.'):
            assert k not in got
        elif not k.endswith('num_batches_tracked'):
            torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


def test_init_cfg_list_runs_mmengine_initialisers():
    """A list as mmseg's ResNet takes: Kaiming on every conv, Constant on every BatchNorm (BaseModule's rules)."""
    backbone = randomize_bn(_backbone(arch='dla46_c', init_cfg=[
        dict(type='Kaiming', layer='Conv2d', mode='fan_in', distribution='uniform'),
        dict(type='Constant', val=1, layer=['_BatchNorm'])]))
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    bound = [math.sqrt(6.0 / m.weight[0].numel()) for m in convs]  # kaiming_uniform_(fan_in, relu): sqrt(2)*sqrt(3/n)
    assert any(m.weight.abs().max() > b for m, b in zip(convs, bound))  # the core's normal init exceeds the bounds
    backbone.init_weights()
    assert convs and all(m.weight.abs().max() <= b for m, b in zip(convs, bound))
    assert all(m.weight.abs().max() > 0.9 * b for m, b in zip(convs, bound) if m.weight.numel() > 1000)
    assert bns and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)


def test_init_cfg_list_loads_its_pretrained_entry_last(tmp_path):
    """The Pretrained entry of a list goes through our strict loader and its log line, after the initialisers, even
    when it comes first (mmengine's order)."""
    src = randomize_bn(create_dla('dla46_c', num_classes=10))
    path = tmp_path / 'dla46_c.pth'
    torch.save(src.state_dict(), path)
    log = tmp_path / 'init.log'
    MMLogger.get_instance('test_init_cfg_list', log_file=str(log))
    backbone = _backbone(arch='dla46_c', init_cfg=[
        dict(type='Pretrained', checkpoint=str(path)), dict(type='Kaiming', layer='Conv2d'),
        dict(type='Constant', val=0.5, layer=['_BatchNorm'])])
    backbone.init_weights()
    got = backbone.body.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith('fc.'):
            torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
    assert f"DLA init_cfg: loaded {str(path)!r} into dla46_c (layout: timm): {len(got)} tensors loaded, 0 renamed, " \
           "0 skipped, 2 classifier tensors dropped" in log.read_text()
    torch.save(create_dla('dla34').state_dict(), path)
    with pytest.raises(CheckpointError, match=r'checkpoint does not match DLA \(layout: timm\)'):
        backbone.init_weights()


def test_pretrained_mismatch_lists_every_bad_key(tmp_path):
    path = tmp_path / 'dla46_c.pth'
    torch.save(create_dla('dla46_c').state_dict(), path)
    backbone = _backbone(arch='dla34', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError) as err:
        backbone.init_weights()
    msg = str(err.value)
    assert 'checkpoint does not match DLA (layout: timm)' in msg
    assert 'mis-shaped key(s)' in msg and 'level5.root.conv.weight' in msg and 'missing key(s)' in msg
    with pytest.raises(CheckpointError, match="checkpoint: no such file '/nonexistent.pth'"):
        _backbone(init_cfg=dict(type='Pretrained', checkpoint='/nonexistent.pth')).init_weights()


class _GetattrPayload:
    """Pickles as getattr(HistoryBuffer, 'update'): an allowed class, a method that is not a statistics method."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, 'update'))


def test_weights_only_allow_list_is_narrow(tmp_path):
    """mmseg_ext allows mmengine's HistoryBuffer/numpy objects, not a general getattr."""
    from mmengine.logging import HistoryBuffer

    hb = HistoryBuffer()
    for v in (3.0, 1.0, 2.0):
        hb.update(v)
    path = tmp_path / 'hub.pth'
    torch.save(dict(log=hb, arr=np.arange(3.0), scalar=np.float64(0.5), w=torch.ones(2)), path)
    back = torch.load(path, weights_only=True)
    assert back['log'].statistics('min') == 1.0 and back['log'].mean() == 2.0 and back['scalar'] == 0.5
    torch.save(dict(bad=_GetattrPayload()), tmp_path / 'bad.pth')
    with pytest.raises(pickle.UnpicklingError, match=r"getattr\(<class '\S+HistoryBuffer'>, 'update'\) is not allowed"):
        torch.load(tmp_path / 'bad.pth', weights_only=True)
    assert 'builtins.getattr' in mmseg_ext.serialization.safe_global_names()


def test_amp_flag_makes_an_amp_optim_wrapper():
    """``mmseg_ext.train --amp`` (what ``python -m benchmarks.gpu_check`` runs on CUDA): mmengine's AmpOptimWrapper."""
    from mmseg_ext.train import build_parser, enable_amp, load_config

    args = build_parser().parse_args([CITYSCAPES, '--amp', '--cfg-options', 'optim_wrapper.dtype=bfloat16'])
    assert args.amp
    cfg = load_config(args.config, args.cfg_options)
    optimizer = cfg.optim_wrapper.optimizer.to_dict()
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.dtype == 'bfloat16' and cfg.optim_wrapper.optimizer.to_dict() == optimizer
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(ValueError, match="--amp: optim_wrapper.type must be 'OptimWrapper' or 'AmpOptimWrapper', "
                                         "got 'ApexOptimWrapper'"):
        enable_amp(cfg)
