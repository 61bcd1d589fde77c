"""fp16 and int8 (static QDQ) exports: what they contain, that both runtimes run them, and their agreement."""
import numpy as np
import onnx
import pytest
import torch

from dla_plugins.deploy.export import build_export_model, export_onnx, openvino_form
from dla_plugins.deploy.quantize import agreement, calibration_images, quantize_int8, to_fp16
from dla_plugins.deploy.runtimes import load_onnx
from tests.deploy.test_export import _seg
from tests.helpers import randomize_bn


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp('q')
    model = randomize_bn(build_export_model('dla46_c', 'classifier', num_classes=10))
    export_onnx(model, root / 'c.onnx', (64, 64))
    x = calibration_images(None, 8, (64, 64), seed=1)  # held out: another seed than the calibration set
    with torch.no_grad():
        ref = [model(torch.from_numpy(x)).numpy()]
    return root, x, ref


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_fp16_graph(classifier, runtime):
    root, x, ref = classifier
    to_fp16(root / 'c.onnx', root / 'c16.onnx')
    graph = onnx.load(str(root / 'c16.onnx')).graph
    conv_w = {n.input[1] for n in graph.node if n.op_type == 'Conv'}
    assert {i.data_type for i in graph.initializer if i.name in conv_w} == {onnx.TensorProto.FLOAT16}
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 in and out
    res = agreement(ref, load_onnx(root / 'c16.onnx', runtime)(x), 'classifier')
    assert res['top1'] == 1.0 and 1e-5 < res['max_abs'] < 5e-2


@pytest.mark.slow
def test_int8_qdq_runs_in_both_runtimes(classifier):
    root, x, ref = classifier
    quantize_int8(root / 'c.onnx', root / 'c8.onnx', calibration_images(None, 16, (64, 64)))
    graph = onnx.load(str(root / 'c8.onnx')).graph
    convs = [n for n in graph.node if n.op_type == 'Conv']
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert all(producers[c.input[0]] == 'DequantizeLinear' for c in convs)  # every conv reads a quantized input
    scale = float(np.abs(ref[0]).max())
    for runtime in ('onnxruntime', 'openvino'):
        res = agreement(ref, load_onnx(root / 'c8.onnx', runtime)(x), 'classifier')
        assert res['top1'] >= 0.75 and 1e-4 * scale < res['max_abs'] < 0.2 * scale, (runtime, res)


@pytest.mark.slow
def test_int8_deformable_seg_keeps_deformable_nodes_fp32(tmp_path):
    model = _seg('dcn', 'native')
    export_onnx(model, tmp_path / 's.onnx', (64, 64), runtime='onnxruntime')  # calibration runs in onnxruntime
    quantize_int8(tmp_path / 's.onnx', tmp_path / 's8.onnx', calibration_images(None, 4, (64, 64)))
    openvino_form(tmp_path / 's8.onnx', tmp_path / 's8.onnx')
    graph = onnx.load(str(tmp_path / 's8.onnx')).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    dcn = [n for n in graph.node if n.op_type == 'DeformableConv2D']
    assert dcn and all(producers.get(n.input[2]) is None for n in dcn)  # fp32 weights: initializers, no DQ
    x = calibration_images(None, 2, (64, 64), seed=1)
    with torch.no_grad():
        ref = [model(torch.from_numpy(x)).numpy()]
    res = agreement(ref, load_onnx(tmp_path / 's8.onnx', 'openvino')(x), 'seg')
    assert res['pixel'] > 0.8 and res['miou'] > 0.5, res


def test_agreement_values():
    ref = [np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.5]])]
    got = [np.array([[0.0, 1.5], [2.0, 2.5], [0.0, 3.0], [1.0, 0.5]])]
    assert agreement(ref, got, 'classifier') == dict(top1=0.75, max_abs=2.5)
    seg_ref = [np.stack([np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])])[None]]
    seg_got = [np.stack([np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]])])[None]]
    res = agreement(seg_ref, seg_got, 'seg')  # class 0: IoU 1/2, class 1: 2/3
    assert res == dict(miou=pytest.approx(7 / 12), pixel=0.75)
    with pytest.raises(ValueError, match=r"task: unknown agreement task 'det'; allowed: \['classifier', 'seg', "):
        agreement(ref, got, 'det')


def test_calibration_images(tmp_path):
    from torchvision.io import write_png

    for i in range(3):
        write_png(torch.full((3, 20, 30), 40 * i, dtype=torch.uint8), str(tmp_path / f'{i}.png'))
    x = calibration_images(tmp_path, num=2, img_size=(16, 16))
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[1, 0], (40 / 255 - 0.485) / 0.229, rtol=1e-5)
    synth = calibration_images(None, num=3, img_size=(32, 32))
    assert synth.shape == (3, 3, 32, 32) and not np.array_equal(synth, calibration_images(None, 3, (32, 32), seed=1))
    with pytest.raises(ValueError, match=r"calibration: no .jpg/.jpeg/.png/.bmp images under '.*empty'; allowed: "):
        calibration_images(tmp_path / 'empty')


def test_detection_agreement_from_raw_heads_and_boxes():
    """Raw heads are decoded as CenterNet does; a detection is found again by class and IoU, or by its centre."""
    hm = np.random.default_rng(0).uniform(-6, -5, (1, 2, 16, 16)).astype(np.float32)  # > 20 distinct local maxima
    hm[0, 1, 5:8, 5:8] = -30.0  # around the class-1 peak: nothing its loss would un-suppress into the top 20
    hm[0, 0, 2, 3], hm[0, 1, 6, 6] = 3.0, 2.0  # two strong peaks: class 0 at (x 3, y 2), class 1 at (x 6, y 6)
    wh, reg = np.full((1, 2, 16, 16), 2.0, np.float32), np.zeros((1, 2, 16, 16), np.float32)
    lost = hm.copy()
    lost[0, 1, 6, 6] = -30.0  # the class-1 peak disappears
    res = agreement([hm, wh, reg], [lost, wh, reg], 'centernet')
    assert res['det'] == pytest.approx(19 / 20) and res['score_abs'] < 1e-6  # of the top 20, only that one is lost
    boxes = np.array([[[0.0, 0.0, 4.0, 4.0], [10.0, 10.0, 10.1, 10.1]]], np.float32)
    shifted = boxes + np.array([1.0, 0.0, 1.0, 0.0], np.float32)  # IoU 0.6 / tiny box: centre 1 px away
    scores, classes = np.array([[0.9, 0.8]], np.float32), np.array([[0, 1]], np.int64)
    assert agreement([boxes, scores, classes], [shifted, scores, classes], 'centernet')['det'] == 1.0
    assert agreement([boxes, scores, classes], [shifted, scores, classes[:, ::-1]], 'centernet')['det'] == 0.0
