"""The timm adapter: registration, cfg parity with timm's built-in DLA, strict pretrained loading, timm kwargs."""
import ast
import copy
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from timm.models._builder import _resolve_pretrained_source
from timm.optim import create_optimizer_v2
from torchvision.transforms import functional as TF

import timm_ext
from dla_plugins import DLA, VARIANTS, CheckpointError, create_dla, load_checkpoint
from tests.golden import fixture_names, load_manifest, load_outputs, make_input, tolerance, write_checkpoint
from tests.helpers import ROOT, randomize_bn, subprocess_env, timm_reference  # noqa: E402

ENV = subprocess_env()


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope='module')
def builtin():
    """timm's own DLA registry entries, read in a fresh interpreter that never imports timm_ext."""
    proc = _run_python("""
        import json, timm
        from timm.models import get_pretrained_cfg
        names = timm.list_models('dla*')
        tagged = timm.list_models('dla*', pretrained=True)
        cfgs = {n: get_pretrained_cfg(n).to_dict() for n in tagged + names}
        print(json.dumps(dict(names=names, pretrained=timm.list_pretrained('dla*'), cfgs=cfgs)))
    """)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _json(obj):
    return json.loads(json.dumps(obj))


def _x(n=1, size=64, chans=3, seed=0):
    return torch.randn(n, chans, size, size, generator=torch.Generator().manual_seed(seed))




# --- registration ---------------------------------------------------------------------------------------------------
def test_import_without_timm_names_the_extra():
    proc = _run_python("""
        import sys
        sys.modules['timm'] = None  # timm absent: 'import timm' raises ImportError
        import timm_ext
    """)
    assert proc.returncode != 0
    assert "MissingExtraError: timm_ext needs timm, which is not installed: pip install 'dla-plugins[timm]'" \
        in proc.stderr


def test_registration_is_silent_and_replaces_builtins(builtin):
    proc = _run_python("""
        import warnings
        import timm
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import timm_ext
        print(len(caught))
        print(','.join(timm_ext.REPLACED))
    """)
    assert proc.returncode == 0, proc.stderr
    n_warnings, replaced = proc.stdout.split()
    assert n_warnings == '0'
    assert sorted(replaced.split(',')) == sorted(builtin['names'])


def test_registry_lists_ours(builtin):
    assert sorted(timm.list_models('dla*')) == sorted(builtin['names'] + ['dla46_m'])
    assert timm.list_pretrained('dla*') == builtin['pretrained']
    assert timm.list_models(module='dla') == timm.list_models('dla*')
    assert not timm.models.is_model_pretrained('dla46_m')
    with pytest.raises(RuntimeError, match='No pretrained weights exist for dla46_m'):
        timm.create_model('dla46_m', pretrained=True)
    assert timm_ext.REGISTERED == list(VARIANTS)
    for name in timm_ext.REGISTERED:
        model = timm.create_model(name, num_classes=0)
        assert isinstance(model, DLA) and model.variant == name
        assert timm.models.model_entrypoint(name).__module__ == 'timm_ext.dla'


def _entrypoint_defs():
    """The ``@_register`` function definitions of timm_ext/dla.py, read from its source (not from the registry)."""
    import timm_ext.dla

    tree = ast.parse(Path(timm_ext.dla.__file__).read_text())
    return [node for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id == '_register' for d in node.decorator_list)]


