"""Issue 21's matrix: every golden family x every target (core, detectron2, mmseg) -> ``convert_checkpoint`` -> the
host model built from the PRINTED host options -> a load with no missing or unexpected key -> the reference outputs.

detectron2: ``cfg.merge_from_list(options)`` + ``build_backbone`` + ``DetectionCheckpointer``; mmseg:
``MODELS.build(EncoderDecoder(**options))`` + mmengine's ``load_checkpoint`` (what ``load_from`` does). A file without
a classifier (detection checkpoints) lacks only mmseg's ``decode_head.conv_seg``, which the user trains.
"""
from urllib.parse import urlparse

import pytest
import torch
import torch.nn as nn

import dla_plugins as dp
from dla_plugins.checkpoint import read_state_dict
from dla_plugins.convert import convert_checkpoint
from tests.golden import (
    extra_input_hook,
    fixture_names,
    load_manifest,
    load_outputs,
    make_input,
    tolerance,
    write_checkpoint,
)

TARGETS = ('core', 'detectron2', 'mmseg')


def _pyramid_names(pyramid, network):
    """Our DLA-Up outputs under the names the reference fixtures use (see tests/core/test_golden.py)."""
    first = network['down_ratio'].bit_length() - 1
    final = network.get('final_ida')
    final = network['flavor'] == 'centernet' if final is None else final
    outs = {'features': pyramid[0], 'dla2': pyramid[0]}
    outs.update({f'dla_up.{i}': p for i, p in enumerate(pyramid) if i or not final})
    outs.update({f'dlaup{first + i}': p for i, p in enumerate(pyramid)})
    return outs


def _core(out, path):
    o = out.host_options
    builder = {'DLASeg': dp.DLASeg, 'CenterNet': dp.CenterNet, 'create_dla': dp.create_dla}[o['builder']]
    model = builder(o['variant'], **o['kwargs'])
    report = dp.load_checkpoint(model, path)  # strict: no missing, unexpected or mis-shaped key
    assert report.layout == 'timm' or report.layout == 'dla-plugins-seg'
    dla = model if isinstance(model, dp.DLA) else model.backbone

    def run(x):
        levels = dla.forward_intermediates(x, intermediates_only=True)
        outs = {f'level{i}': t for i, t in enumerate(levels)}
        if isinstance(model, dp.DLASeg):
            outs.update(_pyramid_names(model.forward_pyramid(x), out.network))
        if isinstance(model, dp.CenterNet):  # CenterNet's ctdet files: the heads too
            outs.update(model(x))
        return outs
    return model, dla.base_layer, run


