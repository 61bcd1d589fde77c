"""Every shipped detectron2 config builds and runs; the stock-config swap works; converted ImageNet checkpoints
(timm and ucbdrive layouts) load into the detectron2 models with no missing or unexpected backbone keys."""
import os
from urllib.parse import urlparse

import pytest
import torch
from detectron2 import model_zoo
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.structures import ImageList

import d2_ext
from d2_ext import add_dlap_config
from d2_ext.convert import PREFIX_NECK, PREFIX_PLAIN, convert_to_d2
from d2_ext.convert import main as convert_main
from dla_plugins import create_dla
from dla_plugins.checkpoint import detect_layout
from tests.golden import load_manifest, synth_state_dict
from tests.helpers import randomize_bn, timm_reference

YAMLS = [n for n in d2_ext.list_config_files() if n.endswith('.yaml') and n[0].islower()]
LAZY = [n for n in d2_ext.list_config_files() if n.endswith('.py')]


# ImageNet-trained DLA: RGB and ImageNet statistics; CenterNet: BGR and its COCO statistics (as its checkpoints need)
_FORMAT_MEAN = {'imagenet': ('RGB', [123.675, 116.28, 103.53]),
                'centernet': ('BGR', [104.013618, 114.03422, 119.916593])}


def _yaml_cfg(name):
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_file(d2_ext.get_config_file(name))
    cfg.MODEL.DEVICE = 'cpu'
    return cfg


def _check_model(model):
    """Inference on an odd-sized image, and backbone.output_shape() against what it returns on the padded input."""
    model.eval()
    image = torch.randint(0, 256, (3, 97, 75)).float()
    with torch.no_grad():
        out = model([dict(image=image, height=97, width=75)])
        x = ImageList.from_tensors([image], model.backbone.size_divisibility).tensor
        feats = model.backbone(x)
    assert out[0]['instances'].image_size == (97, 75)
    shapes = model.backbone.output_shape()
    assert list(feats) == list(shapes)
    for k, y in feats.items():
        assert y.shape[1] == shapes[k].channels and y.shape[2] == -(-x.shape[2] // shapes[k].stride), k


def test_shipped_configs_are_complete():
    assert {'faster_rcnn_dla34_fpn_1x.yaml', 'faster_rcnn_dla34_up_1x.yaml', 'retinanet_dla34_fpn_1x.yaml',
            'retinanet_dla34_up_1x.yaml', 'mask_rcnn_dla34_fpn_1x.yaml', 'mask_rcnn_dla34_up_1x.yaml'} <= set(YAMLS)
    assert {'faster_rcnn_dla34_fpn_lazy.py', 'retinanet_dla34_up_lazy.py'} <= set(LAZY)


@pytest.mark.slow
@pytest.mark.parametrize('name', YAMLS)
def test_yaml_config_builds_and_runs(name):
    cfg = _yaml_cfg(name)
    assert (cfg.INPUT.FORMAT, cfg.MODEL.PIXEL_MEAN) == (_FORMAT_MEAN['centernet'] if name.startswith('centernet')
                                                         else _FORMAT_MEAN['imagenet'])
    model = build_model(cfg)
    assert model.backbone.output_shape()
    _check_model(model)


@pytest.mark.parametrize('name', LAZY)
def test_lazy_config_builds_and_runs(name):
    cfg = LazyConfig.load(d2_ext.get_config_file(name))
    model = instantiate(cfg.model)
    fmt = _FORMAT_MEAN['centernet' if name.startswith('centernet') else 'imagenet'][0]
    assert model.input_format == fmt
    mapper = instantiate(cfg.dataloader.train.mapper)  # no mask head: the masks are not decoded
    assert mapper.use_instance_mask is False and mapper.image_format == fmt
    _check_model(model)


@pytest.mark.parametrize('stock,lines', [
    ('COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml', dict(NAME='build_dlap_fpn_backbone')),
    ('COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml', dict(NAME='build_dlap_up_backbone')),
    ('COCO-Detection/retinanet_R_50_FPN_1x.yaml',
     dict(NAME='build_dlap_retinanet_fpn_backbone', OUT_FEATURES=['level3', 'level4', 'level5'])),
])
def test_swap_backbone_of_stock_config(stock, lines):
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(stock))
    cfg.MODEL.BACKBONE.NAME = lines['NAME']  # the documented swap: backbone name + MODEL.DLAP.*
    cfg.MODEL.DLAP.ARCH = 'dla46_c'
    cfg.MODEL.DLAP.OUT_FEATURES = lines.get('OUT_FEATURES', cfg.MODEL.DLAP.OUT_FEATURES)
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = 'cpu', ''
    _check_model(build_model(cfg))
    merged = get_cfg()  # or merge our Base-DLA.yaml onto it
    add_dlap_config(merged)
    merged.merge_from_file(model_zoo.get_config_file(stock))
    merged.merge_from_file(d2_ext.get_config_file('DLA-Backbone.yaml'))
    assert merged.MODEL.BACKBONE.NAME == 'build_dlap_fpn_backbone' and merged.INPUT.FORMAT == 'RGB'


