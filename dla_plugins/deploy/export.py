"""ONNX and TorchScript export of a DLA classifier, backbone (all six levels) or DLASeg, checked numerically.

ONNX export uses the TorchScript-based exporter (``dynamo=False``), which needs no onnxscript; the exported graph
is run in its target runtime (:mod:`.runtimes`: onnxruntime or OpenVINO) and compared with the eager model.
Deformable aggregation nodes export in the form the target runtime runs natively (``runtime`` picks it,
``deform`` overrides it; docs/deploy.md):

- 'op': ONNX ``DeformConv`` (opset 19), through a symbolic this module registers for torchvision's
  ``deform_conv2d`` (torchvision ships none). onnxruntime's CPU provider runs it; TensorRT's ONNX parser takes it
  natively since 10.1. OpenVINO 2026.4's ONNX frontend has no conversion rule for it.
- 'openvino': OpenVINO's own ``org.openvinotoolkit::DeformableConv2D``, which its ONNX frontend turns into its
  ``DeformableConvolution`` (v8). That op returns zero for a sample whose bilinear footprint leaves the map, while
  torchvision interpolates against zeros, so the input is zero-padded by one pixel explicitly (``Pad``) and the
  op's own padding is one less: the two then agree everywhere. Only OpenVINO reads this form; it is the 'op'
  export with each ``DeformConv`` rewritten (:func:`openvino_form`), so fp16 and int8 files convert the same way.
- 'plain': the native implementation written with standard operators (``Gather``, ``Mul``, ``ReduceSum``,
  ``MatMul``; opset 17): any runtime.
"""
import os
import warnings
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..backbone import DLA
from ..factory import create_dla
from ..seg import DLASeg

__all__ = ['EXPORT_TARGETS', 'DEFORM_ONNX', 'RUNTIMES', 'RUNTIME_DEFORM', 'ExportError', 'BackboneLevels',
           'build_export_model', 'deform_form', 'check_runtimes', 'export_onnx', 'export_torchscript',
           'openvino_form', 'check_onnx', 'check_torchscript']

EXPORT_TARGETS = ('classifier', 'backbone', 'seg')
DEFORM_ONNX = ('op', 'openvino', 'plain')
RUNTIMES = ('onnxruntime', 'openvino', 'tensorrt', 'any')
RUNTIME_DEFORM = {'onnxruntime': 'op', 'openvino': 'openvino', 'tensorrt': 'op', 'any': 'plain'}
"""The deformable form each runtime runs natively (OpenVINO: its own op, measured faster than 'plain')."""
OPENVINO_DOMAIN = 'org.openvinotoolkit'
ONNX_OPSET = 17
ONNX_OPSET_DEFORM = 19  # first opset with DeformConv


class ExportError(RuntimeError):
    """Export is impossible for this model/target, or the exported model's outputs disagree with the eager ones."""


class BackboneLevels(nn.Module):
    """A headless DLA whose forward returns the six level outputs (strides 1..32) as a tuple: exportable."""

    def __init__(self, backbone: DLA):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone.forward_intermediates(x, intermediates_only=True))


def build_export_model(variant: str, what: str = 'classifier', num_classes: Optional[int] = None,
                       node_type: str = 'conv', checkpoint_path: Optional[str] = None) -> nn.Module:
    """Build the eval-mode module to export: 'classifier' (DLA), 'backbone' (:class:`BackboneLevels`) or 'seg'."""
    if what not in EXPORT_TARGETS:
        raise ValueError(f'what: unknown export target {what!r}; allowed: {list(EXPORT_TARGETS)}')
    if what == 'classifier':
        model: nn.Module = create_dla(variant, num_classes=1000 if num_classes is None else num_classes,
                                      checkpoint_path=checkpoint_path)
    elif what == 'backbone':
        model = BackboneLevels(create_dla(variant, num_classes=0, checkpoint_path=checkpoint_path))
    else:
        model = DLASeg(variant, num_classes=19 if num_classes is None else num_classes, node_type=node_type,
                       checkpoint_path=checkpoint_path)
    return model.eval()


