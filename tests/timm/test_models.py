"""timm's generic model checks (the bodies of timm's tests/test_models.py, written for us) over every DLA we register.

Each test creates models through ``timm.create_model`` after ``import timm_ext``, so it exercises our registration,
cfgs and build path exactly as a timm user would. Inputs are small (32-48 px) to keep the file fast on 2 CPU cores;
timm's pool-size check is made at 48 px, with the cfg's
``pool_size`` scaled from its ``input_size``.
"""
import math

import pytest
import timm
import torch
from timm.layers import set_layer_config
from timm.models._features_fx import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import timm_ext
from dla_plugins import DLA, VARIANTS

NAMES = list(timm_ext.REGISTERED)
FWD_SIZE = 32  # level5 is 1x1: the cheapest input every check still holds for
FEAT_SIZE = 48  # odd level sizes (24, 12, 6, 3, 2): exercises the ceil-mode shortcuts
# The 1024-channel variants (15-50M parameters) take seconds per test on 2 cores: marked slow (they still run in CI).
MODELS = [pytest.param(n, marks=pytest.mark.slow) if VARIANTS[n].channels[-1] >= 1024 else n for n in NAMES]
TRACER_KWARGS = dict(leaf_modules=list(get_notrace_modules()), autowrap_functions=list(get_notrace_functions()))


def _inputs(batch_size: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _fx_model(model: torch.nn.Module, train: bool = False) -> torch.nn.Module:
    """FX-trace ``model`` returning its final output (timm's notrace leaf modules/functions respected)."""
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=TRACER_KWARGS)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
                                    tracer_kwargs=TRACER_KWARGS).train(train)


def test_every_variant_is_checked():
    assert sorted(NAMES) == sorted(timm.list_models('dla*'))
    assert len(NAMES) == 13 and 'dla46_m' in NAMES


@pytest.mark.parametrize('name', MODELS)
def test_model_forward(name):
    model = timm.create_model(name, pretrained=False).eval()
    assert isinstance(model, DLA)
    with torch.no_grad():
        out = model(_inputs(1, FWD_SIZE))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', MODELS)
def test_model_backward(name):
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    num_params = sum(p.numel() for p in model.parameters())
    out = model(_inputs(2, FWD_SIZE))
    out.mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f'no gradient for {n}'
    assert sum(p.grad.numel() for p in model.parameters()) == num_params
    assert out.shape == (2, 42)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', MODELS)
def test_model_default_cfgs(name):
    model = timm.create_model(name, pretrained=False).eval()
    state_dict = model.state_dict()
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    stride = cfg['input_size'][-1] // cfg['pool_size'][-1]  # 224 / 7
    assert stride * cfg['pool_size'][-1] == cfg['input_size'][-1] and cfg['pool_size'][0] == cfg['pool_size'][1]
    pool_size = (math.ceil(FEAT_SIZE / stride),) * 2  # what pool_size becomes at FEAT_SIZE
    x = _inputs(1, FEAT_SIZE)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[-2:] == pool_size and feats.shape[1] == model.num_features
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.head_hidden_size)

        model.reset_classifier(0)
        out = model(x)
        assert out.shape == (1, model.num_features)
        model.reset_classifier(0, '')
        out = model(x)
        assert out.dim() == 4 and out.shape[-2:] == pool_size

        headless = timm.create_model(name, pretrained=False, num_classes=0, global_pool='').eval()
        out = headless(x)
        assert out.dim() == 4 and out.shape[-2:] == pool_size and out.shape[1] == headless.num_features

    assert cfg['num_classes'] == 1000
    for key in (cfg['classifier'], cfg['first_conv']):
        assert f'{key}.weight' in state_dict, f'{key} not in the state_dict'
    assert state_dict[f"{cfg['first_conv']}.weight"].shape[1] == cfg['input_size'][0]
    assert state_dict[f"{cfg['classifier']}.weight"].shape[0] == cfg['num_classes']


@pytest.mark.parametrize('name', MODELS)
def test_model_forward_torchscript(name):
    # timm itself excludes 'dla*' from this test; ours scripts.
    with set_layer_config(scriptable=True):
        model = timm.create_model(name, pretrained=False).eval()
    scripted = torch.jit.script(model)
    x = _inputs(1, FWD_SIZE)
    with torch.no_grad():
        out = scripted(x)
        ref = model(x)
    assert out.shape == (1, 1000)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('name', MODELS)
def test_model_forward_features(name):
    model = timm.create_model(name, pretrained=False, features_only=True).eval()
    channels = model.feature_info.channels()
    reductions = model.feature_info.reduction()
    assert len(channels) == 5 and reductions == [2, 4, 8, 16, 32]  # timm's DLA default: levels 1..5
    with torch.no_grad():
        outs = model(_inputs(1, FEAT_SIZE))
    assert len(outs) == len(channels)
    for c, r, o in zip(channels, reductions, outs):
        assert o.shape == (1, c, math.ceil(FEAT_SIZE / r), math.ceil(FEAT_SIZE / r))
        assert torch.isfinite(o).all()


@pytest.mark.parametrize('name', MODELS)
def test_model_forward_intermediates(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = _inputs(1, FWD_SIZE)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
        assert len(intermediates) == len(model.feature_info)
        for info, o in zip(model.feature_info, intermediates):
            assert o.shape[1] == info['num_chs']
            assert o.shape[-1] == math.ceil(FWD_SIZE / info['reduction'])
        only = model.forward_intermediates(x, indices=[1, 3], intermediates_only=True, stop_early=True)
        torch.testing.assert_close(only, [intermediates[1], intermediates[3]], rtol=0, atol=0)
        take = model.prune_intermediate_layers([1, 3])
        assert take == [1, 3] and model.num_features == model.feature_info[3]['num_chs']
        torch.testing.assert_close(model.forward_intermediates(x, indices=take, intermediates_only=True),
                                   [intermediates[1], intermediates[3]], rtol=0, atol=0)


@pytest.mark.parametrize('name', MODELS)
def test_model_forward_fx(name):
    model = timm.create_model(name, pretrained=False).eval()
    x = _inputs(1, FWD_SIZE)
    with torch.no_grad():
        ref = model(x)
        fx = _fx_model(model)
        out = torch.cat(tuple(fx(x).values()))
    assert torch.equal(out, ref)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', MODELS)
def test_model_backward_fx(name):
    model = timm.create_model(name, pretrained=False, num_classes=42).train()
    num_params = sum(p.numel() for p in model.parameters())
    fx = _fx_model(model, train=True)
    out = torch.cat(tuple(fx(_inputs(2, FWD_SIZE)).values()))
    out.mean().backward()
    for n, p in fx.named_parameters():
        assert p.grad is not None, f'no gradient for {n}'
    assert sum(p.grad.numel() for p in fx.parameters()) == num_params
    assert out.shape == (2, 42)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', ['dla34', 'dla46_c', 'dla60_res2next'])
def test_model_forward_fx_torchscript(name):
    with set_layer_config(scriptable=True):
        model = timm.create_model(name, pretrained=False).eval()
    x = _inputs(1, FWD_SIZE)
    scripted = torch.jit.script(_fx_model(model))
    with torch.no_grad():
        out = torch.cat(tuple(scripted(x).values()))
        torch.testing.assert_close(out, model(x))
