"""The core DLA: timm equivalence, paper parameter counts, ucbdrive conversion, strides, checkpointing, errors."""
import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dla_plugins as dp
from dla_plugins.checkpoint import CheckpointError
from tests.golden import load_manifest, load_outputs, make_input, synth_state_dict, tolerance
from tests.helpers import randomize_bn, timm_reference

TIMM_VARIANTS = [v.name for v in dp.VARIANTS.values() if v.in_timm]
PAPER_VARIANTS = [v.name for v in dp.VARIANTS.values() if v.paper_params]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize('name', TIMM_VARIANTS)
def test_matches_timm_weight_for_weight(name):
    ref = randomize_bn(timm_reference(name)).eval()
    ours = dp.create_dla(name).eval()
    report = dp.load_checkpoint(ours, ref.state_dict())
    assert report.layout == 'timm' and not report.dropped_unused
    assert n_params(ours) == n_params(ref)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', PAPER_VARIANTS)
def test_param_count_matches_paper(name):
    v = dp.resolve_variant(name)
    got = n_params(dp.create_dla(name))
    assert abs(got / v.paper_params - 1) <= 0.03, f'{name} ({v.paper_name}): {got} vs paper {v.paper_params}'


def test_dla48_b_m_is_the_paper_row():
    v = dp.resolve_variant('DLA-48-B-m')
    assert v.name == 'dla46_m' and v.block == 'bottleneck' and v.channels == (16, 32, 64, 128, 256, 512)
    assert abs(n_params(dp.create_dla('DLA-48-B-m')) / 4.5e6 - 1) <= 0.03


@pytest.mark.parametrize('alias,name', [('DLA-36', 'dla34'), ('DLA-62-S', 'dla60x'), ('dla-104-b', 'dla102'),
                                        ('DLA_48_S_s', 'dla46x_c'), ('DLA-62-S-s', 'dla60x_c')])
def test_paper_aliases(alias, name):
    assert dp.resolve_variant(alias).name == name
    assert dp.create_dla(alias, num_classes=0).variant == name


def test_list_variants_is_the_table():
    assert dp.list_variants() == list(dp.VARIANTS)
    assert len(dp.list_variants()) == 13 and 'dla46_m' in dp.list_variants()


@pytest.mark.parametrize('name', ['dla34', 'dla102x'])
def test_ucbdrive_layout_converts_by_rule(name, tmp_path):
    """ucbdrive's own classifier file (golden fixture from its dla.py): the unused project layers of deep trees are
    dropped by rule, and the logits equal the reference's."""
    manifest = load_manifest(f'ucbdrive_{name}')
    ucb = synth_state_dict(manifest)
    torch.save(ucb, tmp_path / 'ucb.pth')
    ours = dp.create_dla(name).eval()
    report = dp.load_checkpoint(ours, tmp_path / 'ucb.pth')
    extra = sorted(set(ucb) - set(ours.state_dict()))
    assert extra and all('.project.' in k for k in extra)
    assert report.layout == 'ucbdrive' and sorted(report.dropped_unused) == extra
    with torch.no_grad():
        ref = load_outputs(f'ucbdrive_{name}')['logits']
        assert (ours(make_input(manifest)) - ref).abs().max() <= tolerance(ref)[0]


def test_ucbdrive_conversion_does_not_hide_other_mismatches():
    ucb = synth_state_dict(load_manifest('ucbdrive_dla34'))
    ucb['level9.bogus'] = torch.zeros(1)
    del ucb['level2.root.conv.weight']
    with pytest.raises(CheckpointError) as e:
        dp.load_checkpoint(dp.create_dla('dla34'), ucb)
    msg = str(e.value)
    assert 'layout: ucbdrive' in msg and 'level9.bogus' in msg and 'level2.root.conv.weight' in msg


def test_mismatch_lists_every_missing_unexpected_and_misshaped_key():
    sd = dp.create_dla('dla34').state_dict()
    sd.pop('level1.0.weight')
    sd.pop('level5.root.bn.bias')
    sd['extra.a'] = torch.zeros(1)
    sd['fc.weight'] = torch.zeros(10, 512, 1, 1)
    with pytest.raises(CheckpointError) as e:
        dp.load_checkpoint(dp.create_dla('dla34'), sd)
    msg = str(e.value)
    assert '2 missing key(s):' in msg and 'level1.0.weight' in msg and 'level5.root.bn.bias' in msg
    assert '1 unexpected key(s):' in msg and 'extra.a' in msg
    assert '1 mis-shaped key(s):' in msg and 'fc.weight: checkpoint (10, 512, 1, 1) vs model (1000, 512, 1, 1)' in msg


