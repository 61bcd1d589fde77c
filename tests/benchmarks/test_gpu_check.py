"""``python -m benchmarks.gpu_check``: the CPU dry run (``--device cpu --smoke``) runs every step of the pipeline and
records its figures; the docs writer replaces only its marked section."""
import json
import re
import subprocess
import sys

import pytest

from benchmarks.gpu_check import DOCS_BEGIN, DOCS_END, STEPS, run_gpu_check, summary_table, write_docs_section
from benchmarks.measure import search_max
from tests.helpers import ROOT, subprocess_env


def test_docs_writer_replaces_only_the_marked_section(tmp_path):
    doc = tmp_path / 'benchmarks.md'
    before, after = '# Benchmarks\n\nCPU table | 1 |\n\n', '\n\n## Appendix\nkept as is\n'
    doc.write_text(before + f'{DOCS_BEGIN}\nNot yet run.\n{DOCS_END}' + after)
    write_docs_section(str(doc), 'GPU figures | 2 |\n')
    assert doc.read_text() == before + f'{DOCS_BEGIN}\nGPU figures | 2 |\n{DOCS_END}' + after
    write_docs_section(str(doc), 'newer | 3 |')  # a second run replaces the first's block, nothing else
    assert doc.read_text() == before + f'{DOCS_BEGIN}\nnewer | 3 |\n{DOCS_END}' + after

    bare = tmp_path / 'bare.md'
    bare.write_text('# Title\ntext\n')
    write_docs_section(str(bare), 'figures')
    assert bare.read_text() == f'# Title\ntext\n\n{DOCS_BEGIN}\nfigures\n{DOCS_END}\n'

    half = tmp_path / 'half.md'
    half.write_text(f'x\n{DOCS_BEGIN}\ny\n')
    with pytest.raises(ValueError, match='has only one of the two gpu-check section markers'):
        write_docs_section(str(half), 'z')
    assert half.read_text() == f'x\n{DOCS_BEGIN}\ny\n'


@pytest.mark.parametrize('answer,start,limit', [(37, 4, 4096), (1, 4, 4096), (0, 4, 4096), (4096, 4, 4096),
                                                 (1000, 1000, 4096), (5000, 64, 1 << 16)])
def test_search_max_brackets_the_largest_fitting_size(answer, start, limit):
    calls = []

    def fits(n):
        calls.append(n)
        return n <= answer

    lo, hi = search_max(fits, start, limit, resolution=0.0, max_probes=64)
    assert lo == min(answer, limit)
    assert hi == (None if answer >= limit else lo + 1)
    assert len(calls) <= 2 * max(limit, 2).bit_length() + 1  # doubling, then bisection: logarithmic
    lo, hi = search_max(fits, start, limit, resolution=0.05, max_probes=64)  # 5%: a bracket, not the exact size
    assert lo <= answer and (hi is None or (hi > answer and hi - lo <= max(1, int(0.05 * lo))))
    calls.clear()
    search_max(fits, start, limit, max_probes=3)
    assert len(calls) <= 3


def test_shipped_docs_have_one_gpu_section():
    text = (ROOT / 'docs' / 'benchmarks.md').read_text()
    assert text.count(DOCS_BEGIN) == 1 and text.count(DOCS_END) == 1
    assert text.index(DOCS_BEGIN) < text.index(DOCS_END)


def test_bad_arguments():
    with pytest.raises(ValueError, match=re.escape("skip: unknown step 'gpu'; allowed: ['bench', 'dcn', 'timm', 'd2', "
                                                   "'mmseg', 'centernet']")):
        run_gpu_check('cpu', smoke=True, skip=['bench', 'gpu'], progress=False)


@pytest.mark.slow
def test_cpu_smoke_runs_every_step(tmp_path):
    out = tmp_path / 'gc'
    docs = tmp_path / 'benchmarks.md'
    docs.write_text(f'before\n{DOCS_BEGIN}\nNot yet run.\n{DOCS_END}\n')
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.gpu_check', '--device', 'cpu', '--smoke',
                           '--out', str(out), '--docs', str(docs), '--no-progress'],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / 'results.json').read_text())
    steps = {s['step']: s for s in res['steps']}
    assert list(steps) == list(STEPS) and res['smoke'] is True
    assert res['environment']['device'] == 'cpu' and res['environment']['torch']

    bench = steps['bench']
    assert bench['status'] == 'pass', bench
    rows = {(t['mode'], t['compiled']) for t in bench['figures']['throughput']}
    assert rows == {('train', False), ('eval', False), ('train', True), ('eval', True)}
    assert all(t['ours_img_s'] > 0 and t['timm_img_s'] > 0 and t['ours_fraction_of_gemm'] > 0
               for t in bench['figures']['throughput'])
    assert bench['figures']['gemm_flops']['bf16'] > 0 and bench['figures']['compile_error'] is None
    searches = bench['figures']['max_batch']
    assert [(s['impl'], s['grad_checkpointing']) for s in searches] == [('timm', False), ('ours', False),
                                                                        ('ours', True)]
    assert all(s['max_batch'] >= 2 and s['probes'][0]['peak_mib'] > 0 for s in searches)
    assert set(bench['goals']) == {'train_cl_vs_timm_eager', 'train_fraction_of_bf16_gemm',
                                   'compile_without_graph_breaks', 'ckpt_max_batch_vs_timm'}

    assert steps['dcn']['status'] == 'pass', steps['dcn']

    for name, metric in (('timm', 'val accuracy'), ('d2', 'bbox AP'), ('mmseg', 'val mIoU')):
        step = steps[name]
        assert step['status'] == 'pass', step
        f = step['figures']
        assert len(f['losses']) >= 2 and all(x > 0 for x in f['losses']), (name, f)
        assert f['metric'] == metric and f['value'] is not None and f['value'] >= 0, (name, f)
        assert (out / name / 'train.log').is_file()
    assert steps['timm']['figures']['chance'] == 0.25 and 0 < steps['mmseg']['figures']['chance'] < 0.5
    centernet = steps['centernet']
    assert centernet['status'] == 'pass' and set(centernet['figures']['fps']) == {'fp32', 'fused', 'compiled (eager)'}
    assert all(v > 0 for v in centernet['figures']['fps'].values()) and (out / 'centernet.json').is_file()

    assert summary_table(res) in proc.stdout
    assert docs.read_text() == f'before\n{DOCS_BEGIN}\nNot yet run.\n{DOCS_END}\n'  # a smoke run never writes docs
    assert 'left unchanged (only a full --device cuda run writes its GPU section)' in proc.stdout
