"""ONNX (checked with onnxruntime) and TorchScript export of backbone features and DLASeg, deformable nodes too."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from dla_plugins.deploy.export import (
    ExportError,
    build_export_model,
    check_onnx,
    check_torchscript,
    export_onnx,
    export_torchscript,
)
from tests.helpers import randomize_bn


def _onnx_outputs(path, x):
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return [torch.from_numpy(o) for o in sess.run(None, {'images': x.numpy()})]


@pytest.mark.slow
def test_backbone_onnx_levels(tmp_path):
    model = randomize_bn(build_export_model('dla46_c', 'backbone'))
    export_onnx(model, tmp_path / 'b.onnx', (64, 64))
    x = torch.randn(3, 3, 96, 64)  # another batch size: the batch axis is dynamic
    with torch.no_grad():
        ref = model(x)
    got = _onnx_outputs(tmp_path / 'b.onnx', x)
    assert [tuple(g.shape) for g in got] == [(3, c, 96 // s, 64 // s) for c, s in
                                             zip((16, 32, 64, 64, 128, 256), (1, 2, 4, 8, 16, 32))]
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g.numpy(), r.numpy(), atol=1e-4, rtol=1e-3)


def _seg(node_type, dcn_impl='auto'):
    model = randomize_bn(build_export_model('dla46_c', 'seg', num_classes=3, node_type=node_type))
    with torch.no_grad():
        for m in model.modules():  # non-zero offsets/masks: the deformable sampling really happens
            if hasattr(m, 'offset_mask'):
                m.offset_mask.weight.normal_(0, 0.05)
                m.offset_mask.bias.normal_(0, 0.5)
                m.impl = dcn_impl
    return model


@pytest.mark.slow
@pytest.mark.parametrize('node_type,deform', [('conv', 'op'), ('dcn', 'op'), ('dcn', 'plain')])
def test_seg_onnx_and_torchscript(tmp_path, node_type, deform):
    """'op': ONNX DeformConv (opset 19); 'plain': standard operators only. TorchScript runs the native DCN."""
    import onnx

    model = _seg(node_type, 'native')
    export_onnx(model, tmp_path / 's.onnx', (64, 64), deform=deform)
    assert check_onnx(model, tmp_path / 's.onnx', (64, 64)) < 1e-4
    assert check_onnx(model, tmp_path / 's.onnx', (48, 80), batch=1) < 1e-4  # dynamic spatial axes
    graph = onnx.load(str(tmp_path / 's.onnx'))
    ops = {n.op_type for n in graph.graph.node}
    if node_type == 'dcn':
        assert ('DeformConv' in ops) == (deform == 'op')
        assert graph.opset_import[0].version == (19 if deform == 'op' else 17)
    if deform == 'plain':
        assert {'Gather', 'MatMul', 'ReduceSum', 'Floor'} <= ops
    assert all(m.impl == 'native' for m in model.modules() if hasattr(m, 'impl'))  # restored after export
    export_torchscript(model, tmp_path / 's.pt')
    assert check_torchscript(model, tmp_path / 's.pt', (64, 64)) < 1e-4


@pytest.mark.slow
def test_seg_dcn_torch_export_native():
    model = _seg('dcn', 'native')
    x = torch.randn(1, 3, 64, 64)
    ep = torch.export.export(model, (x,))
    assert not any('torchvision' in str(n.target) for n in ep.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), atol=1e-5, rtol=1e-4)


def test_bad_target_and_opset(tmp_path):
    with pytest.raises(ValueError, match="what: unknown export target 'det'; allowed: "
                                         r"\['classifier', 'backbone', 'seg'\]"):
        build_export_model('dla46_c', 'det')
    model = build_export_model('dla46_c', 'seg', node_type='dcn')
    with pytest.raises(ExportError, match=r'opset: deformable nodes need ONNX DeformConv \(opset >= 19\), got 17'):
        export_onnx(model, tmp_path / 'x.onnx', (64, 64), opset=17)
    with pytest.raises(ValueError, match=r"deform: unknown ONNX form of deformable convs 'grid'; allowed: "
                                         r"\['op', 'openvino', 'plain'\]"):
        export_onnx(model, tmp_path / 'x.onnx', (64, 64), deform='grid')


def test_check_onnx_detects_mismatch(tmp_path):
    model = build_export_model('dla46_c', 'classifier', num_classes=5)
    export_onnx(model, tmp_path / 'c.onnx', (32, 32))
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    with pytest.raises(ExportError, match='onnxruntime: output 0 differs from the eager model by up to'):
        check_onnx(model, tmp_path / 'c.onnx', (32, 32))
