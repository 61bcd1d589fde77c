"""Every `dla-plugins` subcommand, run in-process through ``main`` (and once as the installed console script)."""
import json
import subprocess
import sys

import pytest
import torch

from dla_plugins import create_dla, load_checkpoint, read_state_dict
from dla_plugins.tools.cli import build_parser, main
from tests.helpers import randomize_bn, subprocess_env, timm_reference, to_ucbdrive_layout


def _subcommands():
    return sorted(build_parser()._subparsers._group_actions[0].choices)


def test_help_everywhere(capsys):
    assert _subcommands() == ['bench', 'bench-dcn', 'convert', 'demo', 'export', 'zoo']
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


@pytest.mark.parametrize('layout', ['timm', 'ucbdrive'])
def test_convert_round_trip(tmp_path, capsys, layout):
    theirs = randomize_bn(timm_reference('dla46_c', num_classes=10)).eval()
    state = theirs.state_dict()
    if layout == 'ucbdrive':
        state = to_ucbdrive_layout(state, create_dla('dla46_c', num_classes=10))
        assert 'level4.project.0.weight' in state  # unused by forward; convert must drop it
    src, dst = tmp_path / 'src.pth', tmp_path / 'out.safetensors'
    torch.save({'state_dict': state}, src)
    assert main(['convert', str(src), str(dst), '--no-progress']) == 0  # variant inferred from shapes
    out = capsys.readouterr().out
    assert f'({layout} layout)' in out and 'dla46_c, 10 classes' in out and 'loads strictly' in out
    converted = read_state_dict(dst)
    ours = create_dla('dla46_c', num_classes=10)
    load_checkpoint(ours, converted)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x), rtol=0, atol=0)
    # explicit variant: a wrong one names the mismatching keys
    assert main(['convert', str(src), str(tmp_path / 'x.safetensors'), '--variant', 'dla34', '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'checkpoint does not match DLA' in err and 'unexpected key(s)' in err
    assert 'level2.tree1.conv3.weight' in err  # dla46_c's bottleneck keys, named one by one


def test_convert_errors(tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    torch.save({'foo.weight': torch.zeros(3)}, bad)
    assert main(['convert', str(bad), str(tmp_path / 'o.safetensors'), '--no-progress']) == 2
    assert 'no DLA variant match its keys and shapes; pass --variant' in capsys.readouterr().err
    assert main(['convert', str(bad), str(tmp_path / 'o.pth')]) == 2
    assert "DST: must end with .safetensors, got" in capsys.readouterr().err


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


@pytest.mark.slow
def test_bench_tiny(tmp_path, capsys):
    assert main(['bench', '--variants', 'dla46_c', '--batch-size', '2', '--img-size', '32', '--rounds', '1',
                 '--warmup', '0', '--dtypes', 'fp32', '--out', str(tmp_path), '--name', 'b',
                 '--no-progress']) == 0
    res = json.loads((tmp_path / 'b.json').read_text())
    rows = {(r['mode'], r.get('dtype')): r for r in res['results']}
    assert set(rows) == {('eval', 'fp32'), ('train', 'fp32'), ('train_memory', None)}
    ev = rows[('eval', 'fp32')]
    assert set(ev['configs']) == {'ours:nchw', 'ours:nchw:fused', 'timm:nchw', 'ours:cl', 'ours:cl:fused', 'timm:cl'}
    assert ev['ours']['img_s'] > 0 and ev['timm']['img_s'] > 0 and ev['speedup'] > 0
    assert 0 < ev['ours']['fraction_of_gemm_peak'] and res['gemm_flops']['fp32'] > 0
    mem = rows[('train_memory', None)]
    assert {'timm', 'ours', 'ours_grad_ckpt'} <= set(mem) and mem['timm']['peak_mib'] > 0
    md = (tmp_path / 'b.md').read_text()
    assert '| dla46_c | eval | fp32 | no |' in md and 'Peak training-step memory' in md
    assert (tmp_path / 'b.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| variant | mode | dtype |' in capsys.readouterr().out


def test_bench_bad_args(capsys):
    assert main(['bench', '--dtypes', 'fp8', '--no-progress']) == 2
    assert "dtypes: unknown dtype 'fp8'; allowed: ['fp32', 'bf16']" in capsys.readouterr().err