def test_one_explicit_entrypoint_per_variant():
    """timm_ext/dla.py writes one ``def <variant>(pretrained=False, **kwargs)`` per row of the variant table, in table
    order, each a docstring naming the paper variant and one call of the shared build function; timm's registry holds
    exactly these functions, and ``timm.create_model(name)`` builds the variant (on the meta device: no memory)."""
    import timm_ext.dla

    defs = _entrypoint_defs()
    assert [node.name for node in defs] == list(VARIANTS) == timm_ext.REGISTERED
    assert sorted(timm.list_models(module='dla')) == sorted(VARIANTS)
    for node in defs:
        name, variant, fn = node.name, VARIANTS[node.name], getattr(timm_ext.dla, node.name)
        assert timm.models.model_entrypoint(name) is fn and fn.__code__.co_name == name  # a def, not a renamed closure
        doc, body = ast.get_docstring(node), node.body[1:]
        assert '\n' not in doc and doc.startswith(name), doc
        assert f"the paper's {variant.paper_name}:" in doc if variant.paper_name else 'no paper name' in doc, doc
        assert len(body) == 1 and ast.unparse(body[0]) == f"return create_timm_dla('{name}', pretrained, **kwargs)"
        with torch.device('meta'):
            model = timm.create_model(name)
            reference = timm_reference(name) if variant.in_timm else None
        assert isinstance(model, DLA) and model.variant == name and model.pretrained_cfg['architecture'] == name
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert all(v.is_meta for v in model.state_dict().values())
        if reference is not None:  # the same network as timm's own class of that name
            assert shapes == {k: v.shape for k, v in reference.state_dict().items()}, name
        else:  # dla46_m: the paper's parameter count (Table 5: 4.5M)
            assert sum(p.numel() for p in model.parameters()) == pytest.approx(variant.paper_params, rel=0.01)


def test_pretrained_cfgs_match_timm(builtin):
    assert set(builtin['cfgs']) >= set(builtin['pretrained'])
    for name, expected in builtin['cfgs'].items():
        ours = timm.models.get_pretrained_cfg(name).to_dict()
        assert _json(ours) == expected, name
    for name in builtin['pretrained']:  # 'dla60x.in1k' -> hub id 'timm/dla60x.in1k', as timm would fetch
        cfg = timm.create_model(name.split('.')[0], num_classes=0).pretrained_cfg
        assert _resolve_pretrained_source(cfg) == ('hf-hub', f'timm/{name}')
        assert cfg['first_conv'] == 'base_layer.0' and cfg['classifier'] == 'fc'
    extra = timm.models.get_pretrained_cfg('dla46_m')
    assert not extra.has_weights and extra.hf_hub_id is None and extra.input_size == (3, 224, 224)


def test_data_config_and_transform():
    model = timm.create_model('dla34', num_classes=0)
    cfg = resolve_model_data_config(model)
    assert cfg == dict(input_size=(3, 224, 224), interpolation='bilinear', mean=(0.485, 0.456, 0.406),
                       std=(0.229, 0.224, 0.225), crop_pct=0.875, crop_mode='center')
    transform = create_transform(**cfg)
    g = torch.Generator().manual_seed(0)
    img = Image.fromarray(torch.randint(0, 256, (300, 400, 3), generator=g, dtype=torch.uint8).numpy())
    out = transform(img)
    ref = TF.resize(img, math.floor(224 / 0.875), interpolation=TF.InterpolationMode.BILINEAR)
    ref = TF.normalize(TF.to_tensor(TF.center_crop(ref, 224)), cfg['mean'], cfg['std'])
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out, ref)


# --- pretrained loading -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['dla34', 'dla46x_c', pytest.param('dla60_res2next', marks=pytest.mark.slow)])
def test_pretrained_loads_timm_weights_strictly(name, tmp_path):
    """Weights of timm's own DLA (what the hub holds) load into ours strictly and give the same outputs."""
    ref = randomize_bn(timm_reference(name)).eval()  # timm's built-in class, whatever the registry holds
    assert type(ref) is timm.models.dla.DLA
    path = tmp_path / f'{name}.pth'
    torch.save(ref.state_dict(), path)
    x = _x()
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))

    # timm's own pretrained test: in_chans=1 (first conv summed over RGB, as timm adapts it) and a new head
    small = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), in_chans=1,
                              num_classes=5).eval()
    torch.testing.assert_close(small.base_layer[0].weight, ref.base_layer[0].weight.sum(1, keepdim=True))
    assert small.fc.weight.shape[0] == 5
    with torch.no_grad():
        assert small(_x(chans=1)).shape == (1, 5)
    headless = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), num_classes=0)
    torch.testing.assert_close(headless.level5.root.conv.weight, ref.level5.root.conv.weight)

    feats = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              features_only=True).eval()
    with torch.no_grad():
        levels = model.forward_intermediates(x, indices=[1, 2, 3, 4, 5], intermediates_only=True)
        torch.testing.assert_close(feats(x), levels)