def test_checkpoint_path_in_create_dla_safetensors_and_pth(tmp_path):
    from safetensors.torch import save_file

    ref = randomize_bn(dp.create_dla('dla46_c')).eval()
    save_file(ref.state_dict(), str(tmp_path / 'w.safetensors'))
    torch.save({'state_dict': {'module.' + k: v for k, v in ref.state_dict().items()}}, tmp_path / 'w.pth')
    x = torch.randn(1, 3, 64, 64)
    for f in ('w.safetensors', 'w.pth'):
        m = dp.create_dla('dla46_c', checkpoint_path=tmp_path / f).eval()
        with torch.no_grad():
            torch.testing.assert_close(m(x), ref(x), atol=0, rtol=0)
    # fine-tuning: a new classifier size re-initialises the head explicitly, the body is loaded
    m = dp.create_dla('dla46_c', num_classes=7, checkpoint_path=tmp_path / 'w.pth').eval()
    torch.testing.assert_close(m.level5.root.conv.weight, ref.level5.root.conv.weight)
    assert m.fc.weight.shape == (7, 256, 1, 1)
    # in_chans adaptation of the first conv
    m = dp.create_dla('dla46_c', in_chans=1, checkpoint_path=tmp_path / 'w.pth')
    torch.testing.assert_close(m.base_layer[0].weight, ref.base_layer[0].weight.sum(1, keepdim=True))


def test_checkpoint_refuses_pickled_code(tmp_path):
    torch.save({'model': {'w': torch.zeros(1)}, 'evil': re.compile('x')}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='pickled Python objects'):
        dp.read_state_dict(tmp_path / 'bad.pth')


@pytest.mark.parametrize('os_,expected', [(32, [1, 2, 4, 8, 16, 32]), (16, [1, 2, 4, 8, 16, 16]),
                                          (8, [1, 2, 4, 8, 8, 8])])
@pytest.mark.parametrize('name', ['dla34', 'dla60_res2net'])
def test_output_stride(name, os_, expected):
    m = dp.create_dla(name, num_classes=0, output_stride=os_).eval()
    assert [f['reduction'] for f in m.feature_info] == expected
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = m.forward_intermediates(x, intermediates_only=True)
    for f, info in zip(feats, m.feature_info):
        assert f.shape[1:] == (info['num_chs'], 96 // info['reduction'], 128 // info['reduction'])


def test_dilated_model_keeps_the_weight_layout():
    assert dp.create_dla('dla60x', output_stride=8).state_dict().keys() == dp.create_dla('dla60x').state_dict().keys()


def test_forward_intermediates_and_prune():
    m = dp.create_dla('dla34').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        final, feats = m.forward_intermediates(x, indices=[2, -1])
        torch.testing.assert_close(final, m.forward_features(x))
        torch.testing.assert_close(feats[1], final)
        assert [f.shape[1] for f in feats] == [64, 512]
        early = m.forward_intermediates(x, indices=2, stop_early=True, intermediates_only=True)
        assert [f.shape[1] for f in early] == [256, 512]
    kept = m.prune_intermediate_layers(indices=[1, 3])
    assert kept == [1, 3] and isinstance(m.level4, nn.Identity) and m.num_classes == 0
    assert m.num_features == 128


@pytest.mark.parametrize('name', ['dla34', 'dla102x', 'dla60_res2next'])
def test_gradient_checkpointing_same_outputs_grads_and_bn_stats(name):
    a = dp.create_dla(name, num_classes=5)
    b = copy.deepcopy(a)
    b.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 64, 64)
    ya, yb = a(x), b(x)
    (ya ** 2).sum().backward()
    (yb ** 2).sum().backward()
    torch.testing.assert_close(ya, yb, atol=0, rtol=0)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)
    for (n, ba), bb in zip(a.named_buffers(), b.buffers()):
        torch.testing.assert_close(ba, bb, atol=0, rtol=0, msg=n)  # recomputation does not count a batch twice


