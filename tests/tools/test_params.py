"""``dla-plugins params``: the parameter counts of the paper's Table 5 comparison, measured on the models built."""
import json

from dla_plugins.tools.cli import main
from dla_plugins.tools.params import table5_params


def test_table5_counts_match_the_paper():
    rows = {r['row']: r for r in table5_params()}
    assert len(rows) == 9
    for r in rows.values():  # the paper rounds to 0.1M; our DLA counts are within 2 % (see README's variant table)
        assert abs(r['params'] - r['paper_params']) / r['paper_params'] < 0.021, r
    assert rows['V-Baseline']['params'] == 138_357_544  # torchvision's VGG-16
    assert rows['R-Baseline, R-Gao et al. (2016), R-Cui et al. (2017)']['params'] == 25_557_032  # ResNet-50
    # VGG-16's 14,714,688 convolutional weights + a 4096 -> 1000 classifier: the paper's 18.8M
    assert rows['V-Gao et al. (2016), V-Cui et al. (2017)']['params'] == 14_714_688 + 4096 * 1000 + 1000
    dla34_200 = {r['row']: r for r in table5_params(200)}['DLA-36']['params']
    assert rows['DLA-36']['params'] - dla34_200 == (512 + 1) * 800  # only the classifier changes


def test_params_command(capsys):
    assert main(['params', '--format', 'json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r['model'] for r in rows][:6] == ['dla46_c', 'dla60x_c', 'dla46_m', 'dla34', 'dla60', 'dla60x']
    assert main(['params', '--classes', '1000']) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ['Table', '5', 'row', 'model', 'params', 'paper']
    assert table[4].split() == ['DLA-36', 'dla34', f"{rows[3]['params'] / 1e6:.2f}M", '15.8M']
    assert main(['params', '--classes', '0']) == 2
    assert capsys.readouterr().err == 'dla-plugins params: error: classes: must be >= 1, got 0\n'
