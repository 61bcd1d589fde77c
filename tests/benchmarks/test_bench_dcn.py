"""``run_dcn_bench`` dry run (smoke shapes): every implementation appears, ratios and tables are produced."""
import pytest

from benchmarks.bench_dcn import main, run_dcn_bench, to_markdown


def test_smoke_op_section(tmp_path):
    res = run_dcn_bench('cpu', dtypes=('fp32', 'bf16'), smoke=True, model=False, progress=False)
    fp32 = [s for s in res['ops'] if s['dtype'] == 'fp32']
    assert [s['mode'] for s in fp32] == ['fwd', 'fwd+bwd']
    for sec in fp32:
        assert {'conv', 'native', 'torchvision'} <= set(sec['median_ms'])
        assert sec['ratio_vs_conv']['conv'] == 1.0 and sec['speedup_of_native']['torchvision'] > 0
        assert 'mmcv' in sec['median_ms'] or 'mmcv' in sec['unsupported']
    bf16 = [s for s in res['ops'] if s['dtype'] == 'bf16']
    assert all('native' in s['median_ms'] and 'torchvision' in s['unsupported'] for s in bf16)  # no CPU bf16 kernel
    md = to_markdown(res)
    assert '| fp32 | fwd+bwd |' in md and 'n/a (RuntimeError)' in md


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"dtypes: unknown dtype 'int8'; allowed: \['fp32', 'bf16', 'fp16'\]"):
        run_dcn_bench(dtypes=('int8',))
    with pytest.raises(ValueError, match=r'op_shape: expected \(batch, C_in, C_out, H, W\), got \(1, 2\)'):
        run_dcn_bench(op_shape=(1, 2), model=False)


@pytest.mark.slow
def test_cli_smoke_writes_outputs(tmp_path):
    assert main(['--smoke', '--out', str(tmp_path), '--name', 'd', '--no-progress']) == 0
    assert {p.name for p in tmp_path.iterdir()} == {'d.json', 'd.md', 'd.png'}