def _load_report(model, path):
    """What DetectionCheckpointer.load does, keeping its incompatible-keys report."""
    ckpt = DetectionCheckpointer(model)
    ckpt._parsed_url_during_load = urlparse(path)  # as load() sets it before reading the file
    checkpoint = ckpt._load_file(path)
    ckpt._parsed_url_during_load = None
    return ckpt._load_model(checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['timm', 'ucbdrive'])
@pytest.mark.parametrize('config', ['faster_rcnn_dla34_fpn_1x.yaml', 'retinanet_dla34_up_1x.yaml'])
def test_converted_imagenet_checkpoint_loads_without_missing_keys(tmp_path, layout, config):
    if layout == 'ucbdrive':  # ucbdrive's own file layout (golden fixture from its dla.py)
        state = synth_state_dict(load_manifest('ucbdrive_dla34'))
        assert detect_layout(state).family == 'ucbdrive'
    else:  # randomly initialised stand-in for timm's ImageNet weights
        state = randomize_bn(timm_reference('dla34')).state_dict()
    src, dst = tmp_path / 'dla34_imagenet.pth', tmp_path / 'dla34_d2.pth'
    torch.save(state, src)
    convert_main([str(src), str(dst), '--arch', 'dla34'])
    raw = torch.load(dst, weights_only=True)
    assert raw['__author__'] == 'dla-plugins' and raw['matching_heuristics'] is False
    assert all(k.startswith(PREFIX_NECK) for k in raw['model'])

    model = build_model(_yaml_cfg(config))
    report = _load_report(model, str(dst))
    assert [k for k in report.missing_keys if k.startswith('backbone.bottom_up.')] == []
    assert report.unexpected_keys == [] and report.incorrect_shapes == []
    loaded = model.backbone.bottom_up.dla.state_dict()
    for k, v in state.items():
        if k in loaded and not k.endswith('num_batches_tracked'):
            torch.testing.assert_close(loaded[k], v, msg=k)
    # and through the public path: MODEL.WEIGHTS + DetectionCheckpointer.load
    model2 = build_model(_yaml_cfg(config))
    DetectionCheckpointer(model2).load(str(dst))
    loaded2 = model2.backbone.bottom_up.dla
    torch.testing.assert_close(loaded2.level5.tree1.conv1.weight, state['level5.tree1.conv1.weight'])


def test_converter_plain_prefix_and_bad_checkpoint(tmp_path):
    state = create_dla('dla46_c').state_dict()
    ckpt = convert_to_d2(state, 'dla46_c', PREFIX_PLAIN)
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.DLAP.ARCH, cfg.MODEL.DEVICE = 'build_dlap_backbone', 'dla46_c', 'cpu'
    cfg.MODEL.RPN.IN_FEATURES = ['level4']
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ['level4']
    cfg.MODEL.DLAP.OUT_FEATURES = ['level4']
    model = build_model(cfg)
    torch.save(ckpt, tmp_path / 'plain.pth')
    report = _load_report(model, str(tmp_path / 'plain.pth'))
    assert [k for k in report.missing_keys if k.startswith('backbone.')] == [] and report.unexpected_keys == []
    with pytest.raises(Exception, match='missing key'):  # a dla34 checkpoint is not a dla46_c one
        convert_to_d2(create_dla('dla34').state_dict(), 'dla46_c')


def test_train_net_synthetic_shapes_flag(tmp_path):
    """``--synthetic-shapes N`` writes and registers the shapes datasets and points the config at them; explicit
    opts still win; bad values fail naming the flags."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from d2_ext.train_net import SHAPES_TEST, SHAPES_TRAIN, argument_parser, setup

    config = d2_ext.get_config_file('mask_rcnn_dla34_fpn_1x.yaml')
    args = argument_parser().parse_args(['--config-file', config, '--synthetic-shapes', '8', '--synthetic-size', '64',
                                         'OUTPUT_DIR', str(tmp_path), 'MODEL.RETINANET.NUM_CLASSES', '7'])
    try:
        cfg = setup(args)
        assert cfg.DATASETS.TRAIN == (SHAPES_TRAIN,) and cfg.DATASETS.TEST == (SHAPES_TEST,)
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 4 and cfg.MODEL.RETINANET.NUM_CLASSES == 7
        assert cfg.INPUT.MASK_FORMAT == 'bitmask'
        train, test = DatasetCatalog.get(SHAPES_TRAIN), DatasetCatalog.get(SHAPES_TEST)
        assert len(train) == 8 and len(test) == 4
        assert (train[0]['height'], train[0]['width']) == (64, 64) and train[0]['annotations']
        assert MetadataCatalog.get(SHAPES_TRAIN).thing_classes == ['square', 'disk', 'triangle', 'plus']
        assert os.path.isfile(tmp_path / 'shapes' / SHAPES_TRAIN / 'instances.json')
    finally:
        for name in (SHAPES_TRAIN, SHAPES_TEST):
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
    bad = argument_parser().parse_args(['--config-file', config, '--synthetic-shapes', '-1',
                                        'OUTPUT_DIR', str(tmp_path)])
    with pytest.raises(ValueError, match=r'--synthetic-shapes/--synthetic-size: need N >= 1 and PX >= 32, got -1, 128'):
        setup(bad)
