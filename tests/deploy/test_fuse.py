"""optimize_for_inference: outputs equal the original eval model; BN is folded; eval-only."""
import pytest
import torch
import torch.nn as nn

from dla_plugins import DLA, DLASeg, create_dla
from dla_plugins.deploy.fuse import FusedConv, InferenceModel, fold_bn, optimize_for_inference
from tests.helpers import randomize_bn, timm_reference


def _tiny(variant):
    if variant == 'residual_root':  # dla102-style residual aggregation nodes at dla46_c's width
        return DLA((1, 1, 1, 2, 2, 1), (16, 32, 64, 64, 128, 256), 'bottleneck', cardinality=32, base_width=4,
                   residual_root=True)
    return create_dla(variant)


@pytest.mark.parametrize('variant', ['dla34', 'dla46_c', 'dla60_res2next', 'residual_root'])
def test_fused_matches_original(variant):
    model = randomize_bn(_tiny(variant)).eval()
    fused = optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, FusedConv) for m in fused.modules())
    x = torch.randn(1, 3, 48, 80)
    with torch.inference_mode():
        ref = model(x)
        got = fused(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # the fallback path (plain F.conv2d, used by autograd-enabled calls, TorchScript, export) agrees as well
    with torch.no_grad():
        torch.testing.assert_close(fused(x.requires_grad_(False)), ref, atol=1e-4, rtol=1e-4)
    for m in fused.modules():
        if isinstance(m, FusedConv):
            m.use_mkldnn = False
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)


def test_fused_matches_timm_and_contiguous_format():
    theirs = randomize_bn(timm_reference('dla34')).eval()
    ours = create_dla('dla34')
    ours.load_state_dict(theirs.state_dict())
    fused = optimize_for_inference(ours, memory_format='contiguous')
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), theirs(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('flavor', ['paper', 'centernet'])
@pytest.mark.parametrize('node_type', ['conv', 'dcn'])
def test_fused_dlaseg(node_type, flavor):
    seg = randomize_bn(DLASeg('dla46_c', num_classes=3, node_type=node_type, flavor=flavor)).eval()
    with torch.no_grad():
        for m in seg.modules():  # non-zero offsets, so the deformable path is really exercised
            if hasattr(m, 'offset_mask'):
                m.offset_mask.weight.normal_(0, 0.05)
                m.offset_mask.bias.normal_(0, 0.5)
    fused = optimize_for_inference(seg)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), seg(x), atol=1e-4, rtol=1e-4)


def test_frozen_bn_and_groupnorm():
    frozen = randomize_bn(create_dla('dla46_c'))
    from dla_plugins import FrozenBatchNorm2d

    frozen = FrozenBatchNorm2d.convert(frozen).eval()
    gn = create_dla('dla46_c', norm_layer='gn').eval()
    x = torch.randn(1, 3, 64, 64)
    for model in (frozen, gn):
        fused = optimize_for_inference(model)
        with torch.inference_mode():
            torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, nn.GroupNorm) for m in optimize_for_inference(gn).modules())  # left unfused


def test_fold_bn_exact():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(6)))[0].eval()
    w, b = fold_bn(conv.weight, None, bn)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='bn: can only fold'):
        fold_bn(conv.weight, None, nn.GroupNorm(2, 6))


def test_eval_only_and_bad_format():
    fused = optimize_for_inference(create_dla('dla46_c'))
    assert isinstance(fused, InferenceModel) and not fused.training
    with pytest.raises(RuntimeError, match='eval-only'):
        fused.train()
    with pytest.raises(ValueError, match="memory_format: must be one of"):
        optimize_for_inference(create_dla('dla46_c'), memory_format='nhwc')


def test_original_untouched():
    model = create_dla('dla46_c').train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fused_path_runs_the_private_onednn_op():
    """The fused CPU path stands on torch's private ``mkldnn._convolution_pointwise``: if a torch release drops it,
    this fails (instead of the fused path silently falling back to slower plain ops)."""
    from dla_plugins.deploy.fuse import _mkldnn_ops_available

    assert torch.backends.mkldnn.is_available()
    assert hasattr(torch.ops.mkldnn, '_convolution_pointwise') and _mkldnn_ops_available()
    fused = optimize_for_inference(create_dla('dla46_c').eval())
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fused(torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    names = {e.key for e in prof.key_averages()}
    assert 'mkldnn::_convolution_pointwise' in names, sorted(names)
