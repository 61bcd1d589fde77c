"""runtime= exports run in their runtime (onnxruntime, OpenVINO) and match eager, deformable nodes included."""
import numpy as np
import onnx
import pytest
import torch

from dla_plugins.dcn import ModulatedDeformConv2d
from dla_plugins.deploy.export import (
    ExportError,
    build_export_model,
    check_onnx,
    deform_form,
    export_onnx,
)
from dla_plugins.deploy.runtimes import load_onnx
from tests.deploy.test_export import _seg
from tests.helpers import randomize_bn


def _dcn(offset_scale: float) -> ModulatedDeformConv2d:
    """One DCNv2 whose offsets reach several pixels: many bilinear footprints straddle the border."""
    torch.manual_seed(0)
    m = ModulatedDeformConv2d(3, 5, bias=True, impl='native').eval()
    with torch.no_grad():
        m.offset_mask.weight.normal_(0, 0.3 * offset_scale)
        m.offset_mask.bias.normal_(0, offset_scale)
        m.bias.normal_()
    return m


def _ops(path) -> set:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_openvino_form_matches_torchvision_at_the_border(tmp_path):
    """OpenVINO's DeformableConvolution zeroes a sample whose footprint leaves the map; torchvision interpolates
    against zeros. The explicit one-pixel pad makes them agree, borders included."""
    m = _dcn(3.0)
    export_onnx(m, tmp_path / 'd.onnx', (12, 10), runtime='openvino')
    proto = onnx.load(str(tmp_path / 'd.onnx'))
    graph = proto.graph
    node = next(n for n in graph.node if n.op_type == 'DeformableConv2D')
    assert node.domain == 'org.openvinotoolkit'
    assert [a.ints for a in node.attribute if a.name == 'pads'] == [[0, 0, 0, 0]]
    assert 'Pad' in _ops(tmp_path / 'd.onnx') and 'DeformConv' not in _ops(tmp_path / 'd.onnx')
    x = torch.randn(3, 3, 9, 11)
    with torch.no_grad():
        ref = m(x)
    got = torch.from_numpy(load_onnx(tmp_path / 'd.onnx', 'openvino')(x.numpy())[0])
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # without the pad (OpenVINO's op padding as torchvision's): the border samples differ
    pad = next(n for n in graph.node if n.op_type == 'Pad')
    node.input[0] = pad.input[0]
    next(a for a in node.attribute if a.name == 'pads').ints[:] = [1, 1, 1, 1]
    onnx.save(proto, str(tmp_path / 'raw.onnx'))
    raw = torch.from_numpy(load_onnx(tmp_path / 'raw.onnx', 'openvino')(x.numpy())[0])
    assert (raw - ref).abs().max() > 0.1


def test_openvino_cannot_read_deformconv(tmp_path):
    """Why the 'openvino' form exists: OpenVINO 2026.4's ONNX frontend has no rule for DeformConv-19."""
    export_onnx(_dcn(1.0), tmp_path / 'd.onnx', (12, 10), runtime='onnxruntime')
    assert 'DeformConv' in _ops(tmp_path / 'd.onnx')
    with pytest.raises(Exception, match='No conversion rule found for operations: DeformConv-19'):
        load_onnx(tmp_path / 'd.onnx', 'openvino')
    with pytest.raises(ExportError, match=r"openvino cannot run .*: RuntimeError: "
                                            r"No conversion rule found for operations: DeformConv-19$"):
        check_onnx(_dcn(1.0), tmp_path / 'd.onnx', (12, 10), runtime='openvino')


@pytest.mark.slow
@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino', 'tensorrt', 'any'])
def test_deformable_seg_per_runtime(tmp_path, runtime):
    """The CenterNet-flavour deformable DLASeg in each runtime's form, dynamic batch and spatial axes."""
    model = _seg('dcn', 'native')
    export_onnx(model, tmp_path / 's.onnx', (64, 64), runtime=runtime)
    ops = _ops(tmp_path / 's.onnx')
    assert ('DeformConv' in ops) == (runtime in ('onnxruntime', 'tensorrt'))
    assert ('DeformableConv2D' in ops) == (runtime == 'openvino')
    assert check_onnx(model, tmp_path / 's.onnx', (64, 64), runtime=runtime) < 1e-4
    assert check_onnx(model, tmp_path / 's.onnx', (48, 80), batch=1, runtime=runtime) < 1e-4


@pytest.mark.slow
def test_classifier_and_backbone_in_openvino(tmp_path):
    clf = randomize_bn(build_export_model('dla46_c', 'classifier', num_classes=7))
    export_onnx(clf, tmp_path / 'c.onnx', (64, 64), runtime='openvino')
    assert check_onnx(clf, tmp_path / 'c.onnx', (96, 64), batch=3, runtime='openvino') < 1e-4
    bb = randomize_bn(build_export_model('dla46_c', 'backbone'))
    export_onnx(bb, tmp_path / 'b.onnx', (64, 64), runtime='openvino')
    assert check_onnx(bb, tmp_path / 'b.onnx', (64, 96), batch=1, runtime='openvino') < 1e-4


def test_openvino_half_is_not_fp32(tmp_path):
    """fp32 checks pin OpenVINO's CPU precision (its default is bf16 where the CPU has it); half=True does not."""
    clf = randomize_bn(build_export_model('dla46_c', 'classifier', num_classes=7))
    export_onnx(clf, tmp_path / 'c.onnx', (32, 32))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = clf(torch.from_numpy(x)).numpy()
    full = load_onnx(tmp_path / 'c.onnx', 'openvino')(x)[0]
    half = load_onnx(tmp_path / 'c.onnx', 'openvino', half=True)(x)[0]
    assert np.abs(full - ref).max() < 1e-4
    assert np.abs(half - ref).max() > 10 * np.abs(full - ref).max()


def test_bad_runtime(tmp_path):
    with pytest.raises(ValueError, match=r"runtime: unknown target runtime 'tvm'; allowed: "
                                         r"\['onnxruntime', 'openvino', 'tensorrt', 'any'\]"):
        deform_form('tvm')
    with pytest.raises(ValueError, match=r"runtime: cannot run ONNX in 'tensorrt' here; allowed: "
                                         r"\['onnxruntime', 'openvino'\]"):
        load_onnx(tmp_path / 'x.onnx', 'tensorrt')
    with pytest.raises(ExportError, match=r"deform: the 'openvino' form needs padding >= 1 on each side, "
                                          r"got \[0, 0, 0, 0\]"):
        export_onnx(ModulatedDeformConv2d(3, 2, kernel_size=1, padding=0), tmp_path / 'x.onnx', (8, 8),
                    runtime='openvino')
