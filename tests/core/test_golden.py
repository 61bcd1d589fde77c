"""Every checkpoint family against its reference code: rebuild the reference checkpoint (manifest + seed, real
container), load it through ``load_checkpoint`` (layout recognised by rule) and compare with the reference outputs."""
import re

import pytest
import torch
import torch.nn.functional as F

import dla_plugins as dp
from dla_plugins.checkpoint import CheckpointError, detect_layout, read_state_dict
from tests.golden import (
    extra_input_hook,
    fixture_names,
    load_manifest,
    load_outputs,
    make_input,
    tolerance,
    write_checkpoint,
)

# fixture -> the layout we must recognise
LAYOUTS = {
    'ucbdrive_dla34': 'ucbdrive', 'ucbdrive_dla102x': 'ucbdrive', 'ucbdrive_dlaseg_dla34': 'ucbdrive-dlaseg',
    'centernet_dla34_dcn': 'centernet', 'centernet_dla34_v0': 'centernet-dlav0', 'centertrack_dla34_dcn': 'centertrack',
    'fairmot_dla34_conv': 'fairmot-conv', 'fairmot_dla34_dcn': 'fairmot', 'mmdet3d_smoke_dla34': 'mmdet3d',
    'mmdet3d_dla34_nodcn': 'mmdet3d', 'centernet2_dla_bifpn': 'centernet2-fpn',
    'centernet2_dla_fcos_bifpn': 'centernet2-bifpn', 'centernet2_dlaseg': 'centernet2-dlaseg',
    'centernet2_dlaup_conv': 'centernet2-dlaup', 'smoke_dla34_dcn_gn': 'smoke',
    'monodle_dla34': 'monodle', 'km3d_dla34_dcn': 'centernet',
    'trades_dla34_dcn': 'centernet', 'centerfusion_dla34_dcn': 'centernet',
    'permatrack_dla34_dcn': 'centertrack',
}
FIXTURES = fixture_names()
DENSE = [n for n in FIXTURES if any(k.startswith('dla_up') or k == 'features' for k in load_manifest(n)['outputs'])]


def arch_of(manifest: dict) -> str:
    m = re.search(r'dla\d+x?', manifest['name'])
    return m.group(0) if m and m.group(0) != 'dla2' else 'dla34'


def build_for(manifest: dict, path) -> torch.nn.Module:
    """Our model for a reference checkpoint: a DLA for classifier/bottom-up files, else DLASeg(**layout kwargs)."""
    state = read_state_dict(path)
    layout = detect_layout(state)
    kwargs = layout.model_kwargs(state)
    if not kwargs:
        return dp.create_dla(arch_of(manifest), num_classes=1000 if 'fc.weight' in state else 0)
    return dp.DLASeg(arch_of(manifest), **kwargs)