def _detectron2(out, path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone, build_model

    from d2_ext import add_dlap_config

    cfg = add_dlap_config(get_cfg())
    cfg.merge_from_list(out.host_options + ['MODEL.DEVICE', 'cpu'])
    if cfg.MODEL.META_ARCHITECTURE == 'DLAPCenterNet':  # CenterNet's ctdet files keep their heads
        holder = build_model(cfg)
    else:
        holder = nn.Module()
        holder.backbone = build_backbone(cfg)
    ckpt = DetectionCheckpointer(holder)
    ckpt._parsed_url_during_load = urlparse(path)  # the loader's own path-keyed state, as DetectionCheckpointer.load
    incompatible = ckpt._load_model(ckpt._load_file(path))
    missing = [k for k in incompatible.missing_keys if not k.startswith(('backbone.fpn_', 'backbone.top_block'))]
    assert missing == [] and incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
    bb = holder.backbone
    bottom = bb.bottom_up if hasattr(bb, 'bottom_up') else bb

    def run(x):
        outs = dict(bottom(x))
        if hasattr(bb, 'dla_up'):
            feats = bb(x)
            outs.update(_pyramid_names([feats[n] for n in bb._out_features[:len(bb.in_features)]], out.network))
            if hasattr(holder, 'heads'):
                outs.update(holder.heads(feats[holder.in_feature]))
        return outs
    return holder, bottom.dla.base_layer, run


def _mmseg(out, path):
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
    from mmseg.registry import MODELS

    import mmseg_ext  # noqa: F401  (registers DLA, DLAUpHead)

    init_default_scope('mmseg')
    opts = dict(out.host_options)
    head = dict(opts.get('decode_head') or dict(type='FCNHead', in_channels=dp.resolve_variant(out.variant).channels[5],
                                                channels=8, num_convs=1, in_index=-1))  # a classifier file: any head
    if head.get('num_classes') == 'YOUR_NUM_CLASSES' or 'num_classes' not in head:
        head['num_classes'] = 7
    model = MODELS.build(dict(type='EncoderDecoder', backbone=opts['backbone'], decode_head=head,
                              train_cfg=dict(), test_cfg=dict(mode='whole'))).eval()
    ckpt = mmengine_load_checkpoint(model, path, map_location='cpu', strict=False)
    own, loaded = set(model.state_dict()), set(ckpt['state_dict'])
    head_only = {k for k in own - loaded if k.startswith('decode_head.') and 'dla_up' not in k}
    assert loaded - own == set() and own - loaded == head_only
    assert not head_only or 'decode_head' not in opts or out.num_classes == 0

    def run(x):
        levels = model.backbone(x)
        first = opts['backbone']['out_indices'][0]
        outs = {f'level{first + i}': t for i, t in enumerate(levels)}
        if 'decode_head' in opts:
            outs.update(_pyramid_names(model.decode_head.dla_up(list(levels)), out.network))
        return outs
    return model, model.backbone.body.base_layer, run


@pytest.mark.slow
@pytest.mark.parametrize('target', TARGETS)
@pytest.mark.parametrize('name', fixture_names())
def test_family_x_target_loads_from_the_printed_options_and_matches(name, target, tmp_path):
    manifest = load_manifest(name)
    src = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    dst = str(tmp_path / ('out.safetensors' if target == 'core' else 'out.pth'))
    out = convert_checkpoint(src, dst, to=target)
    assert out.variant == ('dla102x' if 'dla102x' in name else 'dla34')
    model, base_layer, run = {'core': _core, 'detectron2': _detectron2, 'mmseg': _mmseg}[target](out, dst)
    model.eval()
    ref = load_outputs(name)
    x = make_input(manifest)
    hook = extra_input_hook(base_layer, read_state_dict(src), manifest)
    with torch.no_grad():
        outs = run(x)
    if hook is not None:
        hook.remove()
    compared = [k for k in ref if k in outs]
    assert compared, (sorted(ref), sorted(outs))
    deformable = out.network.get('node_type') == 'dcn'
    for k in compared:
        allowed, _ = tolerance(ref[k], deformable)
        diff = (outs[k] - ref[k]).abs().max().item()
        assert diff <= allowed, f'{name}/{target}/{k}: max |diff| {diff:.3g} > {allowed:.3g}'


def test_convert_bad_target_and_prefix():
    from dla_plugins.convert import convert

    state = dp.create_dla('dla46_c').state_dict()
    with pytest.raises(ValueError, match=r"target: unknown target 'onnx'; allowed: \['core', 'detectron2', 'mmseg'\]"):
        convert(state, 'onnx')
    with pytest.raises(ValueError, match=r"prefix: unknown detectron2 prefix 'dla.'; allowed: "
                                         r"\['backbone.bottom_up.dla.', 'backbone.dla.'\]"):
        convert(state, 'detectron2', prefix='dla.')
    with pytest.raises(ValueError, match=r"prefix: only for target='detectron2', got target='mmseg'"):
        convert(state, 'mmseg', prefix='backbone.dla.')
    out = convert(state, 'detectron2', prefix='backbone.dla.')  # the plain builder, variant inferred
    assert out.variant == 'dla46_c' and out.host_options[:2] == ['MODEL.BACKBONE.NAME', 'build_dlap_backbone']
    assert all(k.startswith('backbone.dla.') for k in out.state) and 'backbone.dla.fc.weight' not in out.state
