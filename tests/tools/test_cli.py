"""Every `dla-plugins` subcommand, run in-process through ``main`` (and once as the installed console script)."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from dla_plugins import CenterNet, DLASeg, create_dla, load_checkpoint, read_state_dict
from dla_plugins.checkpoint import FAMILIES
from dla_plugins.tools.cli import build_parser, main
from tests.golden import load_manifest, load_outputs, make_input, tolerance, write_checkpoint
from tests.helpers import randomize_bn, subprocess_env, timm_reference


def _subcommands():
    return sorted(build_parser()._subparsers._group_actions[0].choices)


def test_help_everywhere(capsys):
    assert _subcommands() == ['convert', 'demo', 'export', 'params', 'weights', 'zoo']
    for cmd in [[], *[[c] for c in _subcommands()]]:
        with pytest.raises(SystemExit) as e:
            main(cmd + ['--help'])
        assert e.value.code == 0
        assert 'usage: dla-plugins' in capsys.readouterr().out


def test_console_script_help():
    env = subprocess_env()
    out = subprocess.run([sys.executable, '-m', 'dla_plugins.tools.cli', 'zoo', '--help'], capture_output=True,
                         text=True, env=env, check=True)
    assert '--format {table,json,md}' in out.stdout


def test_zoo_formats(capsys):
    assert main(['zoo', '--format', 'json', '--variants', 'dla34,DLA-48-B-s']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r['name'] for r in rows] == ['dla34', 'dla46_c']
    dla34 = rows[0]
    assert dla34['params'] == dla34['timm_params'] == sum(p.numel() for p in timm_reference('dla34').parameters())
    assert dla34['paper_params'] == 15.8e6 and dla34['paper_name'] == 'DLA-36'
    assert 3.0 < dla34['gflops'] < 3.2  # fvcore MACs of dla34 at 224 (timm lists 3.07 GMACs)
    assert dla34['strides'] == [1, 2, 4, 8, 16, 32] and dla34['channels'][-1] == 512
    assert main(['zoo', '--format', 'md', '--variants', 'dla46_c']) == 0
    md = capsys.readouterr().out
    assert md.startswith('| name | paper_name | block | params |') and '| dla46_c | DLA-48-B-s |' in md
    assert 'one fused multiply-add as one flop' in md
    assert main(['zoo', '--variants', 'dla46_c', '--no-gflops']) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ['name', 'paper_name', 'block'] and 'gflops' not in table


def test_zoo_bad_variant(capsys):
    with pytest.raises(SystemExit):
        main(['zoo', '--variants', 'dla7'])
    assert "unknown DLA variant 'dla7'" in capsys.readouterr().err


def test_convert_round_trip_timm(tmp_path, capsys):
    theirs = randomize_bn(timm_reference('dla46_c', num_classes=10)).eval()
    src, dst = tmp_path / 'src.pth', tmp_path / 'out.safetensors'
    torch.save({'state_dict': theirs.state_dict()}, src)
    assert main(['convert', str(src), str(dst), '--no-progress']) == 0  # variant inferred from shapes
    out = capsys.readouterr().out
    assert '(timm layout: timm / dla-plugins DLA)' in out and 'dla46_c DLA, 10 classes' in out
    assert 'loads strictly' in out and 'skipped nothing' in out
    ours = create_dla('dla46_c', num_classes=10)
    load_checkpoint(ours, read_state_dict(dst))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x), rtol=0, atol=0)
    # explicit variant: a wrong one names the mismatching keys
    assert main(['convert', str(src), str(tmp_path / 'x.safetensors'), '--variant', 'dla34', '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'checkpoint does not match DLA' in err and 'unexpected key(s)' in err
    assert 'level2.tree1.conv3.weight' in err  # dla46_c's bottleneck keys, named one by one


@pytest.mark.parametrize('name,layout,skipped', [
    ('ucbdrive_dla34', 'ucbdrive', 'unused project layer of a tree deeper than 1'),
    ('ucbdrive_dlaseg_dla34', 'ucbdrive-dlaseg', 'frozen bilinear upsampling of the logits'),
    ('centernet_dla34_dcn', 'centernet', 'unused project layer of a tree deeper than 1'),  # ctdet heads are kept
])
def test_convert_reference_checkpoints(tmp_path, capsys, name, layout, skipped):
    """Reference files (golden fixtures): the CLI names the layout and what it skipped; the output loads strictly
    and reproduces the reference."""
    manifest = load_manifest(name)
    src = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    dst = tmp_path / 'out.safetensors'
    assert main(['convert', src, str(dst), '--no-progress']) == 0
    out = capsys.readouterr().out
    assert f'({layout} layout: {FAMILIES[layout]})' in out and skipped in out
    ref = load_outputs(name)
    x = make_input(manifest)
    if 'features' in ref:
        kwargs = json.loads(safe_open(str(dst), 'pt').metadata()['network'])
        if 'heads' in kwargs:  # CenterNet's ctdet file: the detector, heads included
            model = CenterNet('dla34', **kwargs).eval()
            load_checkpoint(model, read_state_dict(dst))
            with torch.no_grad():
                assert (model(x)['hm'] - ref['hm']).abs().max() <= tolerance(ref['hm'], deformable=True)[0]
        else:
            model = DLASeg('dla34', **kwargs).eval()
            load_checkpoint(model, read_state_dict(dst))
        with torch.no_grad():
            got, want = model.forward_features(x), ref['features']
    else:
        model = create_dla('dla34').eval()
        load_checkpoint(model, read_state_dict(dst))
        with torch.no_grad():
            got, want = model(x), ref['logits']
    assert (got - want).abs().max() <= tolerance(want, deformable=True)[0]


def test_convert_to_hosts(tmp_path, capsys):
    src = write_checkpoint(load_manifest('ucbdrive_dlaseg_dla34'), str(tmp_path / 'ref.pth'))
    assert main(['convert', src, str(tmp_path / 'd2.pth'), '--to', 'detectron2', '--no-progress']) == 0
    assert main(['convert', src, str(tmp_path / 'mmseg.pth'), '--to', 'mmseg', '--no-progress']) == 0
    assert '[mmseg]' in capsys.readouterr().out
    d2 = torch.load(tmp_path / 'd2.pth', weights_only=True)['model']
    mm = torch.load(tmp_path / 'mmseg.pth', weights_only=True)['state_dict']
    assert 'backbone.bottom_up.dla.level5.root.conv.weight' in d2 and 'backbone.dla_up.idas.3.nodes.3.conv.weight' in d2
    assert not [k for k in d2 if k.endswith('num_batches_tracked') or 'classifier' in k]
    assert {'backbone.body.level5.root.conv.weight', 'decode_head.dla_up.idas.0.proj.1.0.weight',
            'decode_head.conv_seg.weight'} <= set(mm)
    assert main(['convert', src, str(tmp_path / 'x.safetensors'), '--to', 'mmseg', '--no-progress']) == 2
    assert 'DST: must end with .pth for --to mmseg' in capsys.readouterr().err


def test_convert_errors(tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    torch.save({'foo.weight': torch.zeros(3)}, bad)
    assert main(['convert', str(bad), str(tmp_path / 'o.safetensors'), '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'checkpoint: unrecognised layout: no DLA (base_layer/level<i> keys) under any known prefix' in err
    assert 'closest recognised layout: ' in err and '1 unmatched key(s):\n    foo.weight' in err
    assert main(['convert', str(bad), str(tmp_path / 'o.pth')]) == 2
    assert "DST: must end with .safetensors for --to core, got" in capsys.readouterr().err


@pytest.mark.slow
def test_export_classifier_onnx_and_torchscript(tmp_path, capsys):
    onnx_path, ts_path = tmp_path / 'm.onnx', tmp_path / 'm.pt'
    assert main(['export', 'dla46_c', '--onnx', str(onnx_path), '--torchscript', str(ts_path), '--img-size', '64',
                 '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'onnxruntime matches eager' in out and 'TorchScript matches eager' in out
    assert onnx_path.stat().st_size > 1e6 and ts_path.stat().st_size > 1e6


def test_export_needs_an_output(capsys):
    with pytest.raises(SystemExit, match='give --onnx PATH and/or --torchscript PATH'):
        main(['export', 'dla46_c'])