@pytest.mark.parametrize('num_classes', [1000, 10, 0])
def test_pretrained_loading_is_strict(tmp_path, num_classes):
    """Whatever ``num_classes`` (timm itself loads non-strictly when it differs from the cfg), a backbone tensor left
    unloaded or an extra one is an error listing it."""
    ref = timm.create_model('dla46_c')
    sd = ref.state_dict()
    path = tmp_path / 'extra.pth'
    torch.save(dict(sd, **{'level5.extra.weight': torch.zeros(1)}), path)
    with pytest.raises(CheckpointError, match=r'1 unexpected key\(s\):\n    level5.extra.weight'):
        timm.create_model('dla46_c', pretrained=True, num_classes=num_classes,
                          pretrained_cfg_overlay=dict(file=str(path)))
    sd.pop('level2.root.bn.weight')
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r'1 missing key\(s\):\n    level2.root.bn.weight'):
        timm.create_model('dla46_c', pretrained=True, num_classes=num_classes,
                          pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize('name', ['dla34', 'dla102x'])
def test_ucbdrive_checkpoint_loads_through_filter(name, tmp_path):
    """ucbdrive's own classifier file (golden fixture from its dla.py) through timm: logits equal the reference's."""
    manifest = load_manifest(f'ucbdrive_{name}')
    path = write_checkpoint(manifest, str(tmp_path / 'ucb.pth'))
    assert any('.project.' in k and k.count('tree') == 0 for k in manifest_keys(manifest))  # level-root projects
    x, ref = make_input(manifest), load_outputs(f'ucbdrive_{name}')['logits']
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path)).eval()
    with torch.no_grad():
        assert (model(x) - ref).abs().max() <= tolerance(ref)[0]

    fresh = timm.create_model(name).eval()
    with pytest.raises(RuntimeError, match='Unexpected key.*project'):
        timm.models.load_checkpoint(fresh, path)  # plain strict load refuses the unused projects ...
    timm.models.load_checkpoint(fresh, path, filter_fn=timm_ext.checkpoint_filter_fn)  # ... the filter converts
    with torch.no_grad():
        assert (fresh(x) - ref).abs().max() <= tolerance(ref)[0]


def manifest_keys(manifest: dict) -> list:
    return [k for k, _, _ in manifest['tensors']]


def test_timm_load_checkpoint_roundtrip(tmp_path):
    src = randomize_bn(timm.create_model('dla46_c', num_classes=7), seed=2).eval()
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': src.state_dict(), 'epoch': 3}, path)
    model = timm.create_model('dla46_c', num_classes=7, checkpoint_path=str(path)).eval()
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x), rtol=0, atol=0)


# --- timm kwargs --------------------------------------------------------------------------------------------------
def test_model_kwargs():
    model = timm.create_model('dla46_c', num_classes=10, in_chans=1, global_pool='catavgmax', drop_rate=0.25)
    assert model.num_classes == 10 and model.base_layer[0].in_channels == 1 and model.head_drop.p == 0.25
    assert model.head_hidden_size == 2 * model.num_features
    assert model.eval()(_x(chans=1)).shape == (1, 10)
    assert model.get_classifier() is model.fc
    model.reset_classifier(3, 'max')
    assert model(_x(chans=1)).shape == (1, 3) and model.head_hidden_size == model.num_features

    double = timm.create_model('dla46_c', dtype=torch.float64, bn_momentum=0.01, bn_eps=1e-3)
    assert all(p.dtype == torch.float64 for p in double.parameters())
    assert double.level0[1].momentum == 0.01 and double.level0[1].eps == 1e-3