@pytest.mark.parametrize('name,num_classes', [('dla34', 10), ('dla60_res2net', 0), ('dla102x', 3)])
def test_every_parameter_is_used(name, num_classes):
    m = dp.create_dla(name, num_classes=num_classes)
    out = m(torch.randn(2, 3, 48, 48))
    out.float().pow(2).mean().backward()
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    assert not unused


@pytest.mark.parametrize('norm,cls', [('bn', nn.BatchNorm2d), ('syncbn', nn.SyncBatchNorm),
                                      ('gn', nn.GroupNorm), ('frozenbn', dp.FrozenBatchNorm2d)])
def test_norm_layers(norm, cls):
    m = dp.create_dla('dla34', num_classes=0, norm_layer=norm)
    norms = [mod for mod in m.modules() if isinstance(mod, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm,
                                                             dp.FrozenBatchNorm2d))]
    assert norms and all(type(n) is cls or isinstance(n, cls) for n in norms)
    if norm == 'frozenbn':
        assert not any(p.requires_grad for n, p in m.named_parameters() if 'bn' in n)
        # frozen BN loads a regular (timm) checkpoint and computes the same as eval-mode BN
        ref = randomize_bn(dp.create_dla('dla34', num_classes=0)).eval()
        dp.load_checkpoint(m, ref.state_dict())
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)
    elif norm != 'syncbn':
        m(torch.randn(2, 3, 32, 32))


def test_frozen_bn_convert_equals_eval_bn():
    ref = randomize_bn(dp.create_dla('dla46_c')).eval()
    frozen = dp.FrozenBatchNorm2d.convert(copy.deepcopy(ref))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), ref(x), atol=1e-5, rtol=1e-5)


def test_torchscript_matches_eager():
    m = randomize_bn(dp.create_dla('dla60_res2next')).eval()
    s = torch.jit.script(m)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(s(x), m(x))


