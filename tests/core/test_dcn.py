"""``deform_conv2d``'s native implementation against ``torchvision.ops.deform_conv2d``; DCN modules and models."""
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

import dla_plugins as dp
import dla_plugins.dcn as dcn
from dla_plugins.dcn import ModulatedDeformConv2d, deform_conv2d, resolve_dcn_impl

NAMES = ('out', 'input', 'offset', 'weight', 'bias', 'mask')


def _inputs(n, cin, cout, h, w, k, stride, pad, dil, og, groups, offset_scale=3.0, seed=0, dtype=torch.float32,
            use_mask=True, use_bias=True):
    g = torch.Generator().manual_seed(seed)
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    t = dict(input=torch.randn(n, cin, h, w, generator=g),
             offset=torch.randn(n, 2 * og * k * k, ho, wo, generator=g) * offset_scale,
             weight=torch.randn(cout, cin // groups, k, k, generator=g) * 0.2,
             bias=torch.randn(cout, generator=g) if use_bias else None,
             mask=torch.rand(n, og * k * k, ho, wo, generator=g) if use_mask else None)
    return {k: (v.to(dtype) if v is not None else None) for k, v in t.items()}


def _run(fn, t, stride, pad, dil, dtype=None, grad_seed=1, memory_format=torch.contiguous_format):
    """Output and gradients (input, offset, weight, bias, mask) of ``fn`` for the upstream gradient of one seed."""
    leaves = {k: (v.detach().to(dtype or v.dtype, copy=True).requires_grad_() if v is not None else None)
              for k, v in t.items()}
    x = leaves['input'].contiguous(memory_format=memory_format)
    out = fn(x, leaves['offset'], leaves['weight'], leaves['bias'], stride, pad, dil, leaves['mask'])
    go = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(out.dtype)
    out.backward(go)
    return [out] + [leaves[k].grad if leaves[k] is not None else None for k in NAMES[1:]]


def _tv(x, offset, weight, bias, stride, pad, dil, mask):
    return torchvision.ops.deform_conv2d(x, offset, weight, bias, stride, pad, dil, mask)


def _native(x, offset, weight, bias, stride, pad, dil, mask):
    return deform_conv2d(x, offset, weight, bias, stride, pad, dil, mask, impl='native')


def _assert_close(got, ref, tol, what=''):
    for name, g, r in zip(NAMES, got, ref):
        if r is None:
            assert g is None, name
            continue
        err = float((g.detach().float() - r.detach().float()).abs().max())
        scale = float(r.detach().float().abs().max().clamp_min(1e-6))
        assert err <= tol * scale, f'{what} {name}: max |diff| {err:.3g} > {tol} x {scale:.3g}'


@pytest.fixture(params=[True, False], ids=['transform_first', 'sample_first'])
def order(request, monkeypatch):
    """Force each of the native implementation's two orders (both must equal torchvision)."""
    monkeypatch.setattr(dcn, '_transform_first', lambda *a: request.param)
    return request.param


CASES = [  # n, cin, cout, h, w, k, stride, pad, dil, offset groups, groups
    (2, 8, 6, 7, 9, 3, 1, 1, 1, 1, 1),
    (1, 8, 4, 7, 5, 3, 2, 0, 2, 2, 2),
    (3, 6, 6, 5, 6, 1, 1, 0, 1, 3, 3),
    (2, 4, 8, 1, 1, 3, 1, 1, 1, 1, 1),
    (2, 12, 6, 6, 7, 2, 1, 1, 1, 4, 2),
    (1, 4, 4, 11, 3, 3, 3, 2, 1, 1, 4),
]


@pytest.mark.parametrize('case', CASES, ids=[str(c) for c in CASES])
def test_native_equals_torchvision_fp32(case, order):
    t = _inputs(*case)
    s, p, d = case[6:9]
    _assert_close(_run(_native, t, s, p, d), _run(_tv, t, s, p, d), 1e-4, str(case))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3), groups=st.sampled_from([1, 2]),
       og=st.sampled_from([1, 2]), h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 3),
       stride=st.integers(1, 3), pad=st.integers(0, 2), dil=st.integers(1, 2),
       scale=st.sampled_from([0.5, 3.0, 20.0]), use_mask=st.booleans(), use_bias=st.booleans(),
       transform_first=st.booleans(), seed=st.integers(0, 1000))
def test_native_equals_torchvision_property(n, cin_g, cout_g, groups, og, h, w, k, stride, pad, dil, scale, use_mask,
                                            use_bias, transform_first, seed):
    cin = cin_g * groups * og
    if h + 2 * pad < dil * (k - 1) + 1 or w + 2 * pad < dil * (k - 1) + 1:
        return  # empty output
    t = _inputs(n, cin, cout_g * groups, h, w, k, stride, pad, dil, og, groups, scale, seed, use_mask=use_mask,
                use_bias=use_bias)
    original = dcn._transform_first
    dcn._transform_first = lambda *a: transform_first
    try:
        got = _run(_native, t, stride, pad, dil)
    finally:
        dcn._transform_first = original
    _assert_close(got, _run(_tv, t, stride, pad, dil), 1e-4)


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 1.5e-2), (torch.float16, 2e-3)], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('size', [(9, 11), (3, 300)], ids=['small', 'wide'])
def test_reduced_precision_close_to_fp32(dtype, tol, size, order):
    """Same (rounded) inputs: bf16/fp16 outputs and all gradients within ``tol`` x max |fp32| of torchvision fp32.

    On the 300-pixel-wide map, sampling coordinates in bf16 would be off by up to a pixel (8-bit mantissa): they are
    kept in fp32, so the bound holds there too.
    """
    t = _inputs(2, 16, 8, *size, 3, 1, 1, 1, 1, 1, offset_scale=3.0)
    t['offset'] = t['offset'] + 0.37  # fractional positions far from 0 on the wide map
    t = {k: v.to(dtype) for k, v in t.items()}
    got = _run(_native, t, 1, 1, 1)
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[1:])
    _assert_close(got, _run(_tv, t, 1, 1, 1, dtype=torch.float32), tol, str(dtype))