_DEFORM_REGISTERED = False


def _register_deform_conv_symbolic() -> None:
    """Map ``torchvision::deform_conv2d`` to ONNX DeformConv (same offset layout: (dy, dx) per kernel point)."""
    global _DEFORM_REGISTERED
    if _DEFORM_REGISTERED:
        return
    import torchvision.ops  # noqa: F401  (imported here, not first inside the traced forward)
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args('v', 'v', 'v', 'v', 'v', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 'i', 'b')
    def deform_conv2d(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                      offset_groups, use_mask):
        kh, kw = sh._get_tensor_sizes(weight)[2:]
        inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op('DeformConv', *inputs, dilations_i=[dil_h, dil_w], group_i=groups, kernel_shape_i=[kh, kw],
                    offset_group_i=offset_groups, pads_i=[pad_h, pad_w, pad_h, pad_w], strides_i=[stride_h, stride_w])

    torch.onnx.register_custom_op_symbolic('torchvision::deform_conv2d', deform_conv2d, ONNX_OPSET_DEFORM)
    _DEFORM_REGISTERED = True


def _as_tuple(out: Union[torch.Tensor, Tuple[torch.Tensor, ...], List[torch.Tensor]]) -> Tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def _deform_modules(model: nn.Module) -> List[nn.Module]:
    from ..dcn import ModulatedDeformConv2d

    return [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]


@contextmanager
def _dcn_impl(modules: List[nn.Module], impl: str):
    """Run the deformable convs of ``modules`` with ``impl`` inside the block (same weights, restored after)."""
    saved = [m.impl for m in modules]
    try:
        for m in modules:
            m.impl = impl
        yield
    finally:
        for m, s in zip(modules, saved):
            m.impl = s


def deform_form(runtime: str = 'onnxruntime', deform: Optional[str] = None) -> str:
    """The ONNX form of deformable nodes for ``runtime`` (:data:`RUNTIME_DEFORM`), or ``deform`` when given."""
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime: unknown target runtime {runtime!r}; allowed: {list(RUNTIMES)}')
    if deform is not None and deform not in DEFORM_ONNX:
        raise ValueError(f'deform: unknown ONNX form of deformable convs {deform!r}; allowed: {list(DEFORM_ONNX)}')
    return deform or RUNTIME_DEFORM[runtime]


def check_runtimes(runtime: str) -> List[str]:
    """Where a ``runtime`` export is run to check it here: itself, or onnxruntime for TensorRT, both for 'any'."""
    deform_form(runtime)  # a known runtime
    return {'tensorrt': ['onnxruntime'], 'any': ['onnxruntime', 'openvino']}.get(runtime, [runtime])


