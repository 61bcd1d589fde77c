"""``DLAPCenterNet``: CenterNet's ctdet detector in detectron2, built from the shipped configs, loading CenterNet's own
checkpoints heads included (by name from a loopback mirror, through detectron2's ``DetectionCheckpointer``), refusing
heads of another class count unless asked, and training / inferring through its own entry points."""
import dataclasses

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

import d2_ext
from dla_plugins import weights
from dla_plugins.checkpoint import CheckpointError, read_state_dict
from dla_plugins.weights import Source
from tests.golden import load_manifest, write_checkpoint
from tests.weights.mirror import files_mirror
from tests.weights.server import LoopbackServer

CONFIGS = ['centernet_dla34_dcn_coco.yaml', 'centernet_dla34_dcn_pascal_384.yaml', 'centernet_dlav0_coco.yaml']
FIXTURE = {'centernet_dla34_dcn_coco.yaml': 'centernet_dla34_dcn', 'centernet_dlav0_coco.yaml': 'centernet_dla34_v0'}


def cfg_of(name: str, *opts: str):
    cfg = d2_ext.get_cfg()
    cfg.merge_from_file(d2_ext.get_config_file(name))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    return cfg


@pytest.fixture(scope='module')
def ctdet_files(tmp_path_factory):
    """The CenterNet-format seeded checkpoints (pose_dla_dcn, dlav0) as bytes and their converted core states."""
    tmp = tmp_path_factory.mktemp('ctdet')
    out = {}
    for fixture in ('centernet_dla34_dcn', 'centernet_dla34_v0'):
        path = write_checkpoint(load_manifest(fixture), str(tmp / f'{fixture}.pth'))
        with open(path, 'rb') as f:
            out[fixture] = (f.read(), read_state_dict(path))
    return out


def _mirror(tmp_path, monkeypatch, served):
    return files_mirror(tmp_path, {f'centernet/{n}/{n}.pth': data for n, data in served.items()}, monkeypatch)


@pytest.mark.parametrize('config', CONFIGS)
def test_shipped_configs_build_the_registered_meta_architecture(config):
    model = build_model(cfg_of(config))
    assert type(model).__name__ == 'DLAPCenterNet'
    assert model.heads.hm[2].out_channels == (20 if 'pascal' in config else 80)
    assert model.test_affine.size == (384 if 'pascal' in config else 512)
    assert model.test_affine.keep_res == ('pascal' not in config)  # CenterNet tests COCO with --keep_res
    flavor = 'paper' if 'dlav0' in config else 'centernet'
    assert model.backbone.dla_up.flavor == flavor and model.backbone.output_shape()['p2'].channels == 64


@pytest.mark.parametrize('config', ['centernet_dla34_dcn_coco.yaml', 'centernet_dlav0_coco.yaml'])
def test_registry_name_loads_backbone_neck_and_heads(config, ctdet_files, tmp_path, monkeypatch):
    """``MODEL.WEIGHTS: dlap://centernet/ctdet_coco_dla_2x`` from a loopback mirror serving the CenterNet-format file
    (dlav0's entry has a published hash, so its seeded stand-in is served under a test entry of the same family):
    every tensor of the model (BN counters aside) is the file's, heads included."""
    data, state = ctdet_files[FIXTURE[config]]
    model = build_model(cfg_of(config))
    if 'dlav0' in config:
        real = weights.get('centernet/ctdet_coco_dlav0_1x')
        with LoopbackServer() as srv, weights.registered(dataclasses.replace(
                real, name='test/ctdet_coco_dlav0_1x', sources=(Source('url', srv.add('/v0.pth', data), 'v0.pth'),))):
            monkeypatch.setenv('DLA_PLUGINS_HOME', str(tmp_path / 'home'))
            monkeypatch.setenv('DLA_PLUGINS_OFFLINE', '0')
            DetectionCheckpointer(model).load('dlap://test/ctdet_coco_dlav0_1x')
    else:
        with _mirror(tmp_path, monkeypatch, {'ctdet_coco_dla_2x': data}):
            DetectionCheckpointer(model).load('dlap://centernet/ctdet_coco_dla_2x')
    ours = model.state_dict()
    heads = {k: v for k, v in state.items() if k.split('.')[0] in ('hm', 'wh', 'reg')}
    assert len(heads) == 12 and all(torch.equal(ours[f'heads.{k}'], v) for k, v in heads.items())
    assert torch.equal(ours['backbone.bottom_up.dla.level5.root.conv.weight'], state['base.level5.root.conv.weight'])
    assert sum(k.startswith('backbone.dla_up.') for k in ours) > 20
    trunk = [k for k in ours if k.startswith('backbone.') and not k.endswith('num_batches_tracked')]
    fresh = build_model(cfg_of(config)).state_dict()
    assert not [k for k in trunk if torch.equal(ours[k], fresh[k]) and ours[k].numel() > 1 and 'running' not in k]


def test_heads_of_another_class_count_fail_naming_both_unless_reinitialised(ctdet_files, tmp_path, monkeypatch):
    data, state = ctdet_files['centernet_dla34_dcn']
    with _mirror(tmp_path, monkeypatch, {'ctdet_coco_dla_2x': data}):
        model = build_model(cfg_of('centernet_dla34_dcn_pascal_384.yaml'))
        with pytest.raises(CheckpointError) as err:
            DetectionCheckpointer(model).load('dlap://centernet/ctdet_coco_dla_2x')
        assert str(err.value).startswith(
            "heads: the checkpoint's hm head has 80 classes, the model's 20 (MODEL.DLAP.CENTERNET.NUM_CLASSES); set "
            'MODEL.DLAP.CENTERNET.REINIT_HM True to fine-tune with a fresh 20-class heatmap head.')
        model = build_model(cfg_of('centernet_dla34_dcn_pascal_384.yaml', 'MODEL.DLAP.CENTERNET.REINIT_HM', 'True'))
        DetectionCheckpointer(model).load('dlap://centernet/ctdet_coco_dla_2x')
    assert torch.equal(model.heads.hm[0].weight, state['hm.0.weight'])
    assert torch.equal(model.heads.wh[2].weight, state['wh.2.weight'])
    assert torch.equal(model.heads.hm[2].bias, torch.full((20,), -2.19))


