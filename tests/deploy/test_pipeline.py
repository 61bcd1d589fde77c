"""``deploy_onnx`` / ``dla-plugins export --precision``: fp16 and int8 files for each runtime, their agreement on a
held-out batch, the calibration folder, the latency line."""
import onnx
import pytest
import torch

from dla_plugins.deploy.pipeline import deploy_onnx
from dla_plugins.tools.cli import main
from tests.deploy.test_export import _seg


@pytest.mark.slow
@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino', 'tensorrt'])
def test_int8_deformable_seg_per_runtime(tmp_path, runtime):
    model = _seg('dcn', 'native')
    report = deploy_onnx(model, tmp_path / 's8.onnx', runtime, 'int8', (64, 64), 'seg', calibration_size=4)
    graph = onnx.load(str(tmp_path / 's8.onnx')).graph
    ops = {n.op_type for n in graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    assert ('DeformableConv2D' in ops) == (runtime == 'openvino') and ('DeformConv' in ops) != (runtime == 'openvino')
    uint8 = [i for i in graph.initializer if i.name.endswith('_zero_point') and i.data_type == onnx.TensorProto.UINT8]
    assert bool(uint8) == (runtime != 'tensorrt')  # TensorRT: symmetric int8 activations, zero point 0
    checked = {'tensorrt': 'onnxruntime'}.get(runtime, runtime)
    assert list(report.agreement) == [checked]
    assert report.agreement[checked]['pixel'] > 0.8, report.agreement
    assert report.form == {'onnxruntime': 'op', 'openvino': 'openvino', 'tensorrt': 'op'}[runtime]


@pytest.mark.slow
def test_cli_fp16_int8_and_latency(tmp_path, capsys):
    base = ['export', 'dla46_c', '--img-size', '64', '--num-classes', '10', '--no-progress']
    assert main(base + ['--onnx', str(tmp_path / 'h.onnx'), '--runtime', 'any', '--precision', 'fp16']) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'h.onnx'} (fp16, for any); agreement with fp32 eager on 8 held-out "
                          'images: onnxruntime: top1 1, max_abs ') and '; openvino: top1 1, max_abs ' in out
    assert main(base + ['--onnx', str(tmp_path / 'q.onnx'), '--runtime', 'openvino', '--precision', 'int8',
                        '--calibration-size', '8', '--latency', '2']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 'q.onnx'} (int8, for openvino); agreement with fp32 eager on 8 "
                               'held-out images: openvino: top1 ')
    assert lines[1].startswith('latency, batch 1 at 64px, median of 2 alternating rounds: eager ')


def test_calibration_folder_too_small(tmp_path, capsys):
    from torchvision.io import write_png

    for i in range(3):
        write_png(torch.zeros(3, 8, 8, dtype=torch.uint8), str(tmp_path / f'{i}.png'))
    argv = ['export', 'dla46_c', '--onnx', str(tmp_path / 'x.onnx'), '--precision', 'int8', '--img-size', '32',
            '--calibration', str(tmp_path), '--calibration-size', '4', '--no-progress']
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"dla-plugins export: error: calibration: 3 images in {str(tmp_path)!r}; allowed: more than "
        'calibration_size=4 (the rest, up to 8, are the held-out batch)')
    with pytest.raises(ValueError, match=r"precision: unknown precision 'int4'; allowed: \['fp32', 'fp16', 'int8'\]"):
        deploy_onnx(torch.nn.Identity(), tmp_path / 'x.onnx', precision='int4')