def export_onnx(model: nn.Module, path: Union[str, os.PathLike], img_size: Tuple[int, int] = (224, 224),
                dynamic: bool = True, opset: Optional[int] = None, deform: Optional[str] = None,
                runtime: str = 'onnxruntime') -> str:
    """Export ``model`` (eval mode) to ONNX with input ``images`` (N x 3 x H x W) and outputs named by the model's
    ``output_names`` if it has them, else ``out0..``.

    With ``dynamic`` the batch and spatial axes are dynamic; ``img_size`` is only the tracing size. ``runtime``
    ('onnxruntime', 'openvino', 'tensorrt', 'any') picks the form of deformable nodes that runtime runs natively
    (:data:`RUNTIME_DEFORM`); ``deform`` ('op', 'openvino', 'plain') overrides it.

    Raises:
        ExportError: the exporter cannot express an operator of the model (the message names it).
    """
    form = deform_form(runtime, deform)
    model.eval()
    dcns = _deform_modules(model)
    op_form = bool(dcns) and form != 'plain'
    opset = opset or (ONNX_OPSET_DEFORM if op_form else ONNX_OPSET)
    if op_form and opset < ONNX_OPSET_DEFORM:
        raise ExportError(f'opset: deformable nodes need ONNX DeformConv (opset >= {ONNX_OPSET_DEFORM}), '
                          f"got {opset}; deform='plain' exports them with standard operators")
    if op_form:
        _register_deform_conv_symbolic()
    x = torch.randn(2, 3, *img_size)
    with torch.no_grad():
        outs = model(x)
    names, axes = _output_axes(outs, dynamic, getattr(model, 'output_names', None))
    try:
        with warnings.catch_warnings(), _dcn_impl(dcns, 'torchvision' if op_form else 'native'):
            warnings.simplefilter('ignore')
            torch.onnx.export(model, (x,), os.fspath(path), input_names=['images'], output_names=names,
                              opset_version=opset, dynamic_axes=axes or None, dynamo=False, do_constant_folding=True)
    except Exception as e:
        what = 'torchvision::deform_conv2d (deformable DLA-Up nodes) ' if op_form else ''
        raise ExportError(f'ONNX export failed for {type(model).__name__} {what}at opset {opset}: '
                          f'{type(e).__name__}: {e}') from e
    if op_form and form == 'openvino':
        openvino_form(path, path)
    return os.fspath(path)