# --- DLA-Up / DLASeg ---------------------------------------------------------------------------------------------
def test_ida_up_upsampling_starts_bilinear():
    ida = dp.IDAUp([8, 8], [1, 4], 8)
    x = torch.randn(1, 8, 6, 6)
    up = ida.up[1](x)
    ref = F.interpolate(x, scale_factor=4, mode='bilinear', align_corners=False)
    assert up.shape == ref.shape
    torch.testing.assert_close(up[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-5, rtol=1e-5)


def test_dla_up_pyramid_shapes_and_no_input_mutation():
    chans, strides = [32, 64, 128, 256], [4, 8, 16, 32]
    up = dp.DLAUp(chans, strides)
    feats = [torch.randn(1, c, 100 // s + 1, 60 // s + 1) for c, s in zip(chans, strides)]
    ids = [id(f) for f in feats]
    copies = [f.clone() for f in feats]
    out = up(feats)
    assert [id(f) for f in feats] == ids and all(torch.equal(a, b) for a, b in zip(feats, copies))
    assert [tuple(o.shape[1:]) for o in out] == [tuple(f.shape[1:]) for f in feats]


@pytest.mark.parametrize('size', [(64, 64), (65, 97), (33, 50), (100, 17 + 16)])
@pytest.mark.parametrize('down_ratio,os_', [(4, 8), (2, 32)])
def test_dla_seg_any_size(size, down_ratio, os_):
    seg = dp.DLASeg('dla34', num_classes=5, down_ratio=down_ratio, output_stride=os_).eval()
    with torch.no_grad():
        assert seg(torch.randn(1, 3, *size)).shape == (1, 5, *size)


@pytest.mark.parametrize('flavor', ['paper', 'centernet'])
@pytest.mark.parametrize('down_ratio', [2, 8, 16])
def test_dla_seg_down_ratios_and_features(flavor, down_ratio):
    seg = dp.DLASeg('dla46_c', num_classes=0, down_ratio=down_ratio, output_stride=32, flavor=flavor).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = seg(x)
        assert torch.equal(feats, seg.forward_features(x))
    assert feats.shape == (1, seg.num_features, 64 // down_ratio, 96 // down_ratio)
    assert not [k for k in seg.state_dict() if k.startswith('classifier')]


def test_centernet_flavor_structure():
    """CenterNet's DLA-Up: 3x3 projection of every input after the first (even of equal width), summing nodes with
    bias (dcn), and a final IDA-Up over the DLA-Up outputs at strides 4/8/16 whose last node gives the features."""
    seg = dp.DLASeg('dla34', num_classes=0, output_stride=32, node_type='dcn', flavor='centernet').eval()
    ida = seg.neck.idas[-1]
    assert isinstance(ida.proj[0], nn.Identity)
    assert [type(p[0]).__name__ for p in ida.proj[1:]] == ['ModulatedDeformConv2d'] * 3
    assert ida.proj[1][0].weight.shape[-2:] == (3, 3) and ida.nodes[0].conv.bias is not None
    final = seg.neck.ida_final
    assert final.in_channels == [64, 128, 256] and final.up_factors == [1, 2, 4]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pyramid = seg.neck(seg.backbone.forward_intermediates(x, intermediates_only=True)[2:])
        assert torch.equal(pyramid[0], seg.forward_features(x))
    assert [tuple(p.shape[1:]) for p in pyramid] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_deformable_nodes_get_gradients():
    seg = dp.DLASeg('dla46_c', num_classes=3, node_type='dcn', output_stride=16)
    seg(torch.randn(2, 3, 47, 61)).logsumexp(1).mean().backward()
    assert not [n for n, p in seg.named_parameters() if p.grad is None]
    dcn = [m for m in seg.modules() if isinstance(m, dp.ModulatedDeformConv2d)]
    assert dcn and all(m.offset_mask.weight.grad.abs().sum() > 0 for m in dcn)


# --- bad input ---------------------------------------------------------------------------------------------------
def test_unknown_variant_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        dp.create_dla('dla35')
    msg = str(e.value)
    assert msg.startswith("variant: unknown DLA variant 'dla35'; valid variants are: dla34 (DLA-36),")
    assert all(n in msg for n in dp.list_variants())


@pytest.mark.parametrize('kwargs,match', [
    (dict(output_stride=4), 'output_stride: must be 32, 16 or 8, got 4'),
    (dict(in_chans=0), 'in_chans: must be a positive integer, got 0'),
    (dict(num_classes=-1), 'num_classes: must be an integer >= 0, got -1'),
    (dict(norm_layer='ln'), "norm_layer: unknown norm 'ln'; allowed: ['bn', 'frozenbn', 'gn', 'syncbn']"),
    (dict(global_pool='mean'), "global_pool: unknown pooling 'mean'; allowed: ['', 'avg', 'max', 'avgmax',"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        dp.create_dla('dla34', **kwargs)


@pytest.mark.parametrize('shape,match', [
    ((3, 64, 64), 'x: expected a 4-D N x C x H x W batch, got shape (3, 64, 64)'),
    ((1, 1, 64, 64), 'x: model built with in_chans=3, got 1 input channels'),
    ((1, 3, 15, 64), 'x: images must be at least 16x16'),
])
def test_bad_inputs(shape, match):
    m = dp.create_dla('dla34')
    with pytest.raises(ValueError, match=re.escape(match)):
        m(torch.randn(*shape))
    with pytest.raises(ValueError, match=re.escape(match)):
        dp.DLASeg('dla34', num_classes=2)(torch.randn(*shape))


def test_bad_seg_arguments():
    with pytest.raises(ValueError, match=re.escape('down_ratio: must be one of [2, 4, 8, 16], got 3')):
        dp.DLASeg('dla34', down_ratio=3)
    with pytest.raises(ValueError, match=re.escape("flavor: unknown DLA-Up flavour 'fpn'; allowed: ['paper', 'cent")):
        dp.DLASeg('dla34', flavor='fpn')
    with pytest.raises(ValueError, match=re.escape("in_channels: flavor='centernet' uses input 0 unprojected, so it "
                                                   "must have out_channels=8 channels, got 4")):
        dp.IDAUp([4, 8], [1, 2], 8, flavor='centernet')
    with pytest.raises(ValueError, match=re.escape("node_type: unknown aggregation node 'dcnv3'; allowed: ['conv',")):
        dp.DLASeg('dla34', node_type='dcnv3')
    with pytest.raises(ValueError, match='backbone: must be a variant name or a DLA built with num_classes=0'):
        dp.DLASeg(dp.create_dla('dla34'))


def test_core_imports_no_host_framework():
    import subprocess
    import sys

    code = ("import sys, torch, dla_plugins as dp; m = dp.DLASeg('dla34', num_classes=2).eval(); "
            "m(torch.randn(1, 3, 32, 32)); dp.create_dla('dla60x'); "
            "hosts = ('timm', 'detectron2', 'mmseg', 'mmengine', 'mmcv', 'torchvision'); "
            "bad = [h for h in hosts if h in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
