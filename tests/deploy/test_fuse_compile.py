"""torch.compile(fullgraph=True) on tiny cases: no graph breaks (fullgraph raises on one) and equal outputs.

All variants and DLASeg are checked by benchmarks/bench_compile_all.py (compiling is slow on CPU)."""
import pytest
import torch

from dla_plugins import DLASeg, create_dla
from dla_plugins.deploy.fuse import optimize_for_inference


@pytest.mark.slow
def test_compile_fullgraph_classifier_and_fused():
    torch.compiler.reset()
    model = create_dla('dla46_c', num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(torch.compile(model, fullgraph=True, backend='eager')(x), ref)
        fused = optimize_for_inference(model)
        torch.testing.assert_close(torch.compile(fused, fullgraph=True, backend='eager')(x), ref, atol=1e-4,
                                   rtol=1e-4)


@pytest.mark.slow
def test_compile_fullgraph_seg_aot():
    torch.compiler.reset()
    seg = DLASeg('dla46_c', num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = torch.compile(seg, fullgraph=True, backend='aot_eager')(x)
        torch.testing.assert_close(out, seg(x), atol=1e-4, rtol=1e-4)