def openvino_form(src: Union[str, os.PathLike], dst: Union[str, os.PathLike]) -> str:
    """Rewrite every ONNX ``DeformConv`` of ``src`` (fp32, fp16 or int8 QDQ) into OpenVINO's form; writes ``dst``.

    ``DeformConv(X, W, offset, B, mask)`` becomes ``Pad(X, 1)`` -> ``org.openvinotoolkit::DeformableConv2D(.,
    offset, W, mask)`` with pads one less -> ``+ B`` (module doc: the explicit pad makes OpenVINO's border rule
    torchvision's).

    Raises:
        ExportError: a DeformConv with a padding below 1 (no such node in DLA).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(os.fspath(src))
    graph = model.graph
    nodes, rewritten = [], False
    for node in graph.node:
        if node.op_type != 'DeformConv' or node.domain not in ('', 'ai.onnx'):
            nodes.append(node)
            continue
        att = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(att.get('pads', [0, 0, 0, 0]))
        if min(pads) < 1:
            raise ExportError(f"deform: the 'openvino' form needs padding >= 1 on each side, got {pads}")
        ins = list(node.input) + [''] * (5 - len(node.input))
        name, out = node.name or node.output[0], node.output[0]
        nodes.append(helper.make_node('Pad', [ins[0], '_ov_pad1'], [f'{name}/padded'], name=f'{name}/Pad'))
        conv_out = f'{name}/nobias' if ins[3] else out
        nodes.append(helper.make_node(
            'DeformableConv2D', [f'{name}/padded', ins[2], ins[1]] + ([ins[4]] if ins[4] else []), [conv_out],
            name=name, domain=OPENVINO_DOMAIN, strides=att.get('strides', [1, 1]), pads=[p - 1 for p in pads],
            dilations=att.get('dilations', [1, 1]), group=att.get('group', 1),
            deformable_groups=att.get('offset_group', 1)))
        if ins[3]:
            nodes.append(helper.make_node('Reshape', [ins[3], '_ov_bias_shape'], [f'{name}/bias'],
                                          name=f'{name}/BiasShape'))
            nodes.append(helper.make_node('Add', [conv_out, f'{name}/bias'], [out], name=f'{name}/Bias'))
        rewritten = True
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), '_ov_pad1'),
            numpy_helper.from_array(np.array([1, -1, 1, 1], np.int64), '_ov_bias_shape')])
        model.opset_import.append(helper.make_opsetid(OPENVINO_DOMAIN, 1))
    onnx.save(model, os.fspath(dst))
    return os.fspath(dst)


def _output_axes(outs: Any, dynamic: bool,
                 names: Optional[List[str]] = None) -> Tuple[List[str], Dict[str, Dict[int, str]]]:
    """Output names (the model's ``output_names``, else ``out0..``) and, with ``dynamic``, the dynamic axes of the
    input and of every output."""
    outs = _as_tuple(outs)
    names = names or [f'out{i}' for i in range(len(outs))]
    if not dynamic:
        return names, {}
    axes: Dict[str, Dict[int, str]] = {'images': {0: 'batch', 2: 'height', 3: 'width'}}
    for i, (n, o) in enumerate(zip(names, outs)):  # maps: batch and spatial; vectors, top-K detections: batch
        axes[n] = {0: 'batch', 2: f'h{i}', 3: f'w{i}'} if o.dim() == 4 else {0: 'batch'}
    return names, axes


def check_onnx(model: nn.Module, path: Union[str, os.PathLike], img_size: Tuple[int, int] = (224, 224),
               batch: int = 2, atol: float = 1e-4, rtol: float = 1e-3, runtime: str = 'onnxruntime') -> float:
    """Run the ONNX file in ``runtime`` (CPU) and compare with ``model``; returns the max abs difference.

    ``runtime`` 'onnxruntime' or 'openvino' (:func:`~dla_plugins.deploy.runtimes.load_onnx`); a 'tensorrt' export
    (the 'op' form) is checked in onnxruntime and an 'any' export in both (TensorRT itself needs a GPU).

    Raises:
        ExportError: the runtime cannot run the graph, or outputs differ by more than ``atol + rtol * |ref|``.
    """
    from .runtimes import load_onnx

    check_in = check_runtimes(runtime)
    x = torch.randn(batch, 3, *img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _as_tuple(model.eval()(x))
    worst = 0.0
    for rt in check_in:
        try:
            got = load_onnx(path, rt)(x.numpy())
        except Exception as e:
            raise ExportError(f'{rt} cannot run {os.fspath(path)!r}: {_one_line(e)}') from e
        worst = max(worst, _compare(ref, [torch.from_numpy(g) for g in got], atol, rtol, rt))
    return worst


def _one_line(e: Exception) -> str:
    """A runtime's (multi-line) error in one line: OpenVINO's summary lines ('-- ...'), else the last line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    summary = [ln[3:] for ln in lines if ln.startswith('-- ')]
    return f"{type(e).__name__}: {'; '.join(summary) or (lines[-1] if lines else '')}"


def _compare(ref, got, atol: float, rtol: float, who: str) -> float:
    if len(ref) != len(got):
        raise ExportError(f'{who}: {len(got)} outputs, expected {len(ref)}')
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        if tuple(r.shape) != tuple(g.shape):
            raise ExportError(f'{who}: output {i} has shape {tuple(g.shape)}, expected {tuple(r.shape)}')
        diff = (r - g).abs()
        worst = max(worst, float(diff.max()))
        if not torch.all(diff <= atol + rtol * r.abs()):
            raise ExportError(f'{who}: output {i} differs from the eager model by up to {float(diff.max()):.3g}')
    return worst


def export_torchscript(model: nn.Module, path: Union[str, os.PathLike]) -> str:
    """Script ``model`` with ``torch.jit.script`` (falling back to tracing at 224x224) and save it."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            scripted: Any = torch.jit.script(model)
        except Exception:
            scripted = torch.jit.trace(model, torch.randn(1, 3, 224, 224), check_trace=False)
        torch.jit.save(scripted, os.fspath(path))
    return os.fspath(path)


def check_torchscript(model: nn.Module, path: Union[str, os.PathLike], img_size: Tuple[int, int] = (224, 224),
                      atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """Load the TorchScript file and compare it with ``model`` on a random batch; returns the max abs difference."""
    x = torch.randn(2, 3, *img_size, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loaded = torch.jit.load(os.fspath(path))
    with torch.no_grad():
        return _compare(_as_tuple(model.eval()(x)), _as_tuple(loaded(x)), atol, rtol, 'TorchScript')