@pytest.mark.parametrize('output_stride', [16, 8])
def test_output_stride(output_stride):
    # timm's own DLA refuses output_stride != 32
    ref = timm.create_model('dla34', num_classes=0).eval()
    model = timm.create_model('dla34', output_stride=output_stride, num_classes=0).eval()
    model.load_state_dict(ref.state_dict())
    with torch.no_grad():
        feats = model.forward_features(_x(size=64))
    assert feats.shape == (1, 512, 64 // output_stride, 64 // output_stride)
    features = timm.create_model('dla34', features_only=True, output_stride=output_stride, out_indices=(2, 4, 5))
    assert features.feature_info.reduction() == [4, min(16, output_stride), output_stride]
    with torch.no_grad():
        outs = features.eval()(_x(size=64))
    assert [o.shape[-1] for o in outs] == [64 // r for r in features.feature_info.reduction()]


def test_features_only_variants():
    x = _x(size=96)
    torch.manual_seed(0)
    base = timm.create_model('dla46_c', features_only=True, out_indices=(0, 3, 5)).eval()
    assert base.feature_info.channels() == [16, 64, 256] and base.feature_info.reduction() == [1, 8, 32]
    with torch.no_grad():
        ref = base(x)
        for cls in ('getter', 'hook', 'dict'):
            torch.manual_seed(0)  # same initial weights as ``base``
            other = timm.create_model('dla46_c', features_only=True, out_indices=(0, 3, 5), feature_cls=cls).eval()
            assert other.feature_info.channels() == [16, 64, 256]
            out = other(x)
            out = list(out.values()) if isinstance(out, dict) else out
            torch.testing.assert_close(out, ref, rtol=0, atol=0, msg=cls)


def test_grad_checkpointing_matches():
    # timm's own DLA refuses set_grad_checkpointing; ours recomputes levels with the same grads and BN statistics
    model = timm.create_model('dla46_c', num_classes=4).train()
    ckpt = copy.deepcopy(model)
    ckpt.set_grad_checkpointing()
    x = _x(n=2, size=32)
    model(x).square().mean().backward()
    ckpt(x).square().mean().backward()
    grads = dict(ckpt.named_parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n].grad, p.grad, msg=n)
    torch.testing.assert_close(ckpt.state_dict(), model.state_dict())  # running stats updated once


def test_group_matcher_drives_layer_decay():
    model = timm.create_model('dla34', num_classes=4)
    groups = timm.models.group_parameters(model, model.group_matcher(coarse=True))
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    opt = create_optimizer_v2(model, 'sgd', lr=0.1, layer_decay=0.5)
    assert sum(len(g['params']) for g in opt.param_groups) == len(list(model.parameters()))
    scales = sorted({g['lr_scale'] for g in opt.param_groups})
    assert len(scales) >= 7 and scales[-1] == 1.0  # stem, levels 0-5 and head decay separately


@pytest.mark.parametrize('name', [n for n in fixture_names() if 'dla34' in n or n.startswith('centernet2')])
@pytest.mark.parametrize('num_classes', [0, 1000])
def test_every_family_loads_its_backbone_through_timm_or_raises(name, num_classes, tmp_path):
    """Issue 21: a CenterNet ctdet file with num_classes=0 used to load NOTHING through timm (non-strict load). Now
    every family's backbone loads (every tensor equal to the core's own conversion), or the load raises."""
    manifest = load_manifest(name)
    path = write_checkpoint(manifest, str(tmp_path / 'ref.pth'))
    want = create_dla('dla34', num_classes=num_classes)
    try:
        load_checkpoint(want, path, classifier='if_mismatched')
    except CheckpointError as e:  # e.g. mmdetection3d's GroupNorm DLA does not fit timm's BatchNorm dla34
        with pytest.raises(CheckpointError) as got:
            timm.create_model('dla34', pretrained=True, num_classes=num_classes,
                              pretrained_cfg_overlay=dict(file=path))
        assert str(got.value) == str(e)
        return
    model = timm.create_model('dla34', pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=dict(file=path))
    for k, v in want.state_dict().items():
        if not k.startswith('fc.'):
            assert torch.equal(model.state_dict()[k], v), k