def test_channels_last(order):
    t = _inputs(2, 8, 6, 7, 9, 3, 1, 1, 1, 2, 1)
    got = _run(_native, t, 1, 1, 1, memory_format=torch.channels_last)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    _assert_close(got, _run(_tv, t, 1, 1, 1), 1e-4)
    assert _run(_native, t, 1, 1, 1)[0].is_contiguous()


def test_compile_fullgraph_no_graph_breaks():
    t = _inputs(2, 8, 6, 7, 9, 3, 1, 1, 1, 2, 2)
    compiled = torch.compile(_native, fullgraph=True, backend='aot_eager')  # fullgraph: a graph break raises
    _assert_close(_run(compiled, t, 1, 1, 1), _run(_tv, t, 1, 1, 1), 1e-4)


def test_module_state_dict_independent_of_impl():
    torch.manual_seed(0)
    mods = {impl: ModulatedDeformConv2d(8, 4, 3, 1, 1, 1, True, impl=impl) for impl in dp.dcn.DCN_IMPLS}
    ref = mods['torchvision']
    with torch.no_grad():
        ref.offset_mask.weight.normal_(0, 0.1)
        ref.offset_mask.bias.normal_(0, 0.5)
        ref.bias.normal_()
    x = torch.randn(2, 8, 10, 7)
    for impl, m in mods.items():
        assert list(m.state_dict()) == ['weight', 'bias', 'offset_mask.weight', 'offset_mask.bias']
        m.load_state_dict(ref.state_dict(), strict=True)
        torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-4, msg=impl)
    seg = {impl: dp.DLASeg('dla46_c', num_classes=3, node_type='dcn', dcn_impl=impl) for impl in ('native', 'auto')}
    assert {k: v.shape for k, v in seg['native'].state_dict().items()} == \
        {k: v.shape for k, v in seg['auto'].state_dict().items()}
    assert 'impl' in repr(mods['native']) and all(m.impl == 'native' for m in seg['native'].modules()
                                                   if isinstance(m, ModulatedDeformConv2d))


def test_positional_constructor_backward_compatible():
    m = ModulatedDeformConv2d(6, 4, 3, 2, 1, 1, True)
    assert m.impl == 'auto' and m.bias is not None and m(torch.randn(1, 6, 9, 9)).shape == (1, 4, 5, 5)


def test_bad_impl_and_shapes():
    allowed = r"allowed: \['auto', 'native', 'torchvision'\]"
    t = _inputs(1, 4, 4, 5, 5, 3, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="impl: unknown deformable conv implementation 'cuda'; " + allowed):
        deform_conv2d(t['input'], t['offset'], t['weight'], padding=1, impl='cuda')
    with pytest.raises(ValueError, match="impl: unknown deformable conv implementation 'mmcv'; " + allowed):
        ModulatedDeformConv2d(4, 4, impl='mmcv')
    with pytest.raises(ValueError, match="dcn_impl: unknown deformable conv implementation 'fast'; " + allowed):
        dp.DLASeg('dla46_c', node_type='dcn', dcn_impl='fast')
    with pytest.raises(ValueError, match=r'offset: expected shape \(1, 2\*offset_groups\*3\*3, 5, 5\) with '
                                         r'offset_groups dividing 4 input channels, got \(1, 18, 4, 5\)'):
        deform_conv2d(t['input'], t['offset'][:, :, :4], t['weight'], padding=1, impl='native')
    with pytest.raises(ValueError, match=r'mask: expected shape \(1, 9, 5, 5\), got \(1, 3, 5, 5\)'):
        deform_conv2d(t['input'], t['offset'], t['weight'], padding=1, mask=t['mask'][:, :3], impl='native')


def test_auto_rule():
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert resolve_dcn_impl('auto', cpu, torch.float32) == 'native'
    assert resolve_dcn_impl('auto', cpu, torch.bfloat16) == 'native'
    assert resolve_dcn_impl('auto', cuda, torch.float32) == 'torchvision'
    assert resolve_dcn_impl('auto', cuda, torch.bfloat16) == 'native'
    assert resolve_dcn_impl('torchvision', cpu, torch.bfloat16) == 'torchvision'


def _randomize_offsets(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                m.offset_mask.weight.normal_(0, 0.05)
                m.offset_mask.bias.normal_(0, 0.5)
    return model


def test_dlaseg_dcn_bf16_autocast_and_pure_bf16():
    """DCN DLASeg under CPU bf16 autocast (torchvision's op has no bf16 kernel there) and in pure bf16: finite."""
    torch.manual_seed(0)
    model = _randomize_offsets(dp.DLASeg('dla34', num_classes=3, node_type='dcn')).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = model(x)
    assert amp.dtype == torch.bfloat16 and torch.isfinite(amp).all()
    assert float((amp.float() - ref).abs().max()) <= 0.1 * float(ref.abs().max())
    model = model.to(torch.bfloat16).train()
    out = model(x.to(torch.bfloat16))
    out.float().square().mean().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    grads = [m.offset_mask.weight.grad for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert grads and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