@pytest.mark.parametrize('name', FIXTURES)
def test_reference_checkpoint_loads_and_matches(name, tmp_path):
    manifest = load_manifest(name)
    ref = load_outputs(name)
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    model = build_for(manifest, path).eval()
    report = dp.load_checkpoint(model, path)
    assert report.layout == LAYOUTS[name]
    state = read_state_dict(path)
    assert len(report.skipped) + len(model.state_dict()) >= len(state) - sum('num_batches' in k for k in state)
    x = make_input(manifest)
    deformable = any(isinstance(m, dp.ModulatedDeformConv2d) for m in model.modules())
    with torch.no_grad():
        backbone = model if isinstance(model, dp.DLA) else model.backbone
        outs = dict(zip([f'level{i}' for i in range(6)], backbone.forward_intermediates(x, intermediates_only=True)))
        if isinstance(model, dp.DLA):
            if 'logits' in ref:
                outs['logits'] = model(x)
        else:
            hook = extra_input_hook(model.backbone.base_layer, state, manifest)
            pyramid = model.forward_pyramid(x)
            if hook is not None:
                hook.remove()
            outs['features'] = outs['dla2'] = pyramid[0]  # CenterNet2's DLASeg names its stride-4 output 'dla2'
            outs.update({f'dla_up.{i}': p for i, p in enumerate(pyramid) if i or model.neck.ida_final is None})
            outs.update({f'dlaup{model.first_level + i}': p for i, p in enumerate(pyramid)})  # CenterNet2's DLAUP
            if 'up.weight' in state:  # ucbdrive's frozen bilinear logits upsampling: skipped, applied here
                f = model.down_ratio
                outs['logits'] = F.conv_transpose2d(model.classifier(outs['features']), state['up.weight'], stride=f,
                                                    padding=f // 2, groups=model.num_classes)
    compared = [k for k in ref if k in outs]
    assert 'level5' in compared or 'features' in compared
    assert not DENSE.count(name) or 'features' in compared or 'dla_up.1' in compared
    for k in compared:
        allowed, _ = tolerance(ref[k], deformable)
        diff = (outs[k] - ref[k]).abs().max().item()
        assert diff <= allowed, f'{name}/{k}: max |diff| {diff:.3g} > {allowed:.3g}'


@pytest.mark.parametrize('name', DENSE)
def test_report_lists_heads_and_unused_parts(name, tmp_path):
    manifest = load_manifest(name)
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    model = build_for(manifest, path)
    report = dp.load_checkpoint(model, path)
    state = read_state_dict(path)
    heads = [k for k in state if k.split('.')[0] in ('hm', 'wh', 'reg', 'id', 'tracking', 'bbox_head')]
    assert all(report.skipped[k] == 'not part of DLA (task head, FPN, ...)' for k in heads)
    assert not [k for k in report.skipped if k.startswith(('base.level', 'backbone.level', 'dla_up.', 'neck.'))
                and 'project' not in k]
    if 'base.fc.weight' in state:
        assert report.skipped['base.fc.weight'] == 'ImageNet classifier of the backbone (unused by dense models)'


@pytest.mark.parametrize('name', [n for n in DENSE if 'dla34' in n])
def test_backbone_of_a_dense_checkpoint_loads_into_a_plain_dla(name, tmp_path):
    """create_dla(checkpoint_path=<a CenterNet-family file>) takes the backbone and lists the neck as skipped."""
    manifest = load_manifest(name)
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    state = read_state_dict(path)
    layout = detect_layout(state)
    norm = layout.model_kwargs(state)['norm_layer']
    model = dp.create_dla('dla34', num_classes=0, checkpoint_path=path, norm_layer=norm)
    report = dp.load_checkpoint(model, path)
    assert 'DLA-Up neck (the model has none)' in report.skipped.values()
    p = layout.backbone_prefix
    assert torch.equal(model.state_dict()['level5.root.conv.weight'], state[p + 'level5.root.conv.weight'])


def test_unknown_layout_names_the_closest_and_every_key(tmp_path):
    manifest = load_manifest('centernet_dla34_dcn')
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    state = {k.replace('base.', 'trunk.'): v for k, v in read_state_dict(path).items()}
    with pytest.raises(CheckpointError) as e:
        dp.load_checkpoint(dp.DLASeg('dla34', num_classes=0), state)
    msg = str(e.value)
    assert msg.startswith('checkpoint: unrecognised layout: no DLA (base_layer/level<i> keys) under any known prefix')
    assert 'closest recognised layout: centernet (CenterNet pose_dla_dcn;' in msg
    assert f'{len(state)} unmatched key(s):' in msg and all(f'    {k}\n' in msg + '\n' for k in state)


def test_wrong_model_for_a_recognised_layout_lists_every_key(tmp_path):
    """A CenterNet file into a paper-flavour DLASeg: never a partial load; the error names the layout, the network
    to build and every key."""
    manifest = load_manifest('centernet_dla34_dcn')
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    model = dp.DLASeg('dla34', num_classes=0, output_stride=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        dp.load_checkpoint(model, path)
    msg = str(e.value)
    assert msg.startswith("checkpoint does not match DLASeg (layout: centernet; its network is DLASeg(down_ratio=4, "
                          "output_stride=32, norm_layer=None, flavor='centernet', node_type='dcn', num_classes=0, "
                          "bias=True)):")
    assert 'neck.idas.0.proj.1.0.offset_mask.weight' in msg and 'neck.idas.0.nodes.0.conv.weight' in msg
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_dlaseg_checkpoint_path_loads_the_whole_network(tmp_path):
    manifest = load_manifest('centernet_dla34_dcn')
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    model = dp.DLASeg('dla34', num_classes=0, output_stride=32, flavor='centernet', node_type='dcn',
                      checkpoint_path=path).eval()
    ref = load_outputs('centernet_dla34_dcn')['features']
    with torch.no_grad():
        assert (model.forward_features(make_input(manifest)) - ref).abs().max() <= tolerance(ref, True)[0]
    with pytest.raises(CheckpointError, match='checkpoint does not match DLASeg'):
        dp.DLASeg('dla34', num_classes=0, output_stride=32, checkpoint_path=path)  # paper flavour: never partial
    ours = tmp_path / 'ours.pth'  # our own DLASeg state_dict loads back the same way
    torch.save(model.state_dict(), ours)
    again = dp.DLASeg('dla34', num_classes=0, output_stride=32, flavor='centernet', node_type='dcn',
                      checkpoint_path=str(ours))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
