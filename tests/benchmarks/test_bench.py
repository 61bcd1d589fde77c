"""``python -m benchmarks.bench``: ours vs timm's DLA at toy sizes, every output written."""
import json
import re

import pytest

from benchmarks.bench import main


@pytest.mark.slow
def test_bench_tiny(tmp_path, capsys):
    assert main(['--variants', 'dla46_c', '--batch-size', '2', '--img-size', '32', '--rounds', '1',
                 '--warmup', '0', '--dtypes', 'fp32', '--out', str(tmp_path), '--name', 'b',
                 '--no-progress']) == 0
    res = json.loads((tmp_path / 'b.json').read_text())
    rows = {(r['mode'], r.get('dtype')): r for r in res['results']}
    assert set(rows) == {('eval', 'fp32'), ('train', 'fp32'), ('train_memory', 'fp32')}
    ev = rows[('eval', 'fp32')]
    assert set(ev['configs']) == {'ours:nchw', 'ours:nchw:fused', 'timm:nchw', 'ours:cl', 'ours:cl:fused', 'timm:cl'}
    assert ev['ours']['img_s'] > 0 and ev['timm']['img_s'] > 0 and ev['speedup'] > 0
    assert 0 < ev['ours']['fraction_of_gemm_peak'] and res['gemm_flops']['fp32'] > 0
    mem = rows[('train_memory', 'fp32')]
    assert {'timm', 'ours', 'ours_grad_ckpt'} <= set(mem) and mem['timm']['peak_mib'] > 0
    md = (tmp_path / 'b.md').read_text()
    assert '| dla46_c | eval | fp32 | no |' in md and 'Peak training-step memory' in md
    assert (tmp_path / 'b.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '| variant | mode | dtype |' in capsys.readouterr().out


def test_bench_bad_args():
    with pytest.raises(ValueError, match=re.escape("dtypes: unknown dtype 'fp8'; allowed: ['fp32', 'bf16']")):
        main(['--dtypes', 'fp8', '--no-progress'])


def test_centernet_bench_report_and_bad_size():
    """The CenterNet benchmark's table (its timed run needs a CenterNet checkout: run by hand, docs/centernet.md)."""
    from benchmarks.bench_centernet import run_centernet_bench, to_markdown

    res = dict(config=dict(img_size=512, batch_size=1, rounds=5), median_ms={'reference': 2000.0, 'ours': 500.0},
               speedup_vs_reference={'reference': 1.0, 'ours': 4.0},
               machine=dict(device='cpu', processor='x86_64', torch_threads=2))
    assert to_markdown(res).splitlines()[-1] == '| ours | 500.0 | 4.00x |'
    with pytest.raises(ValueError, match=r'^img_size: 500; allowed: a multiple of 32 >= 32$'):
        run_centernet_bench('/nonexistent', img_size=500)
