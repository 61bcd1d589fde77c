"""The layouts issue 27 added, beyond the golden comparison of tests/core/test_golden.py: what a monodle file gives
(its backbone only: its DLA-Up has no equivalent in DLAUp) and that the registry entries build what their files
load into."""
import collections

import pytest
import torch

import dla_plugins as dp
from dla_plugins import weights
from dla_plugins.checkpoint import CheckpointError, detect_layout, read_state_dict
from tests.golden import load_manifest, load_outputs, make_input, tolerance, write_checkpoint


def test_monodle_loads_its_backbone_and_lists_its_neck(tmp_path):
    path = write_checkpoint(load_manifest('monodle_dla34'), str(tmp_path / 'checkpoint_epoch_140.pth'))
    state = read_state_dict(path)  # {'epoch', 'model_state', 'optimizer_state'}: unwrapped
    layout = detect_layout(state)
    assert (layout.family, layout.whole_network, layout.model_kwargs(state)) == ('monodle', False, {})
    model = dp.create_from_weights('monodle/centernet3d_dla34_kitti').eval()
    report = dp.load_checkpoint(model, path)
    reasons = collections.Counter(report.skipped.values())
    assert reasons['DLA-Up neck (the model has none)'] == sum(k.startswith('neck.') for k in state) == 78
    assert reasons['not part of DLA (task head, FPN, ...)'] == 28  # 7 heads x (conv, bias) x 2
    ref = load_outputs('monodle_dla34')
    with torch.no_grad():
        levels = model.forward_intermediates(make_input(load_manifest('monodle_dla34')), intermediates_only=True)
    for i, t in enumerate(levels):  # equal up to float summation order (thread count)
        assert (t - ref[f'level{i}']).abs().max().item() <= tolerance(ref[f'level{i}'], False)[0], i
    with pytest.raises(CheckpointError) as e:  # never a partial load into a network it cannot reproduce
        dp.load_checkpoint(dp.DLASeg('dla34', num_classes=0), path)
    assert str(e.value).startswith('checkpoint does not match DLASeg (layout: monodle):')


@pytest.mark.parametrize('name,fixture', [('smoke/smoke_dla34_kitti', 'smoke_dla34_dcn_gn'),
                                          ('monodle/centernet3d_dla34_kitti', 'monodle_dla34')])
def test_entry_family_and_network_are_the_files(name, fixture, tmp_path):
    entry = weights.get(name)
    path = write_checkpoint(load_manifest(fixture), str(tmp_path / 'ref.pth'))
    state = read_state_dict(path)
    layout = detect_layout(state)
    assert layout.family == entry.family
    assert {k: v for k, v in layout.model_kwargs(state).items() if v is not None} == (
        dict(entry.model_kwargs) if entry.builds == 'DLASeg' else {})


def _trunk(name: str, heads) -> dict:
    """The fixture's keys and shapes outside its heads (top-level names ``heads``)."""
    return {k: tuple(shape) for k, shape, _ in load_manifest(name)['tensors'] if k.split('.')[0] not in heads}


@pytest.mark.parametrize('fork,family_fixture', [('km3d_dla34_dcn', 'centernet_dla34_dcn'),
                                                 ('trades_dla34_dcn', 'centertrack_dla34_dcn'),
                                                 ('centerfusion_dla34_dcn', 'centertrack_dla34_dcn'),
                                                 ('permatrack_dla34_dcn', 'centertrack_dla34_dcn')])
def test_a_fork_has_its_family_s_keys(fork, family_fixture):
    """The key manifest of the fork's own code equals its family's, heads aside: the registry maps its files to that
    family (see each entry's note)."""
    heads = {k.split('.')[0] for k, _, _ in load_manifest(fork)['tensors'] + load_manifest(family_fixture)['tensors']
             if not k.startswith(('base.', 'dla_up.', 'ida_up.'))}
    extra = ('base.pre_img_layer.', 'base.pre_hm_layer.', 'base.fc.')  # CenterTrack's input convs, the ImageNet fc
    fork_keys, family_keys = _trunk(fork, heads), _trunk(family_fixture, heads)
    assert heads and {k: v for k, v in fork_keys.items() if not k.startswith(extra)} == {
        k: v for k, v in family_keys.items() if not k.startswith(extra)}
    assert not [k for k in fork_keys if k.startswith(extra[:2])]  # no CenterTrack input convs: a 'tracking' head
    own = {k.split('.')[0] for k, _, _ in load_manifest(fork)['tensors']}
    assert ('tracking' in own) == (fork == 'permatrack_dla34_dcn')  # alone makes a fork centertrack
