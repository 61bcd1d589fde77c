"""Fine-tuning: ``classifier='keep'|'drop'|'if_mismatched'`` is decided on the converted state; the caller's choice is
never overridden; ``detect_layout`` alone names every family (ucbdrive included)."""
import pytest
import torch

import dla_plugins as dp
from dla_plugins.checkpoint import CheckpointError, detect_layout, read_state_dict, unwrap_state_dict
from tests.golden import load_manifest, synth_state_dict, write_checkpoint


def test_dlaseg_fine_tunes_from_another_class_count(tmp_path):
    """Issue 21's bug: a DLASeg state_dict with 19 classes into DLASeg(num_classes=11) raised on classifier.weight."""
    src = dp.DLASeg('dla34', num_classes=19)
    path = tmp_path / 'seg19.pth'
    torch.save(src.state_dict(), path)
    model = dp.DLASeg('dla34', num_classes=11, checkpoint_path=str(path))
    assert model.classifier.weight.shape == (11, 64, 1, 1)
    mine, theirs = model.state_dict(), src.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in theirs.items() if not k.startswith('classifier.'))
    same = dp.DLASeg('dla34', num_classes=19, checkpoint_path=str(path))  # same classes: the classifier loads too
    assert torch.equal(same.classifier.weight, src.classifier.weight)
    ucb = write_checkpoint(load_manifest('ucbdrive_dlaseg_dla34'), str(tmp_path / 'ucb.pth'))  # ucbdrive: 19 classes
    model = dp.DLASeg('dla34', num_classes=11, down_ratio=2, output_stride=32, checkpoint_path=ucb)
    assert torch.equal(model.backbone.level5.root.conv.weight, read_state_dict(ucb)['base.level5.root.conv.weight'])


def test_policies_on_the_converted_state(tmp_path):
    src = dp.create_dla('dla46_c', num_classes=10)
    state = src.state_dict()
    model = dp.create_dla('dla46_c', num_classes=5)
    with pytest.raises(CheckpointError, match=r"1 mis-shaped key\(s\)|2 mis-shaped key\(s\)"):
        dp.load_checkpoint(model, state)  # 'keep' (default): a mismatch is an error
    fresh = model.fc.weight.clone()
    report = dp.load_checkpoint(model, state, classifier='if_mismatched')
    assert report.dropped_classifier == ['fc.weight', 'fc.bias'] and torch.equal(model.fc.weight, fresh)
    ten = dp.create_dla('dla46_c', num_classes=10)
    assert dp.load_checkpoint(ten, state, classifier='if_mismatched').dropped_classifier == []
    assert torch.equal(ten.fc.weight, src.fc.weight)
    before = ten.fc.weight.clone()
    ten2 = dp.create_dla('dla46_c', num_classes=10)
    kept = ten2.fc.weight.clone()
    assert dp.load_checkpoint(ten2, state, classifier='drop').dropped_classifier == ['fc.weight', 'fc.bias']
    assert torch.equal(ten2.fc.weight, kept) and not torch.equal(kept, before)
    with pytest.raises(ValueError, match=r"classifier: unknown policy 'fresh'; allowed: \['keep', 'drop', "
                                         r"'if_mismatched'\]"):
        dp.load_checkpoint(model, state, classifier='fresh')


@pytest.mark.parametrize('name,family', [('ucbdrive_dla34', 'ucbdrive'), ('ucbdrive_dla102x', 'ucbdrive'),
                                         ('ucbdrive_dlaseg_dla34', 'ucbdrive-dlaseg')])
def test_detect_layout_alone_names_ucbdrive(name, family):
    assert detect_layout(unwrap_state_dict(synth_state_dict(load_manifest(name)), name)).family == family
    assert detect_layout(dp.create_dla('dla34').state_dict()).family == 'timm'
    assert detect_layout(dp.DLASeg('dla34', num_classes=3).state_dict()).family == 'dla-plugins-seg'


@pytest.mark.parametrize('kwargs', [dict(flavor='paper', down_ratio=4), dict(flavor='centernet', node_type='dcn',
                                                                          output_stride=32, down_ratio=4),
                                    dict(flavor='centernet', node_kernel=1, final_ida=False, output_stride=32,
                                         down_ratio=8, norm_layer='gn')])
def test_our_own_dlaseg_network_is_read_from_its_shapes(kwargs):
    model = dp.DLASeg('dla34', num_classes=5, **kwargs)
    got = detect_layout(model.state_dict()).model_kwargs(model.state_dict())
    rebuilt = dp.DLASeg('dla34', **{**got, 'output_stride': kwargs.get('output_stride', 8)})
    dp.load_checkpoint(rebuilt, model.state_dict())  # strict
    assert {k: got[k] for k in kwargs if k != 'output_stride'} == {k: v for k, v in kwargs.items()
                                                                    if k != 'output_stride'}
