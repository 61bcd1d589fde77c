"""``dla-plugins export SRC``: SRC a variant or a recognised checkpoint (CenterNet's own ctdet file included), the
detector with its heads or its top-K decoding in the graph, in onnxruntime and OpenVINO, equal to the reference."""
import numpy as np
import onnx
import pytest
import torch

from dla_plugins.centernet import ctdet_decode
from dla_plugins.deploy.runtimes import load_onnx
from dla_plugins.deploy.source import DetectorOutputs, build_from_source
from dla_plugins.tools.cli import main
from tests.golden import load_manifest, load_outputs, make_input, write_checkpoint


@pytest.fixture(scope='module')
def ctdet_file(tmp_path_factory):
    """xingyizhou/CenterNet's ctdet dla_34 checkpoint, rebuilt from the golden manifest in its real container."""
    return write_checkpoint(load_manifest('centernet_dla34_dcn'),
                            str(tmp_path_factory.mktemp('ctdet') / 'ctdet_dla34.pth'))


@pytest.mark.slow
@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
def test_centernet_checkpoint_exports_heads_equal_to_the_reference(ctdet_file, tmp_path, capsys, runtime):
    path = tmp_path / 'ctdet.onnx'
    assert main(['export', ctdet_file, '--what', 'centernet', '--runtime', runtime, '--onnx', str(path),
                 '--img-size', '64', '--no-progress']) == 0
    assert f'{runtime} matches eager' in capsys.readouterr().out
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ['hm', 'wh', 'reg']
    assert {'openvino': 'DeformableConv2D', 'onnxruntime': 'DeformConv'}[runtime] in {n.op_type for n in graph.node}
    manifest = load_manifest('centernet_dla34_dcn')
    got = load_onnx(path, runtime)(make_input(manifest).numpy())  # 96 x 64: not the export's size
    ref = load_outputs('centernet_dla34_dcn')
    for name, g in zip(('hm', 'wh', 'reg'), got):
        np.testing.assert_allclose(g, ref[name].numpy(), atol=1e-4, rtol=1e-4, err_msg=name)


@pytest.mark.slow
def test_centernet_decode_in_the_graph(ctdet_file, tmp_path):
    """--decode: boxes/scores/classes in input pixels, CenterNet's ctdet_decode of the reference heads."""
    model = build_from_source(ctdet_file, 'centernet', decode=True, K=10)
    assert isinstance(model, DetectorOutputs) and model.output_names == ['boxes', 'scores', 'classes']
    from dla_plugins.deploy.export import export_onnx

    export_onnx(model, tmp_path / 'd.onnx', (64, 64), runtime='openvino')
    ref = load_outputs('centernet_dla34_dcn')
    boxes, scores, classes = ctdet_decode(ref['hm'].sigmoid(), ref['wh'], ref['reg'], K=10)
    got = load_onnx(tmp_path / 'd.onnx', 'openvino')(make_input(load_manifest('centernet_dla34_dcn')).numpy())
    np.testing.assert_array_equal(got[2], classes.numpy())
    np.testing.assert_allclose(got[1], scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[0], 4 * boxes.numpy(), atol=1e-3)


def test_what_the_file_cannot_give(ctdet_file):
    with pytest.raises(ValueError, match=r"what: 'seg' for .*ctdet_dla34.pth, a CenterNet checkpoint; "
                                         r"allowed: \['centernet', 'backbone'\]"):
        build_from_source(ctdet_file, 'seg')
    with pytest.raises(ValueError, match=r"what: unknown export target 'det'; allowed: "
                                         r"\['classifier', 'backbone', 'seg', 'centernet'\]"):
        build_from_source('dla34', 'det')
    with pytest.raises(FileNotFoundError, match=r"source: 'nope.pth' is neither a variant, a dlap:// name nor a file"):
        build_from_source('nope.pth')
    with pytest.raises(ValueError, match=r"checkpoint_path: only with a variant as the source, got source '.*'"):
        build_from_source(ctdet_file, 'centernet', checkpoint_path=ctdet_file)
    with pytest.raises(ValueError, match=r"num_classes: only with a variant as the source, got source '.*'"):
        build_from_source(ctdet_file, 'centernet', num_classes=20)


@pytest.mark.slow
def test_centernet_backbone_and_classifier_file_into_a_detector(ctdet_file, tmp_path):
    levels = build_from_source(ctdet_file, 'backbone')
    x = make_input(load_manifest('centernet_dla34_dcn'))
    with torch.no_grad():
        assert [tuple(t.shape[1:2]) for t in levels(x)] == [(16,), (32,), (64,), (128,), (256,), (512,)]
    ucb = write_checkpoint(load_manifest('ucbdrive_dla34'), str(tmp_path / 'dla34.pth'))
    det = build_from_source(ucb, 'centernet', node_type='conv')
    clf = build_from_source(ucb, 'classifier')
    mine, theirs = det.model.backbone.state_dict(), clf.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in mine.items())