def test_imagenet_file_leaves_heads_fresh_and_a_partial_head_set_fails(ctdet_files, tmp_path):
    model = build_model(cfg_of('centernet_dla34_dcn_coco.yaml'))
    _, state = ctdet_files['centernet_dla34_dcn']
    own = model.state_dict()
    d2 = {f'backbone.bottom_up.dla.{k[5:]}': v for k, v in state.items()
          if f'backbone.bottom_up.dla.{k[5:]}' in own}  # the DLA only, as an ImageNet file gives it
    bias = model.heads.hm[2].bias.clone()
    model.load_state_dict(d2, strict=False)
    assert torch.equal(model.heads.hm[2].bias, bias)
    partial = dict(d2, **{'heads.hm.0.weight': state['hm.0.weight']})
    with pytest.raises(CheckpointError, match=r"^heads: the checkpoint's hm head does not fit, the model's 80"):
        model.load_state_dict(partial, strict=False)


def _batch(n: int = 2):
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        img = torch.randint(0, 255, (3, 90, 130), dtype=torch.uint8, generator=gen)
        inst = Instances((90, 130))
        inst.gt_boxes = Boxes(torch.tensor([[10., 20, 60, 80], [70, 10, 128, 88], [0, 0, 30, 30]]))
        inst.gt_classes = torch.tensor([3, 7, 3])
        out.append({'image': img, 'instances': inst, 'height': 180, 'width': 260})
    return out


def test_training_returns_the_weighted_ctdet_loss_terms_and_inference_detector_postprocess():
    cfg = cfg_of('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.INPUT_SIZE', '96', 'MODEL.DLAP.ARCH',
                 'dla46_c', 'MODEL.DLAP.CENTERNET.K', '7')
    model = build_model(cfg)
    batch = _batch()
    np.random.seed(0)
    losses = model(batch)
    assert sorted(losses) == ['loss_hm', 'loss_off', 'loss_wh'] and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.heads.hm[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(batch)
    inst = out[0]['instances']
    assert inst.image_size == (180, 260) and len(inst) <= 7
    with pytest.raises(ValueError, match=r'^batched_inputs: images \[0, 1\] have no "instances"; training needs them$'):
        model.train()
        model([{'image': b['image']} for b in batch])


def test_bad_config_values_name_the_key():
    with pytest.raises(ValueError, match=r"^MODEL.DLAP.CENTERNET.IN_FEATURE: 'p3' has stride 8; allowed: a stride-4"):
        build_model(cfg_of('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.IN_FEATURE', 'p3'))
    with pytest.raises(ValueError, match=r"^size: 100; allowed: a multiple of 32 >= 32$"):
        build_model(cfg_of('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.INPUT_SIZE', '100'))
    with pytest.raises(ValueError, match=r"^MODEL.DLAP.CENTERNET.IN_FEATURE: 'level2'; allowed: \['p2', 'p3', 'p4'"):
        build_model(cfg_of('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.IN_FEATURE', 'level2'))
    with pytest.raises(ValueError, match=r"^flip: 1.5; allowed: a float in \[0, 1\]$"):
        build_model(cfg_of('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.FLIP', '1.5'))
    with pytest.raises(ValueError, match=r"^INPUT.FORMAT: 'L'; allowed: 'BGR', 'RGB'$"):
        build_model(cfg_of('centernet_dla34_dcn_coco.yaml', 'INPUT.FORMAT', 'L'))


def test_lazy_config_builds_the_same_network_as_the_yaml_with_centernets_recipe():
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(d2_ext.get_config_file('centernet_dla34_dcn_coco_lazy.py'))
    lazy = instantiate(cfg.model)
    yaml = build_model(cfg_of('centernet_dla34_dcn_coco.yaml'))
    assert {k: v.shape for k, v in lazy.state_dict().items()} == {k: v.shape for k, v in yaml.state_dict().items()}
    assert type(lazy.backbone.bottom_up.dla.base_layer[1]) is torch.nn.BatchNorm2d  # CenterNet trains every BN
    assert cfg.optimizer._target_ is torch.optim.Adam and cfg.optimizer.lr == 1.25e-4
    assert cfg.train.max_iter == 140 * 3697 and cfg.dataloader.train.total_batch_size == 32
    assert cfg.lr_multiplier.scheduler.milestones == [90 * 3697, 120 * 3697]
    assert cfg.train.init_checkpoint == 'dlap://dla34.in1k' and cfg.dataloader.train.mapper.augmentations == []


def test_a_trained_detectron2_centernet_file_converts_back_heads_included(tmp_path):
    from dla_plugins.convert import convert

    model = build_model(cfg_of('centernet_dla34_dcn_coco.yaml'))
    torch.save({'model': model.state_dict(), 'iteration': 3}, tmp_path / 'model_final.pth')
    out = convert(str(tmp_path / 'model_final.pth'), 'core')
    assert out.report.layout.startswith('detectron2/')
    assert out.host_options['builder'] == 'CenterNet' and out.network['heads'] == {'hm': 80, 'wh': 2, 'reg': 2}
    assert torch.equal(out.state['heads.hm.2.weight'], model.heads.hm[2].weight)
