"""Property tests over small variants, input sizes, output strides and norms: shapes as promised, or the documented
ValueError; finite outputs in fp32 and bf16."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dla_plugins import DLASeg, create_dla
from dla_plugins.backbone import MIN_INPUT_SIZE

SMALL = ['dla46_c', 'dla46x_c', 'dla60x_c']
_SETTINGS = dict(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _expected(size: int, reduction: int) -> int:
    # stride-2 convs (padding 1) and ceil-mode pools both give ceil(size / 2) per halving
    out = size
    r = 1
    while r < reduction:
        out = (out + 1) // 2
        r *= 2
    return out


@settings(**_SETTINGS)
@given(variant=st.sampled_from(SMALL), h=st.integers(MIN_INPUT_SIZE, 77), w=st.integers(MIN_INPUT_SIZE, 77),
       output_stride=st.sampled_from([8, 16, 32]), norm=st.sampled_from(['bn', 'gn', 'frozenbn']))
def test_levels_shapes_and_finite(variant, h, w, output_stride, norm):
    model = create_dla(variant, num_classes=7, output_stride=output_stride, norm_layer=norm).eval()
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        levels = model.forward_intermediates(x, intermediates_only=True)
        logits = model(x)
    assert logits.shape == (1, 7) and torch.isfinite(logits).all()
    for feat, info in zip(levels, model.feature_info):
        r = info['reduction']
        assert r == min(2 ** int(info['module'][-1]), output_stride)
        assert feat.shape == (1, info['num_chs'], _expected(h, r), _expected(w, r)), (info, feat.shape)
        assert torch.isfinite(feat).all()


@settings(**_SETTINGS)
@given(variant=st.sampled_from(SMALL), h=st.integers(MIN_INPUT_SIZE, 70), w=st.integers(MIN_INPUT_SIZE, 70))
def test_bf16_autocast_finite(variant, h, w):
    model = create_dla(variant).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, 1000) and torch.isfinite(out.float()).all()


@settings(**_SETTINGS)
@given(h=st.integers(1, MIN_INPUT_SIZE - 1), w=st.integers(1, 80), swap=st.booleans())
def test_too_small_inputs_raise(h, w, swap):
    if swap:
        h, w = w, h
    model = create_dla('dla46_c')
    with pytest.raises(ValueError, match=rf'x: images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} .*got '
                                         rf'{h}x{w}'):
        model(torch.randn(1, 3, h, w))


@settings(**dict(_SETTINGS, max_examples=4))
@given(h=st.integers(MIN_INPUT_SIZE, 70), w=st.integers(MIN_INPUT_SIZE, 70), down_ratio=st.sampled_from([2, 4]))
def test_seg_output_matches_input_size(h, w, down_ratio):
    seg = DLASeg('dla46_c', num_classes=3, down_ratio=down_ratio).eval()
    with torch.no_grad():
        out = seg(torch.randn(1, 3, h, w))
    assert out.shape == (1, 3, h, w) and torch.isfinite(out).all()


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match='output_stride: must be 32, 16 or 8, got 4'):
        create_dla('dla46_c', output_stride=4)
    with pytest.raises(ValueError, match="norm_layer: unknown norm 'ln'"):
        create_dla('dla46_c', norm_layer='ln')
    with pytest.raises(ValueError, match='x: model built with in_chans=3, got 1 input channels'):
        create_dla('dla46_c')(torch.randn(1, 1, 32, 32))
