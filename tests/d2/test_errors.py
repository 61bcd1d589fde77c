"""detectron2 adapter, bad data (docs/errors.md): missing synthetic files, a corrupt image in a registered dataset."""
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image

from d2_ext.data import register_shapes


def test_register_without_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        register_shapes('dlap_err_missing', str(tmp_path / 'nowhere'), 4, write=False)
    assert str(e.value) == (f"register_shapes(write=False): no {str(tmp_path / 'nowhere' / 'instances.json')!r}; "
                            f"expected <root>/instances.json and <root>/images/*.png written by write_shapes_coco")
    assert 'dlap_err_missing' not in DatasetCatalog.list()


def test_corrupt_image_is_named(tmp_path):
    """detectron2 itself names the file (PIL's UnidentifiedImageError): nothing to add on our side."""
    name = register_shapes('dlap_err_corrupt', str(tmp_path), 2, size=(32, 32))
    try:
        first = DatasetCatalog.get(name)[0]['file_name']
        with open(first, 'wb') as f:
            f.write(b'not a png')
        with pytest.raises(Exception, match=rf"cannot identify image file <_io.BufferedReader name='{first}'>"):
            read_image(first, format='RGB')
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize('builder,key,value,message', [
    ('build_dlap_backbone', 'ARCH', 'dla35', "variant: unknown DLA variant 'dla35'; valid variants are: dla34"),
    ('build_dlap_backbone', 'OUT_FEATURES', ['res2'], "out_features: unknown level(s) ['res2']; allowed: ['level0',"),
    ('build_dlap_backbone', 'NORM', 'LN', "norm: unknown norm 'LN'; allowed: ['FrozenBN', 'BN', 'SyncBN', "
                                          "'naiveSyncBN', 'GN'] or a callable"),
    ('build_dlap_backbone', 'FREEZE_AT', 6, 'freeze_at: must be an integer in 0..5, got 6'),
    ('build_dlap_backbone', 'OUTPUT_STRIDE', 4, 'output_stride: must be 32, 16 or 8, got 4'),
    ('build_dlap_fpn_backbone', 'OUTPUT_STRIDE', 16, 'MODEL.DLAP.OUTPUT_STRIDE: the FPN needs 32 (16 and 8 dilate '
                                                     'level5/level4, which then share a stride), got 16'),
    ('build_dlap_up_backbone', 'OUTPUT_STRIDE', 8, 'MODEL.DLAP.OUTPUT_STRIDE: the DLA-Up neck needs 32'),
    ('build_dlap_up_backbone', 'NECK.NODE_TYPE', 'deform', "node_type: unknown aggregation node 'deform'; allowed: "
                                                           "['conv', 'dcn']"),
    ('build_dlap_up_backbone', 'NECK.NORM', 'LN', "norm: unknown norm 'LN'; allowed:"),
    ('build_dlap_up_backbone', 'NECK.TOP_BLOCK', 'p8', "MODEL.DLAP.NECK.TOP_BLOCK: unknown top block 'p8'; allowed: "
                                                       "['', 'maxpool', 'p6p7']"),
    ('build_dlap_up_backbone', 'NECK.OUT_CHANNELS', -1, 'out_channels: must be an integer >= 0, got -1'),
    ('build_dlap_up_backbone', 'OUT_FEATURES', ['level5'], "in_features: need >= 2 features of bottom_up; "
                                                           "unknown: [], available: ['level5']"),
])
def test_bad_model_dlap_keys(builder, key, value, message):
    """Every MODEL.DLAP key with a bad value fails when the backbone is built, naming the key's argument."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from d2_ext.config import add_dlap_config

    cfg = add_dlap_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.DLAP.ARCH = builder, 'dla46_c'
    *path, last = key.split('.')
    node = cfg.MODEL.DLAP
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)
    with pytest.raises(ValueError) as e:
        build_backbone(cfg)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize('key,value,message', [
    ('BIAS', 'maybe', "MODEL.DLAP.NECK.BIAS: unknown value 'maybe'; allowed: ['auto', 'on', 'off']"),
    ('FINAL_IDA', 'yes', "MODEL.DLAP.NECK.FINAL_IDA: unknown value 'yes'; allowed: ['auto', 'on', 'off']"),
    ('DCN_IMPL', 'cuda', "dcn_impl: unknown deformable conv implementation 'cuda'; allowed: "
                         "['auto', 'native', 'torchvision']"),
])
def test_bad_neck_knobs(key, value, message):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from d2_ext.config import add_dlap_config

    cfg = add_dlap_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.DLAP.ARCH = 'build_dlap_up_backbone', 'dla46_c'
    cfg.MODEL.DLAP.NECK[key] = value
    with pytest.raises(ValueError) as e:
        build_backbone(cfg)
    assert str(e.value) == message
